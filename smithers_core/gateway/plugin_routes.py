"""Routes contributed by plugins through ``smithers_transports`` (D3), mounted on the gateway.

Core's own RPC transports arrive this way too (plugins ``core.gateway_rpc`` and
``core.gateway_ws``), so disabling one removes its routes and another plugin may serve them.

An endpoint is Starlette-style, ``endpoint(request) -> Response`` (sync or async) for HTTP and
``endpoint(websocket)`` for WebSocket, or a raw ASGI app ``endpoint(scope, receive, send)``
when the route says ``asgi=True``. Routes with ``auth="required"`` (the default) run behind the
gateway's Host/Origin gates, authentication and the route's ``scope`` (``None``: any
authenticated caller); the caller's :class:`~smithers_core.auth.Identity` is in
``request.state.identity`` (``scope["state"]["identity"]`` for ASGI endpoints). Only
``auth="public"`` routes skip them (``smithers plugins list`` shows them). Failures answer the
gateway's ResponseFrame error with its status. Exact paths win over ``prefix=True`` routes;
among prefixes the longest wins. Two transports claiming one route is ``PLUGIN_CONFLICT``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from smithers_core import scopes
from smithers_core.auth import Identity
from smithers_core.auth.tokens import parse_cookies
from smithers_core.contributions import RouteSpec, Transport, UiMount
from smithers_core.errors import SmithersError
from smithers_core.gateway.frames import error_frame, request_id_of, status_for_code
from smithers_core.http.asgi import deny, scope_headers, scope_peer
from smithers_core.http.responses import GATEWAY, send_json

if TYPE_CHECKING:
    from smithers_core.gateway.gateway import Gateway

NOT_FOUND_BODY = b"Not Found\n"


def share_request_state(
    scope: dict[str, Any], identity: Identity | None, headers: dict[str, str] | None
) -> None:
    """Hand the endpoint what core already worked out, in the request's ``state`` (servers
    give each request its own copy): ``identity``, and ``headers`` decoded once."""
    state = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    state["identity"] = identity
    if headers is not None:
        state["headers"] = headers


class _Table:
    """Routes of one kind (HTTP or WebSocket) keyed by ``key``: exact paths, then prefixes."""

    def __init__(self) -> None:
        self.exact: dict[Any, RouteSpec] = {}
        self.prefixes: list[tuple[Any, RouteSpec]] = []
        self.owners: dict[Any, str] = {}

    def add(self, key: Any, route: RouteSpec, owner: str, label: str) -> None:
        if not route.path.startswith("/"):
            raise SmithersError(
                "PLUGIN_INVALID",
                f"Route path {route.path!r} of transport '{owner}' must start with '/'",
            )
        table_key = (key, route.prefix)
        if table_key in self.owners:
            raise SmithersError(
                "PLUGIN_CONFLICT",
                f"Route {label} is contributed by both '{self.owners[table_key]}' and "
                f"'{owner}'; disable one of them ([plugins] disable)",
                {"route": label, "transports": [self.owners[table_key], owner]},
            )
        self.owners[table_key] = owner
        if route.prefix:
            self.prefixes.append((key, route))
            self.prefixes.sort(key=lambda item: len(item[1].path), reverse=True)
        else:
            self.exact[key] = route

    def match(self, key: Any, path: str, method: str | None = None) -> RouteSpec | None:
        """The exact route for ``key``, else the longest prefix of ``path`` (for ``method``)."""
        route = self.exact.get(key)
        if route is not None:
            return route
        for prefix_key, candidate in self.prefixes:
            if path.startswith(candidate.path) and (method is None or prefix_key[0] == method):
                return candidate
        return None


class PluginRoutes:
    """Plugin endpoints with core's auth wrapped around them, and UI mounts
    (``smithers_ui_mounts``) by longest path prefix (GET/HEAD only). UI mounts are served
    without auth, except a mount whose ``option`` is ``"operator_ui"``."""

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
        self.http = _Table()
        self.ws = _Table()
        for transport in transports:
            for route in transport.routes:
                suffix = "*" if route.prefix else ""
                if route.websocket:
                    label = f"WebSocket {route.path}{suffix}"
                    self.ws.add(route.path, route, transport.name, label)
                else:
                    for method in route.methods:
                        label = f"{method.upper()} {route.path}{suffix}"
                        self.http.add((method.upper(), route.path), route, transport.name, label)

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
        prefix, app, mount = found
        if mount.option == "operator_ui":
            route = RouteSpec(mount.path, app)
            try:
                await self._identity(scope, route)
            except SmithersError as exc:
                await send_json(send, status_for_code(exc.code), error_frame("ui", exc), GATEWAY)
                return
        sub = dict(scope)
        if prefix != "/":
            sub["root_path"] = scope.get("root_path", "") + prefix
            sub["path"] = scope["path"][len(prefix) :] or "/"
        await app(sub, receive, send)

    def match_http(self, method: str, path: str) -> RouteSpec | None:
        route = self.http.match((method, path), path, method)
        if route is None and method == "HEAD":
            route = self.http.match(("GET", path), path, "GET")
        return route

    def match_ws(self, path: str) -> RouteSpec | None:
        return self.ws.match(path, path)

    async def _identity(
        self, scope: dict[str, Any], route: RouteSpec, headers: dict[str, str] | None = None
    ) -> Identity:
        if headers is None:
            headers = scope_headers(scope)
        try:
            identity = await self.gw.authenticate(
                "ws" if route.websocket else "http",
                headers,
                parse_cookies(headers.get("cookie")),
                scope_peer(scope),
                str(scope.get("path", "/")),
                None,
            )
        except SmithersError:
            self.gw.metrics.auth_events.labels("failure").inc()
            raise
        required = route.scope
        if required is not None and not scopes.has_scope(identity.scopes, required):
            raise SmithersError(
                "FORBIDDEN",
                f"Missing required scope {required} for {route.path}",
                {"requiredScope": required},
            )
        return identity

    async def serve_http(self, route: RouteSpec, scope: Any, receive: Any, send: Any) -> None:
        identity = None
        headers = scope_headers(scope)
        if route.auth != "public":
            try:
                identity = await self._identity(scope, route, headers)
            except SmithersError as exc:
                request_id = request_id_of(headers)
                await send_json(
                    send, status_for_code(exc.code), error_frame(request_id, exc), GATEWAY
                )
                return
        share_request_state(scope, identity, headers)
        if route.asgi:
            await route.endpoint(scope, receive, send)
            return
        response = route.endpoint(Request(scope, receive, send))
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)

    def serve_ws(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        """Serve an upgrade on the route for its path; no route refuses it with a 404.

        A public ASGI endpoint (core's WebSocket RPC) is returned as is, so a long-lived
        socket holds no extra coroutine frame for the routing.
        """
        route = self.match_ws(str(scope.get("path") or "/"))
        if route is None:
            return self._refuse_ws(scope, receive, send)
        if route.asgi and route.auth == "public":
            result: Awaitable[None] = route.endpoint(scope, receive, send)
            return result
        return self._serve_ws_route(route, scope, receive, send)

    async def _refuse_ws(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] == "websocket.connect":
            await deny(send, 404, NOT_FOUND_BODY, scope)

    async def _serve_ws_route(self, route: RouteSpec, scope: Any, receive: Any, send: Any) -> None:
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
        if identity is not None or not route.asgi:
            # a socket lives long: its scope keeps the identity, never decoded headers
            share_request_state(scope, identity, None)
        if route.asgi:
            await route.endpoint(scope, receive, send)
            return
        result = route.endpoint(WebSocket(scope, receive, send))
        if inspect.isawaitable(result):
            await result


__all__ = ["PluginRoutes"]
