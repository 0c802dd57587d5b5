"""The WebSocket session: upgrade limits and gates, challenge, ``connect``/hello, requests
answered concurrently but in order where it matters, auth deadline and cleanup (reference
4.1-4.3, issue 13 items 1 and 17).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import anyio

from smithers_core.auth import Identity
from smithers_core.auth.gates import check_gates
from smithers_core.auth.tokens import parse_cookies
from smithers_core.contributions import RpcCall
from smithers_core.errors import SmithersError
from smithers_core.gateway.authn import auth_request
from smithers_core.gateway.connection import Connection
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.dispatch import Dispatcher
from smithers_core.gateway.limits import parse_request_frame
from smithers_core.gateway.preauth import peer_key
from smithers_core.gateway.run_views import ACTIVE_STATUSES
from smithers_core.gateway.wire import encode, ok_frame, ok_text
from smithers_core.http.asgi import deny, scope_headers, scope_peer

LIMIT_BODY = b"Gateway connection limit reached\n"
ORIGIN_BODY = b"Origin or host is not allowed\n"
HELLO_RUNS = 1000


class WebSocketSession:
    """Runs one socket from upgrade to close.

    Requests are read in order. Those answered without awaiting (parse errors, requests
    before ``connect``, and methods with an ``inline`` answer such as ``getRun``) are answered
    in the read loop itself; every other request runs in its own task, so requests that wait
    on the store or the engine are still answered concurrently.

    A request sees the effects of every earlier request of its socket: a method that may
    write (its scope is not a ``*:read`` scope) starts only once the socket's earlier writes
    have been answered, and any request that arrives while a write of its socket is pending
    waits for it too (``launchRun`` then, unanswered, ``streamRunEvents`` of that run works).
    Reads with no write before them still run concurrently and inline.
    """

    __slots__ = ("ctx", "dispatcher", "receive", "scope", "send")

    def __init__(
        self, ctx: GatewayContext, dispatcher: Dispatcher, scope: Any, receive: Any, send: Any
    ) -> None:
        self.ctx = ctx
        self.dispatcher = dispatcher
        self.scope = scope
        self.receive = receive
        self.send = send

    async def run(self) -> None:
        ctx = self.ctx
        sockets, settings, metrics = ctx.sockets, ctx.settings, ctx.metrics
        message = await self.receive()
        if message["type"] != "websocket.connect":
            return
        peer = scope_peer(self.scope)
        key = peer_key(peer)
        if sockets.authed >= settings.max_connections or sockets.pre_auth.refuses(key):
            await deny(self.send, 503, LIMIT_BODY, self.scope)
            return
        headers = scope_headers(self.scope)
        failure = check_gates(
            headers,
            parse_cookies(headers.get("cookie")),
            auth_enabled=ctx.auth.enabled,
            allowed_origins=ctx.auth.allowed_origins,
            insecure=settings.insecure,
        )
        del headers
        if failure is not None:
            await deny(self.send, 403, ORIGIN_BODY, self.scope)
            return
        conn = Connection(
            self.send,
            scope=self.scope,
            peer=peer,
            path=str(self.scope.get("path") or "/"),
            max_outbound_bytes=settings.max_outbound_bytes,
            metrics=metrics,
            budget=sockets.outbound,
        )
        evicted = sockets.pre_auth.add(key, conn)
        if evicted is not None:  # the pool was full: the flooding peer's oldest socket goes
            evicted.close(1013, "try again later")
        sockets.connections.add(conn)
        metrics.connections.inc()
        metrics.connections_active.inc()
        try:
            await self.send(
                {"type": "websocket.accept", "headers": [(b"x-smithers-api-version", b"v1")]}
            )
            sockets.send_event(
                conn,
                "connect.challenge",
                {"nonce": str(uuid.uuid4()), "ts": int(time.time() * 1000)},
            )
            if conn.writes_directly:
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
            sockets.connections.discard(conn)
            if conn.authenticated:
                sockets.authed -= 1
            else:
                sockets.pre_auth.discard(conn, key)
            metrics.connections_active.dec()
            metrics.connections_closed.inc()
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
        metrics = self.ctx.metrics
        receive = self.receive
        settings = self.ctx.settings
        deadline = time.monotonic() + settings.auth_deadline_ms / 1000
        inflight = settings.max_inflight_requests
        while True:
            if conn.inflight >= inflight:
                await conn.wait_for_slot(inflight)
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
        dispatcher = self.dispatcher
        try:
            frame_id, method, params = parse_request_frame(data, self.ctx.settings.max_payload)
        except Exception as exc:  # a bad frame; anything else is our bug, answered as such
            frame_id = "invalid" if isinstance(exc, SmithersError) else "server"
            conn.push_frame(dispatcher.error_frame(frame_id, exc))
            return
        if method == "connect":
            conn.spawn(self._connect(conn, frame_id, params))
            return
        identity = conn.identity
        if identity is None:
            unauthorized = SmithersError("UNAUTHORIZED", "Connect first")
            conn.push_frame(dispatcher.error_frame(frame_id, unauthorized))
            return
        earlier = conn.pending_write
        if _may_write(dispatcher.lookup(method)):
            done = asyncio.get_running_loop().create_future()
            conn.pending_write = done
            conn.spawn_request(
                self._handle(conn, identity, frame_id, method, params, earlier, done)
            )
            return
        if earlier is not None:  # a write of this socket is still running: wait for it
            conn.spawn_request(self._handle(conn, identity, frame_id, method, params, earlier))
            return
        inline = dispatcher.inline(method)
        if inline is not None:
            self.ctx.metrics.call(method, "ws")
            try:
                payload_json = dispatcher.call_inline(identity, inline, method, params)
            except Exception as exc:
                conn.push_frame(dispatcher.error_frame(frame_id, exc))
                return
            conn.push(ok_text(frame_id, payload_json))
            return
        conn.spawn_request(self._handle(conn, identity, frame_id, method, params))

    async def _handle(
        self,
        conn: Connection,
        identity: Identity,
        frame_id: str,
        method: str,
        params: Any,
        earlier: asyncio.Future[None] | None = None,
        done: asyncio.Future[None] | None = None,
    ) -> None:
        """Answer one request, after ``earlier`` (the socket's previous write) if given;
        ``done`` (this request's own write barrier) resolves once it has been answered."""
        try:
            if earlier is not None:
                await asyncio.shield(earlier)
            await self._answer(conn, identity, frame_id, method, params)
        finally:
            conn.request_done()
            if done is not None:
                if not done.done():
                    done.set_result(None)
                if conn.pending_write is done:
                    conn.pending_write = None

    async def _answer(
        self, conn: Connection, identity: Identity, frame_id: str, method: str, params: Any
    ) -> None:
        dispatcher = self.dispatcher
        self.ctx.metrics.call(dispatcher.label(method), "ws")
        call = RpcCall(identity, "ws", conn.id, conn)
        try:
            payload = await dispatcher.call(call, method, params)
        except Exception as exc:
            conn.push_frame(dispatcher.error_frame(frame_id, exc))
            return
        try:
            text = encode(ok_frame(frame_id, payload))
        except (TypeError, ValueError) as exc:
            text = encode(dispatcher.error_frame(frame_id, exc))
        conn.push(text)
        for callback in call.after_response:
            callback()

    async def _connect(self, conn: Connection, frame_id: str, params: Any) -> None:
        ctx = self.ctx
        sockets, metrics = ctx.sockets, ctx.metrics
        try:
            identity, subscribe = await self._check_connect(conn, params)
        except SmithersError as exc:
            conn.push_frame(self.dispatcher.error_frame(frame_id, exc))
            if exc.code == "UNAUTHORIZED":
                metrics.auth_events.labels("failure").inc()
                if not conn.authenticated:
                    conn.close(1008, "authentication failed")
            return
        metrics.auth_events.labels("success").inc()
        if conn.closed:  # evicted or timed out while authenticating: nothing to promote
            return
        if not conn.authenticated:
            if sockets.authed >= ctx.settings.max_connections:
                limit = SmithersError("CONNECTION_LIMIT", "Gateway connection limit reached")
                conn.push_frame(self.dispatcher.error_frame(frame_id, limit))
                conn.close(1013, "connection limit reached")
                return
            sockets.pre_auth.discard(conn, peer_key(conn.peer))
            sockets.authed += 1
        conn.identity = identity
        conn.session_token = str(uuid.uuid4())
        conn.subscribed = subscribe
        conn.push_frame(ok_frame(frame_id, await self._hello(conn, identity)))

    async def _check_connect(
        self, conn: Connection, params: Any
    ) -> tuple[Identity, set[str] | None]:
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
        protocol = self.ctx.settings.protocol
        assert isinstance(lo, int) and isinstance(hi, int)
        if lo > protocol or hi < protocol:
            raise SmithersError(
                "PROTOCOL_UNSUPPORTED",
                f"Gateway protocol {protocol} is not supported by the client",
                {"protocol": protocol},
            )
        auth = params.get("auth")
        token = auth.get("token") if isinstance(auth, dict) else None
        request = auth_request(
            "ws",
            scope_headers(conn.scope or {}),
            conn.peer,
            conn.path,
            token if isinstance(token, str) else None,
        )
        identity = await self.ctx.authenticate(request)
        raw = params.get("subscribe")
        subscribe = {s for s in raw if isinstance(s, str)} if isinstance(raw, list) else None
        return identity, subscribe

    async def _hello(self, conn: Connection, identity: Identity) -> dict[str, Any]:
        """The ``connect`` answer: protocol, identity, policy, auth and a snapshot of active
        runs and pending approvals."""
        ctx = self.ctx
        runs = await ctx.views.query_runs(limit=HELLO_RUNS, statuses=ACTIVE_STATUSES)
        approvals = await ctx.views.pending_approvals()
        return {
            "protocol": ctx.settings.protocol,
            "features": list(ctx.settings.features),
            "identity": ctx.identity_payload(),
            "policy": {"heartbeatMs": ctx.settings.heartbeat_ms},
            "auth": {
                "sessionToken": conn.session_token,
                "role": identity.role,
                "scopes": list(identity.scopes),
                "userId": identity.user_id,
                "tokenId": identity.token_id,
            },
            "snapshot": {
                "runs": runs,
                "approvals": approvals,
                "stateVersion": ctx.sockets.state_version,
            },
        }


class WebSocketRpc:
    """The WebSocket RPC protocol as an ASGI endpoint, mounted by the ``core.gateway_ws`` plugin.

    Declared ``auth="public"``: the session applies the Host/Origin gates at the upgrade and
    authenticates the ``connect`` request itself (its token may arrive in the frame).
    """

    __slots__ = ("ctx", "dispatcher")

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.dispatcher = Dispatcher(ctx)

    def __call__(self, scope: Any, receive: Any, send: Any) -> Coroutine[Any, Any, None]:
        # the session's own coroutine, not a wrapper: one frame fewer per open socket
        return WebSocketSession(self.ctx, self.dispatcher, scope, receive, send).run()


def _may_write(target: Any) -> bool:
    """True unless the method is known and needs only a ``*:read`` scope (issue 13 item 17:
    a socket's later requests wait for such a request to be answered)."""
    scope = getattr(target, "scope", None)
    return target is not None and not (isinstance(scope, str) and scope.endswith(":read"))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


__all__ = ["WebSocketRpc", "WebSocketSession"]
