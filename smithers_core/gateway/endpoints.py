"""The gateway's own HTTP endpoints (reference 9.1): ``GET /health``, ``GET /metrics`` and
``GET /workflows`` (each only without a query string, as upstream matches them), the index
page ``GET /`` and the browser session handoff (:mod:`.session`); every other path belongs to
transports and UI mounts, else 404."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from smithers_core.contributions import RouteSpec, UiMount
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from smithers_core.gateway.session import session_routes
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


def index_page(mounts: Sequence[UiMount]) -> bytes:
    """The HTML index: the gateway's own endpoints and every UI mount."""
    items = "".join(
        f'<li><a href="{html.escape(m.path, quote=True)}">{html.escape(m.title)}</a></li>'
        for m in mounts
    )
    return INDEX.replace(b"</ul>", items.encode("utf-8") + b"</ul>", 1)


def core_routes(ctx: GatewayContext, mounts: Sequence[UiMount] = ()) -> list[RouteSpec]:
    """The gateway's own routes, mounted in its route table like any transport's.

    ``GET /`` (reference 9.1): a UI mounted at ``/`` serves it; else a 302 to the operator
    console when one is mounted; else the index page listing the endpoints and mounts.
    """
    root_mounted = any(m.path.rstrip("/") == "" for m in mounts)
    console = next((m for m in mounts if m.option == "operator_ui"), None)
    page = index_page(mounts)

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
        if console is not None:
            target = console.path.rstrip("/") + "/"
            headers = [(b"location", target.encode("latin-1")), (b"cache-control", b"no-store")]
            await respond(send, 302, b"", headers)
            return
        await respond(send, 200, page, HTML_HEADERS)

    def public(path: str, endpoint: Any, name: str) -> RouteSpec:
        return RouteSpec(path, endpoint, ("GET",), auth="public", asgi=True, name=name)

    return [
        public("/health", health, "health"),
        public("/metrics", metrics, "metrics"),
        public("/workflows", workflows, "workflows"),
        *([] if root_mounted else [public("/", index, "index")]),
        *session_routes(ctx),
    ]


__all__ = ["NOT_FOUND", "core_routes", "not_found"]
