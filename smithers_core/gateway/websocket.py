"""The WebSocket session: upgrade limits and gates, challenge, ``connect``/hello, requests
answered concurrently, auth deadline and cleanup (reference 4.1-4.3).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import anyio

from smithers_core.auth.gates import check_gates
from smithers_core.auth.tokens import parse_cookies
from smithers_core.errors import SmithersError
from smithers_core.gateway.connection import Connection
from smithers_core.gateway.frames import encode, error_frame, ok_frame, ok_text
from smithers_core.gateway.limits import parse_request_frame
from smithers_core.gateway.rpc import INLINE_METHODS, CallContext
from smithers_core.http.asgi import deny, scope_headers, scope_peer

if TYPE_CHECKING:
    from smithers_core.gateway.gateway import Gateway

LIMIT_BODY = b"Gateway connection limit reached\n"
ORIGIN_BODY = b"Origin or host is not allowed\n"


class WebSocketSession:
    """Runs one socket from upgrade to close.

    Requests are read in order. Those answered without awaiting (parse errors, requests
    before ``connect``, and :data:`~smithers_core.gateway.rpc.INLINE_METHODS` such as
    ``getRun``) are answered in the read loop itself; every other request runs in its own task,
    so requests that wait on the store or the engine are still answered concurrently.
    """

    __slots__ = ("gw", "receive", "scope", "send")

    def __init__(self, gateway: Gateway, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.gw = gateway
        self.scope = scope
        self.receive = receive
        self.send = send

    async def run(self) -> None:
        gw = self.gw
        message = await self.receive()
        if message["type"] != "websocket.connect":
            return
        if gw.authed_count >= gw.options.max_connections or (
            gw.preauth_count >= gw.options.max_pre_auth_connections
        ):
            await deny(self.send, 503, LIMIT_BODY, self.scope)
            return
        headers = scope_headers(self.scope)
        failure = check_gates(
            headers,
            parse_cookies(headers.get("cookie")),
            auth_enabled=gw.auth.enabled,
            allowed_origins=gw.auth.allowed_origins,
            insecure=gw.options.insecure,
        )
        del headers
        if failure is not None:
            await deny(self.send, 403, ORIGIN_BODY, self.scope)
            return
        conn = Connection(
            self.send,
            scope=self.scope,
            peer=scope_peer(self.scope),
            path=str(self.scope.get("path") or "/"),
            max_outbound_bytes=gw.options.max_outbound_bytes,
            metrics=gw.metrics,
        )
        gw.preauth_count += 1
        gw.connections.add(conn)
        gw.metrics.connections.inc()
        gw.metrics.connections_active.inc()
        try:
            await self.send(
                {"type": "websocket.accept", "headers": [(b"x-smithers-api-version", b"v1")]}
            )
            gw.send_event(
                conn,
                "connect.challenge",
                {"nonce": str(uuid.uuid4()), "ts": int(time.time() * 1000)},
            )
            if conn._proto is not None:
                # uvicorn's sansio protocol answers our close frame and the peer's with a
                # websocket.disconnect message, which ends the read loop.
                await self._read_loop(conn)
            else:
                with anyio.CancelScope() as scope:
                    conn.on_end = scope.cancel
                    await self._read_loop(conn)
        finally:
            conn.closed = True
            conn.on_end = None
            gw.connections.discard(conn)
            if conn.authenticated:
                gw.authed_count -= 1
            else:
                gw.preauth_count -= 1
            gw.metrics.connections_active.dec()
            gw.metrics.connections_closed.inc()
            for signal in list(conn.stream_signals):
                signal.set()
            try:
                await conn.cancel_tasks()
            finally:
                for cleanup in list(conn.cleanups):
                    try:
                        cleanup()
                    except Exception:
                        pass

    async def _read_loop(self, conn: Connection) -> None:
        gw = self.gw
        metrics = gw.metrics
        receive = self.receive
        deadline = time.monotonic() + gw.options.auth_deadline_ms / 1000
        while True:
            if conn.identity is not None or conn.closed:
                message = await receive()
            else:
                remaining = deadline - time.monotonic()
                message = None
                if remaining > 0:
                    with anyio.move_on_after(remaining):
                        message = await receive()
                if message is None:
                    if conn.identity is None:
                        conn.close(1008, "authentication timeout")
                    continue
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive" or conn.closed:
                continue
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            metrics.received += 1
            self._dispatch(conn, data)

    def _dispatch(self, conn: Connection, data: str | bytes) -> None:
        """Answer one request frame now, or start a task for it when it must await."""
        gw = self.gw
        try:
            frame_id, method, params = parse_request_frame(data, gw.options.max_payload)
        except SmithersError as exc:
            gw.metrics.errors.labels(exc.code).inc()
            conn.push_frame(error_frame("invalid", exc))
            return
        except Exception as exc:
            conn.push_frame(error_frame("server", SmithersError("SERVER_ERROR", str(exc))))
            return
        if method == "connect":
            conn.spawn(self._connect(conn, frame_id, params))
            return
        identity = conn.identity
        if identity is None:
            conn.push_frame(error_frame(frame_id, SmithersError("UNAUTHORIZED", "Connect first")))
            return
        if method in INLINE_METHODS:
            gw.metrics.call(method, "ws")
            try:
                payload_json = gw.dispatcher.call_inline(identity, method, params)
            except SmithersError as exc:
                gw.metrics.errors.labels(exc.code).inc()
                conn.push_frame(error_frame(frame_id, exc))
                return
            except Exception as exc:
                gw.metrics.errors.labels("SERVER_ERROR").inc()
                conn.push_frame(error_frame(frame_id, SmithersError("SERVER_ERROR", str(exc))))
                return
            conn.push(ok_text(frame_id, payload_json))
            return
        conn.spawn(self._handle(conn, frame_id, method, params))

    async def _handle(self, conn: Connection, frame_id: str, method: str, params: Any) -> None:
        gw = self.gw
        identity = conn.identity
        if identity is None:  # pragma: no cover - _dispatch checked it
            return
        gw.metrics.call(gw.method_label(method), "ws")
        ctx = CallContext(identity, "ws", conn, conn.id)
        try:
            payload = await gw.dispatcher.call(ctx, method, params)
        except SmithersError as exc:
            gw.metrics.errors.labels(exc.code).inc()
            conn.push_frame(error_frame(frame_id, exc))
            return
        except Exception as exc:
            gw.metrics.errors.labels("SERVER_ERROR").inc()
            conn.push_frame(error_frame(frame_id, SmithersError("SERVER_ERROR", str(exc))))
            return
        try:
            text = encode(ok_frame(frame_id, payload))
        except (TypeError, ValueError) as exc:
            text = encode(error_frame(frame_id, SmithersError("SERVER_ERROR", str(exc))))
        conn.push(text)
        for callback in ctx.after_response:
            callback()

    async def _connect(self, conn: Connection, frame_id: str, params: Any) -> None:
        gw = self.gw
        try:
            identity, subscribe = await self._check_connect(conn, params)
        except SmithersError as exc:
            gw.metrics.errors.labels(exc.code).inc()
            conn.push_frame(error_frame(frame_id, exc))
            if exc.code == "UNAUTHORIZED":
                gw.metrics.auth_events.labels("failure").inc()
                if not conn.authenticated:
                    conn.close(1008, "authentication failed")
            return
        gw.metrics.auth_events.labels("success").inc()
        if not conn.authenticated:
            if gw.authed_count >= gw.options.max_connections:
                conn.push_frame(
                    error_frame(
                        frame_id,
                        SmithersError("CONNECTION_LIMIT", "Gateway connection limit reached"),
                    )
                )
                conn.close(1013, "connection limit reached")
                return
            gw.preauth_count -= 1
            gw.authed_count += 1
        conn.identity = identity
        conn.session_token = str(uuid.uuid4())
        conn.subscribed = subscribe
        conn.push_frame(ok_frame(frame_id, await gw.hello_payload(conn)))

    async def _check_connect(self, conn: Connection, params: Any) -> tuple[Any, set[str] | None]:
        gw = self.gw
        if not isinstance(params, dict):
            raise SmithersError("INVALID_REQUEST", "Connect params must be an object")
        lo, hi = params.get("minProtocol"), params.get("maxProtocol")
        if not _is_number(lo) or not _is_number(hi) or not params.get("client"):
            raise SmithersError(
                "INVALID_REQUEST", "Connect request is missing protocol negotiation fields"
            )
        for name, value in (("minProtocol", lo), ("maxProtocol", hi)):
            if not isinstance(value, int) or value < 1:
                raise SmithersError(
                    "INVALID_INPUT",
                    f"{name} must be an integer greater than 0",
                    {"field": name},
                )
        protocol = gw.options.protocol
        assert isinstance(lo, int) and isinstance(hi, int)
        if lo > protocol or hi < protocol:
            raise SmithersError(
                "PROTOCOL_UNSUPPORTED",
                f"Gateway protocol {protocol} is not supported by the client",
                {"protocol": protocol},
            )
        auth = params.get("auth")
        token = auth.get("token") if isinstance(auth, dict) else None
        headers = scope_headers(conn.scope or {})
        identity = await gw.authenticate(
            "ws",
            headers,
            parse_cookies(headers.get("cookie")),
            conn.peer,
            conn.path,
            token if isinstance(token, str) else None,
        )
        raw = params.get("subscribe")
        subscribe = {s for s in raw if isinstance(s, str)} if isinstance(raw, list) else None
        return identity, subscribe


class WebSocketRpc:
    """The WebSocket RPC protocol as an ASGI endpoint, mounted by the ``core.gateway_ws`` plugin.

    Declared ``auth="public"``: the session applies the Host/Origin gates at the upgrade and
    authenticates the ``connect`` request itself (its token may arrive in the frame).
    """

    __slots__ = ("gw",)

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Coroutine[Any, Any, None]:
        # the session's own coroutine, not a wrapper: one frame fewer per open socket
        return WebSocketSession(self.gw, scope, receive, send).run()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


__all__ = ["WebSocketRpc", "WebSocketSession"]
