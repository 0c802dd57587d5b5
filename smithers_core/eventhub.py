"""``EventHub``: the one place that learns about committed events and wakes their readers.

Readers always read from the store, so a subscription can never skip or repeat an event: the
hub only tells them *when* to read. Commits made in this process wake readers at once (the
store's commit listener); commits made by other processes are found by one poller per store
that tails the event table every ``poll_ms`` (D8). The poller starts at the store's current
end and never re-broadcasts history (D10).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio
import anyio.abc

from smithers_core.engine.transitions import TERMINAL_RUN
from smithers_core.store.base import CommittedEvent, Store
from smithers_core.store.conn import Connection
from smithers_core.store.events import event_rows, last_event_rowid, rows_after_rowid
from smithers_core.store.runs import run_status

log = logging.getLogger("smithers.eventhub")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as readers see it: run, seq, type and the stored JSON text."""

    run_id: str
    seq: int
    type: str
    timestamp_ms: int
    payload_json: str


class EventHub:
    """Wakes event readers on commit (in process) and on poll (other processes)."""

    def __init__(
        self,
        store: Store,
        *,
        poll_ms: int = 250,
        page_size: int = 500,
        window_size: int = 10_000,
        max_windows: int = 1_000,
        terminal_grace_ms: int = 1_000,
    ) -> None:
        self.store = store
        self.poll_ms = poll_ms
        self.page_size = page_size
        self.windows = RunWindows(window_size, max_windows, terminal_grace_ms)
        self._waiters: dict[str, anyio.Event] = {}
        self._any: anyio.Event = anyio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack: AsyncExitStack | None = None
        self._last_rowid = 0
        # rowids delivered by this process's commit listener that the poller has not passed
        # yet: the poller skips them, and its cursor advances only by its own reads, so an
        # in-process commit can never make it jump over another process's earlier rows.
        self._local_rowids: set[int] = set()
        self._taps: list[tuple[Callable[[list[CommittedEvent]], None], bool]] = []
        self._poll_wake = anyio.Event()
        self._unsubscribe: Callable[[], None] | None = None

    async def __aenter__(self) -> EventHub:
        self._loop = asyncio.get_running_loop()
        self._last_rowid = await self.store.aread(last_event_rowid)
        self.store.add_commit_listener(self._on_commit)
        if self.store.notifies_commits:  # another process committed: tail the table now
            self._unsubscribe = self.store.wake_on_foreign_commit(
                self._loop, lambda: self._poll_wake.set()
            )
        self._stack = AsyncExitStack()
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        tg.start_soon(self._poll_other_processes)
        self._tg = tg
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.store.remove_commit_listener(self._on_commit)
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._stack is not None:
            self._tg.cancel_scope.cancel()
            stack, self._stack = self._stack, None
            await stack.aclose()

    def add_tap(
        self, tap: Callable[[list[CommittedEvent]], None], *, local_only: bool = False
    ) -> None:
        """Call ``tap(events)`` on the event loop for every batch of new events; with
        ``local_only`` only for events committed by this process."""
        self._taps.append((tap, local_only))

    # -- notification ---------------------------------------------------------------------
    def _on_commit(self, events: list[CommittedEvent]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake, events, True)
        except RuntimeError:  # loop shutting down
            pass

    def _wake(self, events: list[CommittedEvent], local: bool = False) -> None:
        fresh: list[CommittedEvent] = []
        for event in events:
            if local and event.rowid > self._last_rowid:
                self._local_rowids.add(event.rowid)
            if self.windows.append(event):
                fresh.append(event)
        if not fresh:
            return
        events = fresh
        runs = {e.run_id for e in events}
        for run_id in runs:
            waiter = self._waiters.pop(run_id, None)
            if waiter is not None:
                waiter.set()
        any_waiter, self._any = self._any, anyio.Event()
        any_waiter.set()
        for tap, local_only in list(self._taps):
            if local_only and not local:
                continue
            try:
                tap(events)
            except Exception:
                log.exception("event tap failed")

    async def _poll_other_processes(self) -> None:
        while True:
            with anyio.move_on_after(self.poll_ms / 1000):
                await self._poll_wake.wait()
            self._poll_wake = anyio.Event()
            try:
                await self._poll_once()
            except Exception:
                log.exception("event poll failed")
            self.windows.release_expired()

    async def _poll_once(self) -> None:
        """Feed the rows committed by other processes since the last poll, page by page."""
        while True:
            after = self._last_rowid
            local = frozenset(self._local_rowids)
            last, count, foreign = await self.store.aread(
                functools.partial(_tail, after_rowid=after, skip=local)
            )
            if not count:
                return
            self._last_rowid = max(after, last)
            if self._local_rowids:
                self._local_rowids = {r for r in self._local_rowids if r > self._last_rowid}
            if foreign:
                self._wake(foreign)
            if count < TAIL_PAGE:
                return

    def waiter(self, run_id: str) -> anyio.Event:
        """An event set at the next commit touching ``run_id``."""
        w = self._waiters.get(run_id)
        if w is None:
            w = self._waiters[run_id] = anyio.Event()
        return w

    async def wait(self, run_id: str, timeout_s: float) -> None:
        with anyio.move_on_after(timeout_s):
            await self.waiter(run_id).wait()

    # -- reading --------------------------------------------------------------------------
    def read(self, run_id: str, after_seq: int, limit: int | None = None) -> list[StoredEvent]:
        """Events of ``run_id`` with ``seq > after_seq``: from the run's in-memory window when
        it covers the cursor, else from the event table (an indexed point read)."""
        n = limit or self.page_size
        cached = self.windows.read(run_id, after_seq, n)
        if cached is not None:
            return cached
        return self.store.read(functools.partial(_page, run_id=run_id, after_seq=after_seq, n=n))

    async def aread(
        self, run_id: str, after_seq: int, limit: int | None = None
    ) -> list[StoredEvent]:
        """:meth:`read`, with the event-table fallback (a page scan, for replays far behind
        the window) on a reader thread instead of the event loop."""
        n = limit or self.page_size
        cached = self.windows.read(run_id, after_seq, n)
        if cached is not None:
            return cached
        page: list[StoredEvent] = await self.store.aread(
            functools.partial(_page, run_id=run_id, after_seq=after_seq, n=n)
        )
        return page

    def status(self, run_id: str) -> str | None:
        """The run's status (an indexed point read on the loop), None without such a run."""
        return self.store.read(functools.partial(run_status, run_id=run_id))

    async def subscribe(
        self, run_id: str, after_seq: int = -1, *, until_terminal: bool = True
    ) -> AsyncIterator[StoredEvent]:
        """Yield every event after ``after_seq`` in seq order, then live ones as they commit.

        With ``until_terminal`` the iteration ends once the run is terminal and every event
        has been yielded.
        """
        cursor = after_seq
        while True:
            waiter = self.waiter(run_id)
            status = self.status(run_id) if until_terminal else None
            page = self.read(run_id, cursor)
            for event in page:
                cursor = event.seq
                yield event
            if page:
                continue
            if until_terminal and (status is None or status in TERMINAL_RUN):
                return
            with anyio.move_on_after(max(self.poll_ms, 50) / 1000 * 4):
                await waiter.wait()


def _page(conn: Connection, *, run_id: str, after_seq: int, n: int) -> list[StoredEvent]:
    return [
        StoredEvent(run_id, r[0], r[1], r[2], r[3]) for r in event_rows(conn, run_id, after_seq, n)
    ]


TAIL_PAGE = 5000


def _tail(
    conn: Connection, *, after_rowid: int, skip: frozenset[int] = frozenset()
) -> tuple[int, int, list[CommittedEvent]]:
    """One page of rows after ``after_rowid``: ``(last rowid, row count, events)``, where the
    events leave out (and never decode) the rows in ``skip``, this process's own commits."""
    rows = rows_after_rowid(conn, after_rowid, TAIL_PAGE)
    if not rows:
        return after_rowid, 0, []
    events = [
        CommittedEvent(r[1], r[2], r[3], json.loads(r[4]), r[4].encode(), r[0])
        for r in rows
        if r[0] not in skip
    ]
    return int(rows[-1][0]), len(rows), events


TERMINAL_EVENTS = frozenset({"RunFinished", "RunFailed", "RunCancelled", "RunContinuedAsNew"})


class _Window:
    __slots__ = ("events", "first_seq", "terminal_at", "used_at")

    def __init__(self, first_seq: int) -> None:
        self.events: deque[StoredEvent] = deque()
        self.first_seq = first_seq
        self.terminal_at: float | None = None
        self.used_at = time.monotonic()

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.events) - 1


class RunWindows:
    """Per-run bounded windows of recent events, contiguous by seq (D10, gateway.md 4.6).

    Windows only cache: a reader whose cursor is older than a window falls back to the event
    table, so nothing is ever lost. At most ``max_windows`` runs are retained (terminal windows
    are evicted first, then the least recently used); a terminal window is released
    ``terminal_grace_ms`` after its run ended.
    """

    def __init__(self, size: int, max_windows: int, terminal_grace_ms: int) -> None:
        self.size = max(1, size)
        self.max_windows = max(1, max_windows)
        self.grace_s = terminal_grace_ms / 1000
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def append(self, event: CommittedEvent) -> bool:
        """Add a committed event; False when it was already seen (fed twice)."""
        window = self._windows.get(event.run_id)
        if window is not None:
            if event.seq <= window.last_seq:
                return False
            if event.seq != window.last_seq + 1:  # a gap: restart the window here
                window = None
        if window is None:
            window = _Window(event.seq)
            self._windows[event.run_id] = window
            self._evict()
        window.events.append(
            StoredEvent(
                event.run_id,
                event.seq,
                event.type,
                int(event.event.get("timestampMs", 0)) if event.event else 0,
                event.encoded.decode(),
            )
        )
        if len(window.events) > self.size:
            window.events.popleft()
            window.first_seq += 1
        if event.type in TERMINAL_EVENTS:
            window.terminal_at = time.monotonic()
        window.used_at = time.monotonic()
        self._windows.move_to_end(event.run_id)
        return True

    def read(self, run_id: str, after_seq: int, limit: int) -> list[StoredEvent] | None:
        """Events after ``after_seq`` if this window covers the cursor, else None."""
        window = self._windows.get(run_id)
        if window is None or after_seq + 1 < window.first_seq:
            return None
        window.used_at = time.monotonic()
        start = after_seq + 1 - window.first_seq
        if start >= len(window.events):
            return None if window.terminal_at is None else []
        return list(itertools.islice(window.events, start, start + limit))

    def first_seq(self, run_id: str) -> int | None:
        """The oldest seq this run's window holds (None without a window)."""
        window = self._windows.get(run_id)
        return None if window is None or not window.events else window.first_seq

    def release_expired(self) -> None:
        now = time.monotonic()
        for run_id in [
            r
            for r, w in self._windows.items()
            if w.terminal_at is not None and now - w.terminal_at >= self.grace_s
        ]:
            del self._windows[run_id]

    def _evict(self) -> None:
        while len(self._windows) > self.max_windows:
            victim = next(
                (r for r, w in self._windows.items() if w.terminal_at is not None),
                next(iter(self._windows)),
            )
            del self._windows[victim]
