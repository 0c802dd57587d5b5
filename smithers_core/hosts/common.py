"""Pieces both HTTP surfaces share: path decoding, query access, the operator identity."""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from smithers_core.auth import Identity
from smithers_core.http.errors import HttpError

log = logging.getLogger("smithers.hosts")

OPERATOR = Identity(role="operator", scopes=("*",), user_id=None, token_id=None)
"""D9: the identity of a start_server / serve token holder."""

_HEX = set("0123456789abcdefABCDEF")


def strict_unquote(segment: str) -> str:
    """``decodeURIComponent``: a malformed escape or bad UTF-8 is an error (500 upstream)."""
    if "%" not in segment:
        return segment
    out = bytearray()
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "%":
            pair = segment[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise HttpError(500, "SERVER_ERROR", "URI malformed")
            out.append(int(pair, 16))
            i += 3
        else:
            out.extend(ch.encode("utf-8"))
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(500, "SERVER_ERROR", "URI malformed") from exc


def raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if raw:
        text = bytes(raw).decode("latin-1")
        return text.split("?", 1)[0]
    return str(scope.get("path", "/"))


def query(scope: Scope) -> dict[str, str]:
    """First value of each query parameter (blank values kept)."""
    out: dict[str, str] = {}
    for key, value in parse_qsl(
        bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True
    ):
        out.setdefault(key, value)
    return out


def js_truthy(value: Any) -> bool:
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    return True


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept ASGI lifespan messages (the hosts need no startup work of their own)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def send_response(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    await response(scope, receive, send)
