"""HTTP routes of the gateway (reference 9.1, 9.6): health, metrics, workflows, HTTP RPC.

Raw ASGI: every response carries ``X-Smithers-API-Version: v1``; JSON responses also
``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from smithers_core.auth.tokens import parse_cookies
from smithers_core.errors import SmithersError
from smithers_core.gateway.frames import encode, error_frame, ok_frame, status_for_code
from smithers_core.gateway.limits import (
    MAX_ID,
    check_bounds,
    check_method,
    clip_prompt,
    loads_strict,
)
from smithers_core.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from smithers_core.gateway.rpc import CallContext
from smithers_core.gateway.websocket import scope_headers

if TYPE_CHECKING:
    from smithers_core.gateway.gateway import Gateway

JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-smithers-api-version", b"v1"),
]
RPC_PREFIX = "/v1/rpc/"


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


class _TooLarge(Exception):
    pass


async def read_body(receive: Any, headers: dict[str, str], limit: int) -> bytes:
    length = headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise SmithersError("INVALID_REQUEST", "Content-Length must be numeric")
        if int(length) > limit:
            raise _TooLarge
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise SmithersError("ConnectionClosed", "Client disconnected")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class HttpRoutes:
    """The gateway's HTTP router."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method = scope.get("method", "GET")
        path: str = scope.get("path", "/")
        raw_query = scope.get("query_string", b"")
        if method == "GET" and not raw_query:
            if path == "/health":
                await respond_json(send, 200, self.gw.health_payload(include_uptime=False))
                return
            if path == "/metrics":
                await respond(
                    send,
                    200,
                    self.gw.metrics.render(),
                    [
                        (b"content-type", METRICS_CONTENT_TYPE.encode()),
                        (b"cache-control", b"no-store"),
                        (b"x-smithers-api-version", b"v1"),
                    ],
                )
                return
            if path == "/workflows":
                await respond_json(
                    send, 200, {"workflows": self.gw.workflow_summaries(include_system=False)}
                )
                return
        if method == "POST" and (path == "/rpc" or path.startswith(RPC_PREFIX)):
            await self.rpc(scope, receive, send, path)
            return
        if method == "GET" and path == "/":
            await respond(
                send,
                200,
                _INDEX.encode(),
                [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-smithers-api-version", b"v1"),
                ],
            )
            return
        plugins = self.gw.plugin_routes
        route = plugins.match_http(method, path) if plugins is not None else None
        if route is not None and plugins is not None:
            await plugins.serve_http(route, scope, receive, send)
            return
        mount = plugins.match_mount(method, path) if plugins is not None else None
        if mount is not None and plugins is not None:
            await plugins.serve_mount(mount, scope, receive, send)
            return
        await respond_json(
            send, 404, {"error": {"code": "NOT_FOUND", "message": "Route not found"}}
        )

    async def rpc(self, scope: dict[str, Any], receive: Any, send: Any, path: str) -> None:
        gw = self.gw
        headers = scope_headers(scope)
        cookies = parse_cookies(headers.get("cookie"))
        request_id = headers.get("x-request-id") or str(uuid.uuid4())
        request_id = request_id[:MAX_ID]
        frame_id = request_id
        try:
            identity = await gw.authenticate("http", headers, cookies, _peer(scope), path, None)
        except SmithersError as exc:
            gw.metrics.auth_events.labels("failure").inc()
            await self._error(send, frame_id, exc)
            return
        try:
            try:
                raw = await read_body(receive, headers, gw.options.max_body_bytes)
            except _TooLarge:
                raise SmithersError(
                    "PayloadTooLarge",
                    f"Request body exceeds {gw.options.max_body_bytes} bytes",
                    {"maxBytes": gw.options.max_body_bytes},
                ) from None
            if path.startswith(RPC_PREFIX) and not raw.strip():
                body: Any = {}
            else:
                try:
                    body = loads_strict(raw)
                except (ValueError, UnicodeDecodeError):
                    raise SmithersError("INVALID_INPUT", "RPC body must be valid JSON") from None
            if not isinstance(body, dict):
                raise SmithersError("INVALID_REQUEST", "RPC body must be a JSON object")
            clip_prompt(body)
            check_bounds(body)
            if isinstance(body.get("id"), str) and len(body["id"]) <= MAX_ID:
                frame_id = body["id"]
            if path == "/rpc":
                method = check_method(body.get("method"))
                params = body.get("params")
            else:
                method = check_method(unquote(path[len(RPC_PREFIX) :]))
                params = body.get("params") if "method" in body else body
            gw.metrics.call(gw.method_label(method), "http")
            if method == "streamRunEvents":
                raise SmithersError(
                    "INVALID_REQUEST",
                    "streamRunEvents is only supported over websocket connections",
                )
            ctx = CallContext(identity, "http", None, "http:" + request_id)
            payload = await gw.dispatcher.call(ctx, method, params)
            text = encode(ok_frame(frame_id, payload))
        except SmithersError as exc:
            gw.metrics.errors.labels(exc.code).inc()
            await self._error(send, frame_id, exc)
            return
        except Exception as exc:
            message = str(exc)
            if "valid JSON" in message:
                code = "INVALID_JSON"
            elif "exceeds" in message:
                code = "PAYLOAD_TOO_LARGE"
            else:
                code = "SERVER_ERROR"
            gw.metrics.errors.labels(code).inc()
            await self._error(send, frame_id, SmithersError(code, message))
            return
        await respond(send, 200, text.encode("utf-8"), JSON_HEADERS)

    async def _error(self, send: Any, frame_id: str, exc: SmithersError) -> None:
        await respond_json(send, status_for_code(exc.code), error_frame(frame_id, exc))


def _peer(scope: dict[str, Any]) -> Any:
    client = scope.get("client")
    if client:
        return (str(client[0]), int(client[1]))
    return "unix"


_INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>Smithers gateway</title></head>
<body><h1>Smithers gateway</h1>
<ul><li><a href="/health">/health</a></li><li><a href="/metrics">/metrics</a></li>
<li><a href="/workflows">/workflows</a></li></ul>
<p>RPC: <code>POST /v1/rpc/&lt;method&gt;</code> or <code>POST /rpc</code>; WebSocket on
<code>/</code>.</p></body></html>
"""

__all__ = ["HttpRoutes", "respond", "respond_json"]
