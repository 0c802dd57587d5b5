"""The one SSE implementation of ``GET /v1/runs/:id/events`` and serve ``GET /events`` (D9).

- the cursor is ``Last-Event-ID`` if present, else ``afterSeq``, else -1; a non-integer cursor
  is 400 ``INVALID_REQUEST`` before any stream bytes;
- a terminal run with nothing after the cursor answers 204;
- the stream opens with ``retry: 1000``; each event is ``event: smithers``, ``data: <event
  JSON>``, ``id: <seq>``; ``: keep-alive`` comments go out every ``keepalive_ms``;
- readers are woken by commits (the EventHub), never by a fixed poll, and always read from the
  store, so a resumed stream loses and duplicates nothing;
- the stream ends after the run's terminal event once every event has been sent.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from smithers_core.engine.transitions import TERMINAL_RUN
from smithers_core.eventhub import EventHub, StoredEvent
from smithers_core.http.errors import HttpError
from smithers_core.http.params import MAX_SQL_INT
from smithers_core.http.responses import Reply, Response

PAGE = 200
SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-content-type-options": "nosniff",
    "x-accel-buffering": "no",
}
_INT = re.compile(r"^\s*-?\d+\s*$")


def parse_cursor(last_event_id: str | None, after_seq: str | None) -> int:
    """``Last-Event-ID`` wins over ``afterSeq``; default -1 (from the first event); a cursor
    beyond SQLite's integers reads as the largest one (nothing after it)."""
    for name, raw in (("Last-Event-ID", last_event_id), ("afterSeq", after_seq)):
        if raw is None:
            continue
        if not _INT.match(raw):
            raise HttpError(400, "INVALID_REQUEST", f'Expected an integer {name}, got "{raw}"')
        digits = raw.strip()
        if len(digits.lstrip("-").lstrip("0")) > 19:  # beyond int64 (and int()'s digit limit)
            return -1 if digits.startswith("-") else MAX_SQL_INT
        return max(-1, min(int(digits), MAX_SQL_INT))
    return -1


def frame(event: StoredEvent) -> bytes:
    return f"event: smithers\ndata: {event.payload_json}\nid: {event.seq}\n\n".encode()


class StreamRegistry:
    """The open streams of one app, so that closing the app can end them (gracefully)."""

    def __init__(self, hub: EventHub, on_change: Callable[[int], None] | None = None) -> None:
        self.hub = hub
        self.open: dict[str, int] = {}
        self.stopping = False
        self._on_change = on_change

    def opened(self, run_id: str) -> None:
        self.open[run_id] = self.open.get(run_id, 0) + 1
        if self._on_change is not None:
            self._on_change(1)

    def closed(self, run_id: str) -> None:
        left = self.open.get(run_id, 0) - 1
        if left > 0:
            self.open[run_id] = left
        else:
            self.open.pop(run_id, None)
        if self._on_change is not None:
            self._on_change(-1)

    def stop(self) -> None:
        """End every open stream at its next wake-up (woken now)."""
        self.stopping = True
        for run_id in list(self.open):
            self.hub.waiter(run_id).set()

    def stream(self, run_id: str, cursor: int, *, keepalive_ms: int) -> Response:
        return event_stream(
            self.hub,
            run_id,
            cursor,
            keepalive_ms=keepalive_ms,
            on_open=lambda: self.opened(run_id),
            on_close=lambda: self.closed(run_id),
            stop=lambda: self.stopping,
        )


def event_stream(
    hub: EventHub,
    run_id: str,
    cursor: int,
    *,
    keepalive_ms: int,
    on_open: Callable[[], None] | None = None,
    on_close: Callable[[], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Response:
    """204 for a terminal run with nothing after ``cursor``, else the streaming response."""
    status = hub.status(run_id)
    if status in TERMINAL_RUN and not hub.read(run_id, cursor, 1):
        return Reply(204, b"", [(b"cache-control", b"no-cache")])
    return _EventStream(
        _frames(hub, run_id, cursor, keepalive_ms, stop),
        status_code=200,
        headers=SSE_HEADERS,
        on_open=on_open,
        on_close=on_close,
    )


class _EventStream(StreamingResponse):
    """A streaming response that reports when it opens (before any byte) and closes."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        status_code: int,
        headers: dict[str, str],
        on_open: Callable[[], None] | None,
        on_close: Callable[[], None] | None,
    ) -> None:
        super().__init__(content, status_code=status_code, headers=headers)
        self._on_open = on_open
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._on_open is not None:
            self._on_open()
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._on_close is not None:
                self._on_close()


async def _frames(
    hub: EventHub,
    run_id: str,
    cursor: int,
    keepalive_ms: int,
    stop: Callable[[], bool] | None = None,
) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    interval = max(keepalive_ms, 1) / 1000
    next_ping = time.monotonic() + interval
    # a safety net only: commits (this process) and the hub's poller (others) wake us
    recheck = max(hub.poll_ms, 50) / 1000 * 4
    while stop is None or not stop():
        waiter = hub.waiter(run_id)
        status = hub.status(run_id)
        page = hub.read(run_id, cursor, PAGE)
        if page:
            cursor = page[-1].seq
            yield b"".join(frame(e) for e in page)
            continue
        if status is None or status in TERMINAL_RUN:
            return
        now = time.monotonic()
        if now >= next_ping:
            yield b": keep-alive\n\n"
            next_ping = now + interval
            continue
        with anyio.move_on_after(min(next_ping - now, recheck)):
            await waiter.wait()
