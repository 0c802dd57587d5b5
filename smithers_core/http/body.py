"""Reading request bodies: a byte limit (Content-Length and streamed), UTF-8 JSON, a depth cap.

Order and wording follow reference/server.md 1.7: 413 ``PAYLOAD_TOO_LARGE`` (details
``{"maxBytes": N}``), 400 ``INVALID_JSON`` with the parser's message, 400 ``INVALID_REQUEST``
for JSON nested deeper than 32 (details ``{"maxDepth": 32}``). An empty body is ``{}``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Receive, Scope

from smithers_core.http.errors import HttpError

MAX_JSON_DEPTH = 32
DEPTH_MESSAGE = (
    "request body exceeds the maximum JSON depth of 32. See https://smithers.sh/reference/errors"
)


def too_large(max_bytes: int) -> HttpError:
    return HttpError(
        413,
        "PAYLOAD_TOO_LARGE",
        f"Request body exceeds {max_bytes} bytes",
        {"maxBytes": max_bytes},
        headers={"connection": "close"},
    )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, max_bytes: int | None) -> bytes:
    """The whole body; 413 as soon as Content-Length or the running total exceeds the cap."""
    if max_bytes is not None:
        raw = _header(scope, b"content-length")
        if raw is not None:
            try:
                declared = int(raw.decode("latin-1").strip())
            except ValueError:
                declared = -1
            if declared > max_bytes:
                raise too_large(max_bytes)
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "INVALID_REQUEST", "The client disconnected")
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise too_large(max_bytes)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"Unexpected token {name} in JSON")


def parse_json(data: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a body: empty is ``{}``; bad UTF-8 or JSON is ``INVALID_JSON``; depth is capped."""
    if not data.strip():
        return {}
    try:
        text = data.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HttpError(400, "INVALID_JSON", str(exc) or "Invalid JSON") from exc
    if json_depth_exceeds(value, max_depth):
        raise HttpError(400, "INVALID_REQUEST", DEPTH_MESSAGE, {"maxDepth": max_depth})
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
    scope: Scope, receive: Receive, max_bytes: int | None, *, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    return parse_json(await read_body(scope, receive, max_bytes), max_depth=max_depth)
