"""Routes contributed by plugins through ``smithers_transports`` (D3), mounted on the gateway.

An endpoint is Starlette-style: ``endpoint(request) -> Response`` (sync or async) for HTTP and
``endpoint(websocket)`` for WebSocket routes. Routes with ``auth="required"`` (the default)
run behind the gateway's Host/Origin gates, authentication and the route's ``scope``
(default ``run:read``); the caller's :class:`~smithers_core.auth.Identity` is in
``request.state.identity``. Only ``auth="public"`` routes skip them (and ``smithers plugins
list`` shows them). Failures answer the gateway's ResponseFrame error with its status.
"""

from __future__ import annotations

import inspect
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from smithers_core import scopes
from smithers_core.auth.tokens import parse_cookies
from smithers_core.contributions import RouteSpec, Transport, UiMount
from smithers_core.errors import SmithersError
from smithers_core.gateway.frames import error_frame, status_for_code
from smithers_core.gateway.websocket import deny, scope_headers

if TYPE_CHECKING:
    from smithers_core.gateway.gateway import Gateway

DEFAULT_SCOPE = "run:read"


def _peer(scope: dict[str, Any]) -> Any:
    client = scope.get("client")
    return (str(client[0]), int(client[1])) if client else "unix"


class PluginRoutes:
    """Exact-path routing to plugin endpoints, with core's auth wrapped around them, and
    UI mounts (``smithers_ui_mounts``) by longest path prefix (GET/HEAD only). UI mounts are
    served without auth, except a mount whose ``option`` is ``"operator_ui"``."""

    def __init__(
        self, gateway: Gateway, transports: list[Transport], mounts: list[UiMount] | None = None
    ) -> None:
        self.gw = gateway
        self.transports = transports
        self.mounts: list[tuple[str, Any, UiMount]] = []
        for mount in mounts or []:
            app = mount.app
            if app is None and mount.assets is not None:
                app = StaticFiles(directory=str(mount.assets), html=True)
            if app is not None:
                self.mounts.append((mount.path.rstrip("/") or "/", app, mount))
        self.mounts.sort(key=lambda m: len(m[0]), reverse=True)
        self.http: dict[tuple[str, str], RouteSpec] = {}
        self.ws: dict[str, RouteSpec] = {}
        for transport in transports:
            for route in transport.routes:
                if route.websocket:
                    self.ws[route.path] = route
                else:
                    for method in route.methods:
                        self.http[(method.upper(), route.path)] = route

    def match_mount(self, method: str, path: str) -> tuple[str, Any, UiMount] | None:
        if method not in ("GET", "HEAD"):
            return None
        for prefix, app, mount in self.mounts:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return prefix, app, mount
        return None

    async def serve_mount(
        self, found: tuple[str, Any, UiMount], scope: Any, receive: Any, send: Any
    ) -> None:
        from smithers_core.gateway.routes import respond_json

        prefix, app, mount = found
        if mount.option == "operator_ui":
            route = RouteSpec(mount.path, app)
            try:
                await self._identity(scope, route)
            except SmithersError as exc:
                await respond_json(send, status_for_code(exc.code), error_frame("ui", exc))
                return
        sub = dict(scope)
        if prefix != "/":
            sub["root_path"] = scope.get("root_path", "") + prefix
            sub["path"] = scope["path"][len(prefix) :] or "/"
        await app(sub, receive, send)

    def match_http(self, method: str, path: str) -> RouteSpec | None:
        route = self.http.get((method, path))
        if route is None and method == "HEAD":
            route = self.http.get(("GET", path))
        return route

    async def _identity(self, scope: dict[str, Any], route: RouteSpec) -> Any:
        headers = scope_headers(scope)
        identity = await self.gw.authenticate(
            "ws" if route.websocket else "http",
            headers,
            parse_cookies(headers.get("cookie")),
            _peer(scope),
            str(scope.get("path", "/")),
            None,
        )
        required = route.scope or DEFAULT_SCOPE
        if not scopes.has_scope(identity.scopes, required):
            raise SmithersError(
                "FORBIDDEN",
                f"Missing required scope {required} for {route.path}",
                {"requiredScope": required},
            )
        return identity

    async def serve_http(self, route: RouteSpec, scope: Any, receive: Any, send: Any) -> None:
        from smithers_core.gateway.routes import respond_json

        identity = None
        if route.auth != "public":
            try:
                identity = await self._identity(scope, route)
            except SmithersError as exc:
                request_id = scope_headers(scope).get("x-request-id") or str(uuid.uuid4())
                await respond_json(send, status_for_code(exc.code), error_frame(request_id, exc))
                return
        request = Request(scope, receive, send)
        request.state.identity = identity
        response = route.endpoint(request)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)

    async def serve_ws(self, route: RouteSpec, scope: Any, receive: Any, send: Any) -> None:
        identity = None
        if route.auth != "public":
            message = await receive()
            if message["type"] != "websocket.connect":
                return
            try:
                identity = await self._identity(scope, route)
            except SmithersError as exc:
                status = status_for_code(exc.code)
                await deny(send, status, (exc.message + "\n").encode(), scope)
                return
            replayed = [message]
            original = receive

            async def receive_again() -> Any:
                return replayed.pop() if replayed else await original()

            receive = receive_again
        websocket = WebSocket(scope, receive, send)
        websocket.state.identity = identity
        result = route.endpoint(websocket)
        if inspect.isawaitable(result):
            await result


__all__ = ["PluginRoutes"]
