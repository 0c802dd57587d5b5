"""Raw ASGI helpers shared by the gateway's routes: headers, the socket peer, JSON responses
and refusing a WebSocket upgrade.

Every gateway response carries ``X-Smithers-API-Version: v1``; JSON responses also
``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import uuid
from typing import Any

from smithers_core.auth import Peer
from smithers_core.gateway.frames import encode
from smithers_core.gateway.limits import MAX_ID

JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-smithers-api-version", b"v1"),
]


def scope_headers(scope: dict[str, Any]) -> dict[str, str]:
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


def request_id_of(headers: dict[str, str]) -> str:
    """``X-Request-Id`` (clipped to the frame id limit) or a fresh UUID: an HTTP answer's id."""
    return (headers.get("x-request-id") or str(uuid.uuid4()))[:MAX_ID]


def scope_peer(scope: dict[str, Any]) -> Peer:
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


async def respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Any, status: int, value: Any) -> None:
    await respond(send, status, encode(value).encode("utf-8"), JSON_HEADERS)


async def deny(send: Any, status: int, body: bytes, scope: dict[str, Any] | None = None) -> None:
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


__all__ = [
    "JSON_HEADERS",
    "deny",
    "request_id_of",
    "respond",
    "respond_json",
    "scope_headers",
    "scope_peer",
]
