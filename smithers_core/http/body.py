"""The one request-body reader: a byte limit (Content-Length and streamed), strict UTF-8 JSON
and a depth cap (reference/server.md 1.7, gateway reference 3).

Failures are typed, so each surface answers them in its own words by exception type:
:class:`BodyTooLarge` (413 ``PAYLOAD_TOO_LARGE``, details ``{"maxBytes": N}``),
:class:`ClientDisconnected`, :class:`InvalidJson` (400 ``INVALID_JSON`` with the parser's
message; a lone surrogate such as ``"\\ud800"`` is invalid JSON here, as it is not Unicode)
and :class:`JsonTooDeep` (400 ``INVALID_REQUEST``, details ``{"maxDepth": 32}``, checked
without recursing into the client's depth).
An empty body parses as ``{}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smithers_core import jsonutil
from smithers_core.http.errors import HttpError

MAX_JSON_DEPTH = 32
DEPTH_MESSAGE = (
    "request body exceeds the maximum JSON depth of 32. See https://smithers.sh/reference/errors"
)


class BodyTooLarge(HttpError):
    """The body is over the surface's byte limit (the connection is closed after the reply)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413,
            "PAYLOAD_TOO_LARGE",
            f"Request body exceeds {max_bytes} bytes",
            {"maxBytes": max_bytes},
            headers={"connection": "close"},
        )
        self.max_bytes = max_bytes


class ClientDisconnected(HttpError):
    """The client went away before the whole body arrived."""

    def __init__(self) -> None:
        super().__init__(400, "INVALID_REQUEST", "The client disconnected")


class InvalidJson(HttpError):
    """The body is not UTF-8 JSON (``NaN`` and ``Infinity`` included)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "INVALID_JSON", message or "Invalid JSON")


class JsonTooDeep(HttpError):
    """The JSON nests deeper than the limit."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(400, "INVALID_REQUEST", DEPTH_MESSAGE, {"maxDepth": max_depth})


def _declared_length(headers: Mapping[str, str]) -> int:
    raw = headers.get("content-length")
    if raw is None:
        return -1
    try:
        return int(raw.strip())
    except ValueError:  # h11 refuses such requests before they reach an app
        return -1


async def read_body(receive: Any, headers: Mapping[str, str], max_bytes: int | None) -> bytes:
    """The whole body; :class:`BodyTooLarge` as soon as Content-Length or the running total
    passes ``max_bytes`` (None: no limit). ``headers`` are lower-cased (see ``scope_headers``)."""
    if max_bytes is not None and _declared_length(headers) > max_bytes:
        raise BodyTooLarge(max_bytes)
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise BodyTooLarge(max_bytes)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_json(data: bytes, *, max_depth: int | None = MAX_JSON_DEPTH) -> Any:
    """Parse a body: empty is ``{}``; bad UTF-8 or JSON (a lone surrogate included) is
    :class:`InvalidJson`; nesting deeper than ``max_depth`` (None: only the parser's safety
    limit of 32 nested containers) is :class:`JsonTooDeep`, found before parsing when the
    containers alone nest too deep."""
    if not data.strip():
        return {}
    try:
        value = jsonutil.loads_strict(data, max_nesting=max_depth or jsonutil.MAX_NESTING)
    except jsonutil.JsonTooDeep as exc:
        raise JsonTooDeep(max_depth or exc.max_nesting) from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidJson(str(exc)) from exc
    if max_depth is not None and json_depth_exceeds(value, max_depth):
        raise JsonTooDeep(max_depth)
    return value


def json_depth_exceeds(value: Any, max_depth: int) -> bool:
    """True when any value sits deeper than ``max_depth`` (the root is depth 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


async def read_json(
    receive: Any,
    headers: Mapping[str, str],
    max_bytes: int | None,
    *,
    max_depth: int | None = MAX_JSON_DEPTH,
) -> Any:
    """:func:`read_body` then :func:`parse_json`."""
    return parse_json(await read_body(receive, headers, max_bytes), max_depth=max_depth)


__all__ = [
    "DEPTH_MESSAGE",
    "MAX_JSON_DEPTH",
    "BodyTooLarge",
    "ClientDisconnected",
    "InvalidJson",
    "JsonTooDeep",
    "json_depth_exceeds",
    "parse_json",
    "read_body",
    "read_json",
]
