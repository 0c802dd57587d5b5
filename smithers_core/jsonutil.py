"""Compact JSON encoding used for every stored row and every event."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_default)


def canonical(value: Any) -> str:
    """Sorted keys, compact separators: the form hashed for frames."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def loads(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)


MAX_NESTING = 32
"""Containers (objects and arrays) a client's JSON may nest before :func:`loads_strict` refuses
it without parsing (every surface's depth limit is 32, counted at least as strictly)."""


class JsonTooDeep(ValueError):
    """The text nests more than ``max_nesting`` containers (found before parsing)."""

    def __init__(self, max_nesting: int) -> None:
        super().__init__(f"JSON nests more than {max_nesting} objects or arrays")
        self.max_nesting = max_nesting


class LoneSurrogate(ValueError):
    """A string holds a UTF-16 surrogate that is not part of a pair (``"\\ud800"``): not
    Unicode text, so no UTF-8 store, log or socket could carry it."""

    def __init__(self) -> None:
        super().__init__("JSON string contains a lone surrogate (\\ud800-\\udfff)")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"Unexpected token {name} in JSON")


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = [0] * 256
_DEPTH_STEP[ord("[")] = _DEPTH_STEP[ord("{")] = 1
_DEPTH_STEP[ord("]")] = _DEPTH_STEP[ord("}")] = -1
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def nesting_exceeds(text: str, max_nesting: int) -> bool:
    """True when ``text`` nests more than ``max_nesting`` containers outside strings.

    Linear in the text and never recursive, about as costly as parsing it: strings are
    dropped, brackets only are kept, a run of ``max_nesting + 1`` openers answers at once, else
    the running depth is summed in C (``accumulate``)."""
    if text.count("[") + text.count("{") <= max_nesting:
        return False
    brackets = _STRING.sub("", text).encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKET)
    if _openers(max_nesting + 1).search(brackets):
        return True
    return bool(brackets) and max(accumulate(map(_DEPTH_STEP.__getitem__, brackets))) > max_nesting


@functools.cache
def _decoder(parse_float: Callable[[str], Any] | None) -> json.JSONDecoder:
    """One decoder per ``parse_float`` (``json.loads`` with options builds one per call)."""
    return json.JSONDecoder(parse_constant=_reject_constant, parse_float=parse_float)


@functools.cache
def _openers(count: int) -> re.Pattern[bytes]:
    return re.compile(rb"[\[{]{%d}" % count)


def has_lone_surrogate(value: Any) -> bool:
    """True when a string (or key) anywhere in ``value`` holds a surrogate code point; a valid
    pair escaped as ``\\ud83d\\ude00`` decodes to one astral character, so any surrogate left
    is a lone one. Iterative, so any depth is safe."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads_strict(
    data: str | bytes,
    *,
    parse_float: Callable[[str], Any] | None = None,
    max_nesting: int | None = MAX_NESTING,
) -> Any:
    """``json.loads`` for what clients send: refuses ``NaN`` and ``Infinity`` (not JSON),
    lone surrogates (:class:`LoneSurrogate`, not Unicode) and, before parsing, more than
    ``max_nesting`` nested containers (:class:`JsonTooDeep`), so no depth reaches the
    parser's recursion (None: the caller has counted the brackets already). Bytes must be
    UTF-8 (``UnicodeDecodeError`` otherwise)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if max_nesting is not None and nesting_exceeds(text, max_nesting):
        raise JsonTooDeep(max_nesting)
    value = _decoder(parse_float).decode(text)
    maybe = ("\\u" in text and _SURROGATE_ESCAPE.search(text)) or (
        not text.isascii() and _SURROGATE.search(text)
    )
    if maybe and has_lone_surrogate(value):
        raise LoneSurrogate
    return value


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", by_alias=True)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
