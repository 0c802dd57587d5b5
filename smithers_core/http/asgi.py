"""Raw ASGI helpers every host shares: the one header decoder, the socket peer, the raw path
and query, sending a response, refusing a WebSocket upgrade, and the lifespan protocol."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from smithers_core.auth import Peer

Headers = list[tuple[bytes, bytes]]
Scope = MutableMapping[str, Any]


def scope_headers(scope: Scope) -> dict[str, str]:
    """Lower-cased request headers; repeated headers are joined (cookies with ``; ``)."""
    out: dict[str, str] = {}
    for raw_key, raw_value in scope.get("headers") or ():
        key = raw_key.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if key in out:
            out[key] = out[key] + ("; " if key == "cookie" else ", ") + value
        else:
            out[key] = value
    return out


def scope_peer(scope: Scope) -> Peer:
    """The socket peer ``(host, port)``, ``"unix"`` for a Unix socket, or None when unknown.

    Never a forwarded header: only a trusted-proxy auth mode may look at those (D3).
    """
    client = scope.get("client")
    if client:
        return (str(client[0]), int(client[1]))
    server = scope.get("server")
    if server is None or (isinstance(server, tuple) and server[1] is None):
        return "unix"
    return None


def raw_path(scope: Scope) -> str:
    """The request path as sent (percent escapes kept), without the query string."""
    raw = scope.get("raw_path")
    if raw:
        return bytes(raw).decode("latin-1").split("?", 1)[0]
    return str(scope.get("path", "/"))


def query(scope: Scope) -> dict[str, str]:
    """First value of each query parameter (blank values kept)."""
    out: dict[str, str] = {}
    raw = bytes(scope.get("query_string", b"")).decode("latin-1")
    for key, value in parse_qsl(raw, keep_blank_values=True):
        out.setdefault(key, value)
    return out


async def respond(send: Any, status: int, body: bytes, headers: Headers) -> None:
    """Send a whole response; ``Content-Length`` is added (except for 1xx, 204 and 304)."""
    if status >= 200 and status not in (204, 304):
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def deny(send: Any, status: int, body: bytes, scope: Scope | None = None) -> None:
    """Refuse an upgrade with a raw HTTP response (the ASGI denial-response extension).

    A server without that extension gets a close before accept (an HTTP 403 in practice).
    """
    if scope is not None and "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"connection", b"close"),
                (b"x-smithers-api-version", b"v1"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


async def lifespan(receive: Any, send: Any) -> None:
    """Answer the ASGI lifespan protocol (the hosts need no startup work of their own)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


__all__ = [
    "Headers",
    "deny",
    "lifespan",
    "query",
    "raw_path",
    "respond",
    "scope_headers",
    "scope_peer",
]
