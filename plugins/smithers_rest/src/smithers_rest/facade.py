"""The ASGI endpoint behind ``/v1/api`` and everything below it (reference 9.2).

Core has authenticated the caller (``scope["state"]["identity"]``) before this runs. A request
is matched on its raw path (so ``%2F`` stays inside one segment) by core's router; its flat
query is coerced to the types its route documents; POST, PUT and PATCH bodies are read up to
the gateway's ``max_body_bytes`` and must be JSON objects. The route's RPC method is then
called through ``HostContext.call``, so scopes, validation and errors are the method's own.
"""

from __future__ import annotations

import typing
from typing import Any
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel

from smithers_core.auth import Identity
from smithers_core.contributions import HostContext
from smithers_core.errors import SmithersError
from smithers_core.gateway.limits import check_bounds, loads_client
from smithers_core.http.asgi import raw_path, scope_headers
from smithers_core.http.body import read_body
from smithers_core.http.router import Router
from smithers_core.scopes import has_scope
from smithers_rest.envelope import ROUTE_NOT_FOUND, send_failure, send_ok
from smithers_rest.routes import ROUTES, RestRequest, RestRoute, events_params
from smithers_rest.stream import ChangeStream

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
EVENTS_SCOPE = "run:read"


def _kinds(model: type[BaseModel] | None) -> dict[str, type]:
    """``int`` or ``bool`` for each query field documented with that type."""
    out: dict[str, type] = {}
    if model is None:
        return out
    for name, info in model.model_fields.items():
        args = typing.get_args(info.annotation) or (info.annotation,)
        for kind in (bool, int):
            if kind in args:
                out[name] = kind
                break
    return out


def coerce(raw: bytes, kinds: dict[str, type]) -> dict[str, Any]:
    """The flat query: integers and booleans where the route documents them (a value that
    does not parse stays a string, for the method to refuse); a repeated name keeps the last."""
    out: dict[str, Any] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        kind = kinds.get(name)
        parsed: Any = value
        if kind is bool and value in ("true", "false", "1", "0"):
            parsed = value in ("true", "1")
        elif kind is int and value.lstrip("-").isdigit() and value.isascii():
            parsed = int(value)
        out[name] = parsed
    return out


class Facade:
    """Routes ``/v1/api/*`` requests to the RPC methods of their routes."""

    def __init__(self, host: HostContext, stream: ChangeStream | None) -> None:
        self.host = host
        self.stream = stream
        self.router: Router[RestRoute] = Router()
        self.kinds: dict[int, dict[str, type]] = {}
        for route in ROUTES:
            self.router.add(route.full_path, route, (route.method,), owner="smithers_rest")
            self.kinds[id(route)] = _kinds(route.query)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        state = scope.get("state") or {}
        identity: Identity = state["identity"]
        headers: dict[str, str] = state.get("headers") or scope_headers(scope)
        method = str(scope.get("method", "GET"))
        found = self.router.match("GET" if method == "HEAD" else method, raw_path(scope))
        try:
            if found is None:
                raise ROUTE_NOT_FOUND
            route = found.target
            body: dict[str, Any] = {}
            if method in BODY_METHODS:
                body = await self._body(receive, headers)
            query = coerce(scope.get("query_string") or b"", self.kinds[id(route)])
            params = {name: unquote(value) for name, value in found.params.items()}
            request = RestRequest(params, query, body)
            if route.rpc is None:
                data = await self._events(identity, request)
            else:
                data = await self.host.call(identity, route.rpc, route.build(request))
        except Exception as exc:
            await send_failure(send, exc)
            return
        seq = None
        if route.mutation:
            seq = self.stream.mutation_seq() if self.stream is not None else 0
        await send_ok(send, data, seq)

    async def _body(self, receive: Any, headers: dict[str, str]) -> dict[str, Any]:
        limit = self.host.options.get("max_body_bytes")
        raw = await read_body(receive, headers, limit if isinstance(limit, int) else None)
        if not raw.strip():
            return {}
        body = loads_client(raw, "Request body must be valid JSON", field="request body")
        if not isinstance(body, dict):
            raise SmithersError("INVALID_REQUEST", "Request body must be a JSON object")
        check_bounds(body, "request body")
        return body

    async def _events(self, identity: Identity, request: RestRequest) -> Any:
        """The persisted history of a run (``GET /v1/api/events``, ``.../runs/{id}/events``)."""
        if not has_scope(identity.scopes, EVENTS_SCOPE):
            raise SmithersError(
                "FORBIDDEN",
                f"Missing required scope {EVENTS_SCOPE} for events",
                {"requiredScope": EVENTS_SCOPE},
            )
        run_id, node_id, after, limit = events_params(request)
        db = self.host.db
        if db.run_status(run_id) is None:
            raise SmithersError("NOT_FOUND", f"Run not found: {run_id}")
        return await db.call(db.list_events, run_id, after, limit, node_id)


__all__ = ["Facade", "coerce"]
