"""One WebSocket connection: pools, per-connection ``seq``, the byte-bounded writer (4.2-4.4).

Every outbound frame goes through :meth:`Connection.push`, which never awaits: frames are
queued for the connection's writer task, and a queue over ``max_outbound_bytes`` closes the
socket with 1013 "event backpressure" and drops what was queued.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from smithers_core.auth import Identity
from smithers_core.gateway.frames import encode, event_text

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Connection:
    """State of one socket. ``subscribed`` None means "every run" (no subscribe filter)."""

    def __init__(
        self,
        send: Send,
        *,
        headers: dict[str, str],
        cookies: dict[str, str],
        peer: Any,
        path: str,
        max_outbound_bytes: int,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self.id = "ws:" + uuid.uuid4().hex
        self._send = send
        self.headers = headers
        self.cookies = cookies
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
        self.task_group: anyio.abc.TaskGroup | None = None
        self.streamed_runs: dict[str, int] = {}
        self.stream_signals: list[anyio.Event] = []
        self._on_sent = on_sent
        stream: tuple[MemoryObjectSendStream[Any], MemoryObjectReceiveStream[Any]] = (
            anyio.create_memory_object_stream(math.inf)
        )
        self._out, self._in = stream

    @property
    def authenticated(self) -> bool:
        return self.identity is not None

    # -- outbound --------------------------------------------------------------------------
    def push(self, text: str, after: Callable[[], None] | None = None) -> bool:
        """Queue one frame; False if the socket is closing or over its byte budget."""
        if self.closed:
            return False
        size = len(text)
        if self.queued_bytes + size > self.max_outbound_bytes:
            self.backpressure = True
            self.close(1013, "event backpressure")
            return False
        self.queued_bytes += size
        self._out.send_nowait((text, after))
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

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the frames already queued (all of them dropped on backpressure)."""
        if self.closed:
            return
        self.closed = True
        self._out.send_nowait(_Close(code, reason))

    async def writer(self, done: anyio.CancelScope) -> None:
        async with self._in:
            async for item in self._in:
                if isinstance(item, _Close):
                    try:
                        await self._send(
                            {"type": "websocket.close", "code": item.code, "reason": item.reason}
                        )
                    except Exception:  # peer already gone
                        pass
                    done.cancel()
                    return
                text, after = item
                self.queued_bytes -= len(text)
                if self.backpressure:
                    continue
                try:
                    await self._send({"type": "websocket.send", "text": text})
                except Exception:
                    self.closed = True
                    done.cancel()
                    return
                if self._on_sent is not None:
                    self._on_sent()
                if after is not None:
                    after()


__all__ = ["Connection"]
