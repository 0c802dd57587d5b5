"""HTTP routes of the gateway itself (reference 9.1): health, metrics, workflows and the index
page; every other path goes to plugin routes (the RPC endpoints are the ``core.gateway_rpc``
plugin's) and UI mounts, else 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smithers_core.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from smithers_core.http.asgi import respond
from smithers_core.http.responses import GATEWAY, send_json

if TYPE_CHECKING:
    from smithers_core.gateway.gateway import Gateway


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
                await send_json(send, 200, self.gw.health_payload(include_uptime=False), GATEWAY)
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
                summaries = self.gw.workflow_summaries(include_system=False)
                await send_json(send, 200, {"workflows": summaries}, GATEWAY)
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
        not_found = {"error": {"code": "NOT_FOUND", "message": "Route not found"}}
        await send_json(send, 404, not_found, GATEWAY)


_INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>Smithers gateway</title></head>
<body><h1>Smithers gateway</h1>
<ul><li><a href="/health">/health</a></li><li><a href="/metrics">/metrics</a></li>
<li><a href="/workflows">/workflows</a></li></ul>
<p>RPC: <code>POST /v1/rpc/&lt;method&gt;</code> or <code>POST /rpc</code>; WebSocket on
<code>/</code>.</p></body></html>
"""

__all__ = ["HttpRoutes"]
