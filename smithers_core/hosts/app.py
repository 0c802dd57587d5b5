"""The request pipeline both HTTP surfaces share (reference/server.md 2.4, 2.13 and 3.2).

For every request: the lifespan protocol; ``GET /health`` before auth; the surface's token
check on everything else but the app's public routes (:meth:`HostApp.add_public`, e.g.
start_server's ``GET /openapi.json``), unknown paths included (auth before routing); one
:class:`~smithers_core.http.router.Router` on the raw path, whose captured segments are decoded
with ``decodeURIComponent`` rules; a wrong method or unknown path is 404 ``NOT_FOUND``; errors
answer through the surface's table; each request is recorded in the metrics under its route's
label (``/v1/runs/:runId``), or ``unmatched``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from smithers_core.errors import SmithersError
from smithers_core.hosts.errors import to_http
from smithers_core.hosts.options import SSE_KEEPALIVE_MS, option_ms
from smithers_core.hosts.sse import StreamRegistry
from smithers_core.hosts.surface import Surface
from smithers_core.http.asgi import lifespan, query, raw_path, scope_headers
from smithers_core.http.auth import UNAUTHORIZED_MESSAGE, resolve_token
from smithers_core.http.body import InvalidJson, JsonTooDeep, read_json
from smithers_core.http.errors import HttpError
from smithers_core.http.params import strict_unquote
from smithers_core.http.responses import (
    Reply,
    Response,
    error_response,
    http_error_response,
    json_response,
)
from smithers_core.http.router import Match, Route, Router
from smithers_core.metrics import CONTENT_TYPE, HostMetrics
from smithers_core.runtime import Runtime

log = logging.getLogger("smithers.hosts")


@dataclass(frozen=True, slots=True)
class Request:
    """What a route handler gets: the ASGI scope and receive, its lower-cased headers
    (decoded once per request) and its decoded path params."""

    scope: Scope
    receive: Receive
    headers: dict[str, str]
    params: dict[str, str]

    @property
    def query(self) -> dict[str, str]:
        """The first value of each query parameter."""
        return query(self.scope)


Handler = Callable[[Request], Awaitable[Response]]


class HostApp:
    """An ASGI app over an open :class:`~smithers_core.runtime.Runtime`, spelled as
    ``surface``; subclasses add their routes to :attr:`router`."""

    def __init__(
        self,
        runtime: Runtime,
        surface: Surface,
        *,
        auth_token: str | None,
        max_body_bytes: int,
        sse_keepalive_ms: int | None,
    ) -> None:
        self.rt = runtime
        self.surface = surface
        self.token = resolve_token(auth_token)
        self.max_body_bytes = max_body_bytes
        self.keepalive_ms = option_ms(
            sse_keepalive_ms, "SMITHERS_SSE_KEEPALIVE_MS", SSE_KEEPALIVE_MS
        )
        self.metrics = HostMetrics(active_runs=lambda: len(runtime.engine.active))
        runtime.hub.add_tap(self.metrics.observe_events)
        self.streams = StreamRegistry(runtime.hub, self.metrics.sse_streams.inc)
        self.router: Router[Handler] = Router()
        self.public: set[Route[Handler]] = set()
        """Routes answered without the token (``GET /health`` is answered before routing)."""

    def add_public(self, path: str, handler: Handler) -> None:
        """Add a ``GET`` route that needs no token, like ``/health``."""
        self.public.add(self.router.add(path, handler))

    # -- what handlers use ------------------------------------------------------------------
    def reply(self, status: int, body: Any) -> Reply:
        """A JSON reply with the surface's headers."""
        return json_response(status, body, strict=self.surface.strict_headers)

    async def body(self, req: Request) -> dict[str, Any]:
        """The request body as a JSON object; any other JSON value (``null`` included) is
        ``{}``. Over ``max_body_bytes`` is 413; invalid JSON is 400, or ``{}`` where the
        surface's bodies are lenient."""
        try:
            value = await read_json(req.receive, req.headers, self.max_body_bytes)
        except (InvalidJson, JsonTooDeep):
            if not self.surface.lenient_bodies:
                raise
            return {}
        return value if isinstance(value, dict) else {}

    async def metrics_route(self, req: Request) -> Response:
        """``GET /metrics``: the Prometheus text of this host (reference/server.md 6)."""
        headers = [(b"content-type", CONTENT_TYPE.encode())]
        if self.surface.strict_headers:
            headers += [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
        return Reply(200, self.metrics.render(), headers)

    # -- the pipeline -----------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        began = time.perf_counter()
        method = str(scope["method"]).upper()
        path = raw_path(scope)
        label: str | None
        if method == "GET" and path == "/health":
            response: Response = self.reply(200, {"ok": True})
            label = "/health" if self.surface.count_health else None
        else:
            found = self.router.match(method, path)
            # deliberate: unmatched paths share one label (raw paths are a cardinality risk)
            label = found.route.label if found is not None else "unmatched"
            response = await self._answer(scope, receive, found, method, path)
        if label is not None:
            # SSE is recorded as soon as its stream starts (reference/server.md 2.13)
            duration_ms = (time.perf_counter() - began) * 1000
            self.metrics.observe_request(method, label, response.status_code, duration_ms)
        await response(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, found: Match[Handler] | None, method: str, path: str
    ) -> Response:
        strict = self.surface.strict_headers
        headers = scope_headers(scope)
        try:
            public = found is not None and found.route in self.public
            if (
                self.token is not None
                and not public
                and not self.surface.authorized(headers, self.token)
            ):
                return error_response(401, "UNAUTHORIZED", UNAUTHORIZED_MESSAGE, strict=strict)
            if found is None:
                return error_response(404, "NOT_FOUND", "Route not found", strict=strict)
            params = {name: strict_unquote(raw) for name, raw in found.params.items()}
            return await found.target(Request(scope, receive, headers, params))
        except HttpError as exc:
            return http_error_response(exc, strict=strict)
        except SmithersError as exc:
            return http_error_response(to_http(exc, self.surface.errors), strict=strict)
        except Exception as exc:
            log.exception("request %s %s failed", method, path)
            return error_response(500, "SERVER_ERROR", str(exc) or "Unknown error", strict=strict)


__all__ = ["Handler", "HostApp", "Request"]
