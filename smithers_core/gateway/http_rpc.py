"""HTTP RPC (reference 9.6): ``POST /rpc`` with ``{id?, method, params}`` and
``POST /v1/rpc/<method>`` with the params as the body. Mounted by the ``core.gateway_rpc``
plugin as an ``auth="required"`` route, so the caller is authenticated by core before the body
is read; the dispatcher checks each method's scope.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from smithers_core.auth import Identity
from smithers_core.contributions import RpcCall
from smithers_core.errors import SmithersError
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.dispatch import Dispatcher
from smithers_core.gateway.limits import (
    MAX_ID,
    check_bounds,
    check_method,
    clip_prompt,
    loads_client,
)
from smithers_core.gateway.wire import (
    encode,
    ok_frame,
    ok_text,
    request_id_of,
    status_for_code,
)
from smithers_core.http.asgi import respond, scope_headers
from smithers_core.http.body import read_body
from smithers_core.http.responses import GATEWAY, send_json

RPC_PATH = "/rpc"
RPC_PREFIX = "/v1/rpc/"


def rpc_body(raw: bytes, path: str) -> dict[str, Any]:
    """The body of a request to ``path``, checked in upstream's order: JSON (an empty body is
    ``{}`` on ``/v1/rpc/<method>``), an object, then the bounds of reference 3."""
    if path.startswith(RPC_PREFIX) and not raw.strip():
        body: Any = {}
    else:
        body = loads_client(raw, "RPC body must be valid JSON")
    if not isinstance(body, dict):
        raise SmithersError("INVALID_REQUEST", "RPC body must be a JSON object")
    clip_prompt(body)
    check_bounds(body)
    return body


def rpc_method(body: dict[str, Any], path: str) -> tuple[str, Any]:
    """``(method, params)``: from the path after ``/v1/rpc/``, else from the body."""
    if path.startswith(RPC_PREFIX):
        method = check_method(unquote(path[len(RPC_PREFIX) :]))
        params = body.get("params") if "method" in body else body
    else:
        method = check_method(body.get("method"))
        params = body.get("params")
    return method, params


class HttpRpc:
    """The ASGI endpoint behind both RPC paths; the identity is ``scope["state"]["identity"]``."""

    __slots__ = ("ctx", "dispatcher")

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.dispatcher = Dispatcher(ctx)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        ctx, dispatcher = self.ctx, self.dispatcher
        state = scope["state"]
        identity: Identity = state["identity"]
        headers: dict[str, str] = state.get("headers") or scope_headers(scope)
        request_id = request_id_of(headers)
        frame_id = request_id
        try:
            raw = await read_body(receive, headers, ctx.settings.max_body_bytes)
            path = scope.get("path", "/")
            body = rpc_body(raw, path)
            if isinstance(body.get("id"), str) and len(body["id"]) <= MAX_ID:
                frame_id = body["id"]
            method, params = rpc_method(body, path)
            ctx.metrics.call(dispatcher.label(method), "http")
            inline = dispatcher.inline(method)
            if inline is not None and not inline.websocket_only:
                # health, getRun of a cached run, ...: the payload's JSON, no coroutine
                payload_json = dispatcher.call_inline(identity, inline, method, params)
                text = ok_text(frame_id, payload_json)
            else:
                call = RpcCall(identity, "http", "http:" + request_id)
                payload = await dispatcher.call(call, method, params)
                text = encode(ok_frame(frame_id, payload))
        except Exception as exc:
            frame = dispatcher.error_frame(frame_id, exc)
            await send_json(send, status_for_code(frame["error"]["code"]), frame, GATEWAY)
            return
        await respond(send, 200, text.encode("utf-8"), GATEWAY)


__all__ = ["RPC_PATH", "RPC_PREFIX", "HttpRpc", "rpc_body", "rpc_method"]
