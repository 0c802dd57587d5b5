"""HTTP RPC (reference 9.6): ``POST /rpc`` with ``{id?, method, params}`` and
``POST /v1/rpc/<method>`` with the params as the body. Mounted by the ``core.gateway_rpc``
plugin as an ``auth="required"`` route, so the caller is authenticated by core before the body
is read; the dispatcher checks each method's scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from smithers_core.auth import Identity
from smithers_core.errors import SmithersError
from smithers_core.gateway.frames import (
    encode,
    error_frame,
    ok_frame,
    request_id_of,
    status_for_code,
)
from smithers_core.gateway.limits import (
    MAX_ID,
    check_bounds,
    check_method,
    clip_prompt,
    loads_strict,
)
from smithers_core.gateway.rpc import CallContext
from smithers_core.http.asgi import respond, scope_headers
from smithers_core.http.responses import GATEWAY, send_json

if TYPE_CHECKING:
    from smithers_core.gateway.gateway import Gateway

RPC_PATH = "/rpc"
RPC_PREFIX = "/v1/rpc/"


class _TooLarge(Exception):
    pass


async def read_body(receive: Any, headers: dict[str, str], limit: int) -> bytes:
    """The whole body, refusing as soon as Content-Length or the running total passes ``limit``."""
    length = headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise SmithersError("INVALID_REQUEST", "Content-Length must be numeric")
        if int(length) > limit:
            raise _TooLarge
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise SmithersError("ConnectionClosed", "Client disconnected")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class HttpRpc:
    """The ASGI endpoint behind both RPC paths; the identity is ``scope["state"]["identity"]``."""

    __slots__ = ("gw",)

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        gw = self.gw
        path: str = scope.get("path", "/")
        state = scope["state"]
        identity: Identity = state["identity"]
        headers: dict[str, str] = state.get("headers") or scope_headers(scope)
        request_id = request_id_of(headers)
        frame_id = request_id
        try:
            try:
                raw = await read_body(receive, headers, gw.options.max_body_bytes)
            except _TooLarge:
                raise SmithersError(
                    "PayloadTooLarge",
                    f"Request body exceeds {gw.options.max_body_bytes} bytes",
                    {"maxBytes": gw.options.max_body_bytes},
                ) from None
            if path.startswith(RPC_PREFIX) and not raw.strip():
                body: Any = {}
            else:
                try:
                    body = loads_strict(raw)
                except (ValueError, UnicodeDecodeError):
                    raise SmithersError("INVALID_INPUT", "RPC body must be valid JSON") from None
            if not isinstance(body, dict):
                raise SmithersError("INVALID_REQUEST", "RPC body must be a JSON object")
            clip_prompt(body)
            check_bounds(body)
            if isinstance(body.get("id"), str) and len(body["id"]) <= MAX_ID:
                frame_id = body["id"]
            if path.startswith(RPC_PREFIX):
                method = check_method(unquote(path[len(RPC_PREFIX) :]))
                params = body.get("params") if "method" in body else body
            else:
                method = check_method(body.get("method"))
                params = body.get("params")
            gw.metrics.call(gw.method_label(method), "http")
            if method == "streamRunEvents":
                raise SmithersError(
                    "INVALID_REQUEST",
                    "streamRunEvents is only supported over websocket connections",
                )
            ctx = CallContext(identity, "http", None, "http:" + request_id)
            payload = await gw.dispatcher.call(ctx, method, params)
            text = encode(ok_frame(frame_id, payload))
        except SmithersError as exc:
            gw.metrics.errors.labels(exc.code).inc()
            await send_json(send, status_for_code(exc.code), error_frame(frame_id, exc), GATEWAY)
            return
        except Exception as exc:
            message = str(exc)
            if "valid JSON" in message:
                code = "INVALID_JSON"
            elif "exceeds" in message:
                code = "PAYLOAD_TOO_LARGE"
            else:
                code = "SERVER_ERROR"
            gw.metrics.errors.labels(code).inc()
            error = SmithersError(code, message)
            await send_json(send, status_for_code(code), error_frame(frame_id, error), GATEWAY)
            return
        await respond(send, 200, text.encode("utf-8"), GATEWAY)


__all__ = ["RPC_PATH", "RPC_PREFIX", "HttpRpc", "read_body"]
