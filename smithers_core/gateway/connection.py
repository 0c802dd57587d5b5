"""One WebSocket connection: pools, per-connection ``seq``, the byte-bounded writer (4.2-4.4).

Every outbound frame goes through :meth:`Connection.push`, which never awaits: frames are
queued. When the frames queued plus the bytes waiting in the transport's write buffer would go
over ``max_outbound_bytes``, or the gateway-wide :class:`OutboundBudget` is spent, the socket
is closed with 1013 "event backpressure", what was queued is dropped, and
``backpressure_disconnects_total`` counts it. A peer that stopped reading (its transport is
paused) cannot take a close frame, so its transport is aborted at once: the socket and its
memory are released now, not at the next keepalive timeout.

The queue is flushed by a ``call_soon`` callback, not by a task per socket: up to
:data:`FLUSH_FRAMES` queued frames are written in one go, in order, per loop iteration. On
uvicorn's ``websockets-sansio`` protocol (the one the gateway runs on) the flush frames the
texts with the protocol's own ``websockets`` connection and hands them to the transport in one
``write``; while the transport is paused (its buffer over the high-water mark) or on any other
ASGI server, a short-lived drain task sends through the ASGI ``send`` instead, waiting for the
transport. Nothing per socket exists while it is idle: no task, no stream, no event.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from smithers_core.auth import Identity
from smithers_core.gateway.outbound import OutboundBudget
from smithers_core.gateway.wire import encode, event_text

try:  # the protocol whose synchronous write path the flush uses (see the module docstring)
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - uvicorn without websockets
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from smithers_core.gateway.metrics import GatewayMetrics

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Frames written per flush (one transport write); a longer queue continues on the loop's next
# iteration, so one busy socket never holds the loop for a whole burst, and a peer on the same
# loop reads at most two batches at once (16 frames: ``websockets``' default ``max_queue``
# before it stops reading).
FLUSH_FRAMES = 4

log = logging.getLogger("smithers.gateway")


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


def _sansio(send: Any) -> Any:
    """The uvicorn sansio protocol behind an ASGI ``send``, or None."""
    proto = getattr(send, "__self__", None)
    if WebSocketsSansIOProtocol is not None and isinstance(proto, WebSocketsSansIOProtocol):
        return proto
    return None


class Connection:
    """State of one socket. ``subscribed`` None means "every run" (no subscribe filter).

    ``scope`` is the ASGI scope (headers are decoded from it when ``connect`` needs them, not
    kept per socket). ``on_end`` is called once the socket can carry nothing more: after the
    close frame went out, or when a write failed.
    """

    __slots__ = (
        "__weakref__",
        "_budget",
        "_drainer",
        "_metrics",
        "_proto",
        "_queue",
        "_scheduled",
        "_send",
        "_slot",
        "backpressure",
        "cleanups",
        "closed",
        "id",
        "identity",
        "inflight",
        "max_outbound_bytes",
        "on_end",
        "path",
        "peer",
        "pending_write",
        "queued_bytes",
        "scope",
        "seq",
        "session_token",
        "stream_signals",
        "streamed_runs",
        "subscribed",
        "tasks",
    )

    def __init__(
        self,
        send: Send,
        *,
        scope: dict[str, Any] | None = None,
        peer: Any = None,
        path: str = "/",
        max_outbound_bytes: int,
        metrics: GatewayMetrics | None = None,
        budget: OutboundBudget | None = None,
    ) -> None:
        self.id = "ws:" + uuid.uuid4().hex
        self._send = send
        self._proto = _sansio(send)
        self.scope = scope
        self.peer = peer
        self.path = path
        self.max_outbound_bytes = max_outbound_bytes
        self.identity: Identity | None = None
        self.session_token: str | None = None
        self.subscribed: set[str] | None = None
        self.seq = 0
        self.queued_bytes = 0
        self.closed = False
        self.backpressure = False
        self.cleanups: list[Callable[[], Any]] = []
        self.streamed_runs: dict[str, int] = {}
        self.stream_signals: list[Any] = []
        self.tasks: set[asyncio.Task[Any]] | None = None
        self.inflight = 0  # request tasks started and not finished
        self._slot: asyncio.Event | None = None
        self.on_end: Callable[[], None] | None = None
        # The socket's newest request that may write, until answered (issue 13 item 17).
        self.pending_write: asyncio.Future[None] | None = None
        self._metrics = metrics
        self._budget = budget
        # Created on demand and dropped once empty: an idle socket holds no deque (~600 B).
        self._queue: deque[tuple[str, Callable[[], None] | None] | _Close] | None = None
        self._scheduled = False
        self._drainer: asyncio.Task[None] | None = None

    @property
    def authenticated(self) -> bool:
        return self.identity is not None

    @property
    def writes_directly(self) -> bool:
        """True on uvicorn's sansio protocol: frames go straight to the transport, and the
        server reports the end of the socket as ``websocket.disconnect``."""
        return self._proto is not None

    # -- tasks -------------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` for this connection; cancelled when the session ends."""
        task = asyncio.get_running_loop().create_task(coro)
        tasks = self.tasks
        if tasks is None:
            tasks = self.tasks = set()
        tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        tasks = self.tasks
        if tasks is not None:
            tasks.discard(task)
            if not tasks:  # a set never shrinks: one burst of 5,000 tasks kept 512 KiB
                self.tasks = None
        if not task.cancelled() and task.exception() is not None:
            log.error("connection task failed", exc_info=task.exception())

    def spawn_request(self, coro: Coroutine[Any, Any, Any]) -> None:
        """:meth:`spawn` a request's task, counted in :attr:`inflight` until it calls
        :meth:`request_done`."""
        self.inflight += 1
        self.spawn(coro)

    def request_done(self) -> None:
        self.inflight -= 1
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.set()

    async def wait_for_slot(self, limit: int) -> None:
        """Wait until fewer than ``limit`` requests are in flight (the read loop stops
        reading meanwhile, so a pipelining client is held back by TCP, not by memory)."""
        while self.inflight >= limit and not self.closed:
            slot = self._slot = asyncio.Event()
            await slot.wait()

    async def cancel_tasks(self) -> None:
        """Cancel the connection's request and stream tasks and wait for them."""
        tasks = self.tasks
        if not tasks:
            return
        pending = list(tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- outbound --------------------------------------------------------------------------
    def buffered_bytes(self) -> int:
        """Bytes handed to the transport and not yet taken by the peer's kernel."""
        proto = self._proto
        if proto is None:
            return 0
        try:
            return int(proto.transport.get_write_buffer_size())
        except Exception:  # no transport yet, or already gone
            return 0

    def _count(self, delta: int) -> None:
        self.queued_bytes += delta
        if self._budget is not None:
            self._budget.total += delta

    def push(self, text: str, after: Callable[[], None] | None = None) -> bool:
        """Queue one frame; False if the socket is closing or over its byte budget."""
        if self.closed:
            return False
        size = len(text)
        if self.queued_bytes + size + self.buffered_bytes() > self.max_outbound_bytes:
            self.overflow()
            return False
        budget = self._budget
        if (
            budget is not None
            and budget.total + size > budget.limit
            and not budget.relieve(self, size)
        ):
            return False
        self._count(size)
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append((text, after))
        self._schedule()
        return True

    def push_frame(self, frame: dict[str, Any]) -> bool:
        return self.push(encode(frame))

    def push_event(
        self,
        name: str,
        payload_json: str,
        state_version: int,
        after: Callable[[], None] | None = None,
    ) -> bool:
        if self.closed:
            return False
        self.seq += 1
        return self.push(event_text(name, payload_json, self.seq, state_version), after)

    def overflow(self) -> None:
        """Close for backpressure (1013), drop the queue and count it; a peer that stopped
        reading has its transport aborted, since no close frame can reach it."""
        if self.closed:
            return
        self.backpressure = True
        if self._metrics is not None:
            self._metrics.backpressure_disconnects.inc()
        dropped = self.queued_bytes + self.buffered_bytes()
        self.close(1013, "event backpressure")
        if self._budget is not None:
            self._budget.dropped(dropped)
        proto = self._proto
        if proto is not None and not proto.writable.is_set():
            try:
                proto.transport.abort()
            except Exception:  # pragma: no cover - transport already gone
                pass

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the frames already queued (all of them dropped on backpressure)."""
        if self.closed:
            return
        self.closed = True
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if self.backpressure:
            queue.clear()
            self._count(-self.queued_bytes)
        queue.append(_Close(code, reason))
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and self._drainer is None:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _end(self) -> None:
        self.closed = True
        if self._queue is not None:
            self._queue.clear()
        self._count(-self.queued_bytes)
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end()

    def _flush(self) -> None:
        """Write every queued frame now if the transport takes them without waiting."""
        self._scheduled = False
        queue = self._queue
        if self._drainer is not None or not queue:
            return
        proto = self._proto
        if proto is None or not proto.writable.is_set():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
            return
        if proto.close_sent or proto.disconnected:
            self._end()
            return
        conn = proto.conn
        done: list[Callable[[], None]] = []
        count = 0
        size = 0
        try:
            while queue and count < FLUSH_FRAMES:
                item = queue[0]
                if isinstance(item, _Close):
                    break
                queue.popleft()
                text, after = item
                size += len(text)
                # 'replace': a lone surrogate in a frame must not read as the peer being gone
                conn.send_text(text.encode("utf-8", "replace"))
                count += 1
                if after is not None:
                    done.append(after)
            if count:
                proto.transport.write(b"".join(conn.data_to_send()))
        except Exception:  # the websockets state machine is past OPEN: the peer is gone
            self._end()
            return
        self._count(-size)
        if self._metrics is not None:
            self._metrics.sent += count
        for after in done:
            after()
        if not queue:
            if self._queue is queue:
                self._queue = None
            return
        if self._scheduled or self._drainer is not None:
            return
        if isinstance(queue[0], _Close):  # the ASGI send owns the closing handshake
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        else:  # more than one batch: the rest after the loop's other callbacks
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _drain(self) -> None:
        """Send the queue through the ASGI ``send`` (waits while the transport is paused)."""
        queue = self._queue
        if queue is None:  # pragma: no cover - scheduled with a queue
            self._drainer = None
            return
        try:
            while queue:
                item = queue.popleft()
                if isinstance(item, _Close):
                    try:
                        await self._send(
                            {"type": "websocket.close", "code": item.code, "reason": item.reason}
                        )
                    except Exception:  # peer already gone
                        pass
                    self._end()
                    return
                text, after = item
                self._count(-len(text))
                try:
                    await self._send({"type": "websocket.send", "text": text})
                except Exception:
                    self._end()
                    return
                if self._metrics is not None:
                    self._metrics.sent += 1
                if after is not None:
                    after()
        finally:
            self._drainer = None
        if not queue and self._queue is queue:
            self._queue = None
        elif queue and not self.closed:  # pragma: no cover - pushes during the last send
            self._schedule()


__all__ = ["Connection"]
