"""Pieces both HTTP surfaces share: path decoding, query access, the operator identity."""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from smithers_core.auth import Identity
from smithers_core.errors import SmithersError
from smithers_core.hosts.errors import Table, to_http
from smithers_core.hosts.sse import StreamRegistry
from smithers_core.http.asgi import lifespan, raw_path
from smithers_core.http.auth import UNAUTHORIZED_MESSAGE, resolve_token
from smithers_core.http.errors import HttpError
from smithers_core.http.responses import (
    Response,
    error_response,
    http_error_response,
    json_response,
)
from smithers_core.metrics import HostMetrics

if TYPE_CHECKING:
    from smithers_core.runtime import Runtime

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


def js_truthy(value: Any) -> bool:
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    return True


Route = tuple[str, re.Pattern[str], str, Callable[..., Awaitable[Response]]]


class RoutedApp:
    """The request pipeline both HTTP surfaces share: lifespan, ``GET /health`` before auth,
    the bearer check, a method + regex route table, error mapping through the surface's table,
    and request metrics labelled by route template.

    Subclasses set ``routes`` and the class attributes below, and call :meth:`setup`.
    """

    error_table: Table
    strict_headers: bool = True  # ``Cache-Control: no-store`` / ``nosniff`` on JSON replies
    count_health: bool = True  # whether ``GET /health`` is recorded in the metrics
    routes: list[Route]

    def setup(
        self,
        runtime: Runtime,
        auth_token: str | None,
        max_body_bytes: int,
        sse_keepalive_ms: int | None,
        authorized: Callable[[Scope, str], bool],
    ) -> None:
        self.rt = runtime
        self.token = resolve_token(auth_token)
        self.max_body_bytes = max_body_bytes
        self.keepalive_ms = (
            sse_keepalive_ms
            if sse_keepalive_ms is not None
            else env_int("SMITHERS_SSE_KEEPALIVE_MS", DEFAULT_KEEPALIVE_MS)
        )
        self.authorized = authorized
        self.metrics = HostMetrics(active_runs=lambda: len(runtime.engine.active))
        runtime.hub.add_tap(self.metrics.observe_events)
        self.streams = StreamRegistry(runtime.hub, self.metrics.sse_streams.inc)

    def route_label(self, path: str) -> str:
        if path == "/health":
            return "/health"
        for _method, pattern, template, _handler in self.routes:
            if pattern.match(path):
                return template
        # deliberate: unmatched paths share one label (raw paths are a cardinality risk)
        return "unmatched"

    async def dispatch(self, scope: Scope, receive: Receive, method: str, path: str) -> Response:
        strict = self.strict_headers
        if method == "GET" and path == "/health":
            return json_response(200, {"ok": True}, strict=strict)
        if self.token is not None and not self.authorized(scope, self.token):
            return error_response(401, "UNAUTHORIZED", UNAUTHORIZED_MESSAGE, strict=strict)
        for route_method, pattern, _template, handler in self.routes:
            if route_method != method:
                continue
            m = pattern.match(path)
            if m is not None:
                response: Response = await handler(scope, receive, *m.groups())
                return response
        return error_response(404, "NOT_FOUND", "Route not found", strict=strict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        began = time.perf_counter()
        method = str(scope["method"]).upper()
        path = raw_path(scope)
        strict = self.strict_headers
        try:
            response = await self.dispatch(scope, receive, method, path)
        except HttpError as exc:
            response = http_error_response(exc, strict=strict)
        except SmithersError as exc:
            response = http_error_response(to_http(exc, self.error_table), strict=strict)
        except Exception as exc:
            log.exception("request %s %s failed", method, path)
            response = error_response(
                500, "SERVER_ERROR", str(exc) or "Unknown error", strict=strict
            )
        if self.count_health or path != "/health":
            # SSE is recorded as soon as its stream starts (reference/server.md 2.13)
            self.metrics.observe_request(
                method,
                self.route_label(path),
                response.status_code,
                (time.perf_counter() - began) * 1000,
            )
        await response(scope, receive, send)


DEFAULT_KEEPALIVE_MS = 10_000


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default
