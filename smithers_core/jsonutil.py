"""Compact JSON encoding used for every stored row and every event."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_default)


def canonical(value: Any) -> str:
    """Sorted keys, compact separators: the form hashed for frames."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def loads(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"Unexpected token {name} in JSON")


def loads_strict(data: str | bytes, *, parse_float: Callable[[str], Any] | None = None) -> Any:
    """``json.loads`` that rejects ``NaN`` and ``Infinity``, which are not JSON."""
    return json.loads(data, parse_constant=_reject_constant, parse_float=parse_float)


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", by_alias=True)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
