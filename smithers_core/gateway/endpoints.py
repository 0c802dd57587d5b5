"""The gateway's own HTTP endpoints (reference 9.1): ``GET /health``, ``GET /metrics`` and
``GET /workflows`` (each only without a query string, as upstream matches them) and the index
page ``GET /``; every other path belongs to transports and UI mounts, else 404."""

from __future__ import annotations

from typing import Any

from smithers_core.contributions import RouteSpec
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from smithers_core.http.asgi import respond
from smithers_core.http.responses import GATEWAY, send_json

NOT_FOUND = {"error": {"code": "NOT_FOUND", "message": "Route not found"}}
METRICS_HEADERS = [
    (b"content-type", METRICS_CONTENT_TYPE.encode()),
    (b"cache-control", b"no-store"),
    (b"x-smithers-api-version", b"v1"),
]
HTML_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-smithers-api-version", b"v1"),
]
INDEX = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Smithers gateway</title></head>
<body><h1>Smithers gateway</h1>
<ul><li><a href="/health">/health</a></li><li><a href="/metrics">/metrics</a></li>
<li><a href="/workflows">/workflows</a></li></ul>
<p>RPC: <code>POST /v1/rpc/&lt;method&gt;</code> or <code>POST /rpc</code>; WebSocket on
<code>/</code>.</p></body></html>
"""


async def not_found(send: Any) -> None:
    await send_json(send, 404, NOT_FOUND, GATEWAY)


def core_routes(ctx: GatewayContext) -> list[RouteSpec]:
    """The gateway's own routes, mounted in its route table like any transport's."""

    async def health(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("query_string"):
            await not_found(send)
            return
        await send_json(send, 200, ctx.health_payload(include_uptime=False), GATEWAY)

    async def metrics(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("query_string"):
            await not_found(send)
            return
        await respond(send, 200, ctx.metrics.render(), METRICS_HEADERS)

    async def workflows(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("query_string"):
            await not_found(send)
            return
        summaries = ctx.registry.summaries(include_system=False)
        await send_json(send, 200, {"workflows": summaries}, GATEWAY)

    async def index(scope: Any, receive: Any, send: Any) -> None:
        await respond(send, 200, INDEX, HTML_HEADERS)

    def public(path: str, endpoint: Any, name: str) -> RouteSpec:
        return RouteSpec(path, endpoint, ("GET",), auth="public", asgi=True, name=name)

    return [
        public("/health", health, "health"),
        public("/metrics", metrics, "metrics"),
        public("/workflows", workflows, "workflows"),
        public("/", index, "index"),
    ]


__all__ = ["NOT_FOUND", "core_routes", "not_found"]
