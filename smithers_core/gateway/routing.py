"""The gateway's ASGI app: every request and upgrade is routed through its route table (the
one router) and, unless the route is ``auth="public"``, passes core's Host/Origin gates,
authentication and the route's scope first (D3). Failures answer the gateway's ResponseFrame
error with its status; unknown paths 404, unknown upgrade paths are refused with 404.

An endpoint is a raw ASGI app (``asgi=True``) or Starlette-style (``endpoint(request)``
returning a response, ``endpoint(websocket)``). A template route's ``{name}`` segments are in
``scope["path_params"]`` (``request.path_params``). The caller's identity is in
``scope["state"]["identity"]`` (``request.state.identity``), and an HTTP endpoint also finds
the decoded headers in ``scope["state"]["headers"]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.websockets import WebSocket

from smithers_core import scopes
from smithers_core.auth import Identity
from smithers_core.contributions import RouteSpec
from smithers_core.errors import SmithersError
from smithers_core.gateway.authn import auth_request
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.endpoints import not_found
from smithers_core.gateway.wire import error_frame, request_id_of, status_for_code
from smithers_core.http.asgi import deny, lifespan, respond, scope_headers, scope_peer
from smithers_core.http.responses import GATEWAY, send_json

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


def _wants_html(headers: dict[str, str]) -> bool:
    return "text/html" in headers.get("accept", "")


async def _redirect_to_sign_in(send: Any, sign_in: str, scope: dict[str, Any]) -> None:
    """302 to the route's sign-in page, ``next`` being the page asked for."""
    asked = str(scope.get("path", "/"))
    query = scope.get("query_string") or b""
    if query:
        asked += "?" + query.decode("latin-1")
    location = sign_in + "?next=" + quote(asked, safe="/")
    await respond(
        send,
        302,
        b"",
        [(b"location", location.encode("latin-1")), (b"cache-control", b"no-store")],
    )


class GatewayApp:
    """The ASGI app of one gateway."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        kind = scope["type"]
        if kind == "http":
            return self.http(scope, receive, send)
        if kind == "websocket":
            return self.websocket(scope, receive, send)
        return lifespan(receive, send)

    async def _identity(
        self, scope: dict[str, Any], route: RouteSpec, headers: dict[str, str]
    ) -> Identity:
        request = auth_request(
            "ws" if route.websocket else "http",
            headers,
            scope_peer(scope),
            str(scope.get("path", "/")),
        )
        try:
            identity = await self.ctx.authenticate(request)
        except SmithersError:
            self.ctx.metrics.auth_events.labels("failure").inc()
            raise
        required = route.scope
        if required is not None and not scopes.has_scope(identity.scopes, required):
            raise SmithersError(
                "FORBIDDEN",
                f"Missing required scope {required} for {route.path}",
                {"requiredScope": required},
            )
        return identity

    async def http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        found = self.ctx.routes.match_http(scope.get("method", "GET"), scope.get("path", "/"))
        if found is None:
            await not_found(send)
            return
        route = found.target
        if found.params:
            scope["path_params"] = found.params
        if route.asgi and route.auth == "public":
            await route.endpoint(scope, receive, send)
            return
        identity = None
        headers = scope_headers(scope)
        if route.auth != "public":
            try:
                identity = await self._identity(scope, route, headers)
            except SmithersError as exc:
                if route.sign_in and exc.code == "UNAUTHORIZED" and _wants_html(headers):
                    await _redirect_to_sign_in(send, route.sign_in, scope)
                    return
                if route.error_body is not None:
                    body = route.error_body(exc.code, exc.message, exc.details)
                else:
                    body = error_frame(request_id_of(headers), exc)
                await send_json(send, status_for_code(exc.code), body, GATEWAY)
                return
        share_request_state(scope, identity, headers)
        if route.asgi:
            await route.endpoint(scope, receive, send)
            return
        response = route.endpoint(Request(scope, receive, send))
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)

    def websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        """Serve an upgrade on the route for its path; no route refuses it with a 404.

        A public ASGI endpoint (core's WebSocket RPC) is returned as is, so a long-lived
        socket holds no extra coroutine frame for the routing.
        """
        found = self.ctx.routes.match_ws(str(scope.get("path") or "/"))
        if found is None:
            return self._refuse(scope, receive, send)
        route = found.target
        if found.params:
            scope["path_params"] = found.params
        if route.asgi and route.auth == "public":
            result: Awaitable[None] = route.endpoint(scope, receive, send)
            return result
        return self._serve_ws(route, scope, receive, send)

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] == "websocket.connect":
            await deny(send, 404, NOT_FOUND_BODY, scope)

    async def _serve_ws(
        self, route: RouteSpec, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        identity = None
        if route.auth != "public":
            message = await receive()
            if message["type"] != "websocket.connect":
                return
            try:
                identity = await self._identity(scope, route, scope_headers(scope))
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


__all__ = ["GatewayApp", "share_request_state"]
