"""What every store driver shares: the transaction handle, committed events, migrations and the
group-commit writer.

Every state change is a function ``change(tx)`` run by the store's one writer thread. The
writer drains its queue and commits many changes in one transaction, each inside its own
SAVEPOINT, so one failing change does not roll back the others (D5). A change and the events it
emits commit together; seqs are allocated inside the transaction, which the driver serialises
with every other writer of the database (SQLite's ``BEGIN IMMEDIATE``, a PostgreSQL advisory
lock), so several processes sharing one database keep every run's seq contiguous. Callers are
answered only after the commit; commit listeners (the EventHub, event observers) are told right
after, in seq order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from smithers_core import jsonutil
from smithers_core.clock import now_ms
from smithers_core.errors import SmithersError
from smithers_core.store.conn import Connection, Cursor, Row
from smithers_core.store.events import last_event_seq, rows_after_rowid
from smithers_core.store.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger("smithers.store")

T = TypeVar("T")
MAX_GROUP = 128
OpenMode = Literal["rwc", "rw", "ro"]
"""Create if missing (the default), existing store only, read-only."""


@dataclass(frozen=True, slots=True)
class CommittedEvent:
    """One persisted event: its run, seq, type, the event object and its JSON bytes."""

    run_id: str
    seq: int
    type: str
    event: dict[str, Any]
    encoded: bytes
    rowid: int


class Tx:
    """The handle a change function gets: SQL helpers plus ``emit`` for events."""

    __slots__ = ("_next_seq", "conn", "events", "now")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.now = now_ms()
        self.events: list[CommittedEvent] = []
        self._next_seq: dict[str, int] = {}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(sql, params).fetchall()

    def next_seq(self, run_id: str) -> int:
        seq = self._next_seq.get(run_id)
        if seq is None:
            seq = last_event_seq(self.conn, run_id) + 1
        return seq

    def emit(self, run_id: str, type: str, **fields: Any) -> dict[str, Any]:
        """Append an event ``{type, runId, timestampMs, **fields}``; returns the event."""
        seq = self.next_seq(run_id)
        event: dict[str, Any] = {"type": type, "runId": run_id, "timestampMs": self.now}
        event.update(fields)
        text = jsonutil.dumps(event)
        row = self.conn.execute(
            "INSERT INTO _smithers_events (run_id, seq, timestamp_ms, type, payload_json)"
            " VALUES (?, ?, ?, ?, ?) RETURNING rowid",
            (run_id, seq, self.now, type, text),
        ).fetchone()
        self._next_seq[run_id] = seq + 1
        self.events.append(CommittedEvent(run_id, seq, type, event, text.encode(), int(row[0])))
        return event

    def _mark(self) -> tuple[int, dict[str, int]]:
        return len(self.events), dict(self._next_seq)

    def _restore(self, mark: tuple[int, dict[str, int]]) -> None:
        del self.events[mark[0] :]
        self._next_seq = mark[1]


CommitListener = Callable[[list[CommittedEvent]], None]
Change = tuple[Callable[[Tx], Any], concurrent.futures.Future[Any]]


class Store(ABC):
    """A database shared safely by the threads of this process and by other processes.

    Drivers (``smithers.stores`` entry points, one per URL scheme) subclass it and provide
    connections, the writer's transaction start, and reads.
    """

    scheme = ""
    notifies_commits = False
    """True when the driver learns of other processes' commits (:meth:`on_foreign_commit`)."""
    inline_reads = True
    """True when a few indexed point reads cost less than a thread hop (an embedded database):
    callers may then read on the event loop. False when each query is a network round trip."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.mode: OpenMode = "rwc"
        self.epoch = ""
        self._queue: queue.SimpleQueue[Change | None] = queue.SimpleQueue()
        self._listeners: list[CommitListener] = []
        self._foreign: list[Callable[[], None]] = []
        self._writer: threading.Thread | None = None
        self._writer_conn: Any = None
        self._closed = False

    # -- what a driver provides ---------------------------------------------------------------
    @property
    def describe(self) -> str:
        """How messages name this store (a path, or a URL without its password)."""
        return self.url

    @abstractmethod
    def open(self, mode: OpenMode = "rwc") -> Store:
        """Connect, migrate (unless ``mode`` is ``"ro"``) and start the writer."""

    @abstractmethod
    def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` on a read-only connection, in one consistent snapshot."""

    @abstractmethod
    def _begin(self, conn: Any) -> None:
        """Start a write transaction that excludes every other writer of the database."""

    def _commit(self, conn: Any, tx: Tx) -> None:
        """Commit the writer's transaction (a driver may notify others of ``tx.events``)."""
        conn.execute("COMMIT")

    def _write_failed(self, conn: Any, exc: BaseException) -> Any:
        """The writer's connection failed outside a change: return a usable connection."""
        return conn

    db_errors: tuple[type[BaseException], ...] = ()
    """The driver's database errors (a failed BEGIN or COMMIT)."""

    @abstractmethod
    def _close_connections(self) -> None:
        """Close every connection the driver opened."""

    # -- lifecycle ------------------------------------------------------------------------------
    def _migrate(self, conn: Any, migrations: Sequence[str] = MIGRATIONS) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION` and read (or make) the epoch."""
        self._begin(conn)
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _smithers_meta (key TEXT PRIMARY KEY, value TEXT)"
            )
            row = conn.execute(
                "SELECT value FROM _smithers_meta WHERE key = 'schema_version'"
            ).fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise SmithersError(
                    "SCHEMA_TOO_NEW",
                    f"Store {self.describe} has schema version {current}; this Smithers knows "
                    f"up to {SCHEMA_VERSION}. Upgrade smithers-core.",
                    {"schemaVersion": current, "supported": SCHEMA_VERSION},
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in migrations[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(
                "INSERT INTO _smithers_meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            epoch = conn.execute("SELECT value FROM _smithers_meta WHERE key = 'epoch'").fetchone()
            if epoch is None:
                self.epoch = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO _smithers_meta (key, value) VALUES ('epoch', ?)", (self.epoch,)
                )
            else:
                self.epoch = str(epoch[0])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def schema_mismatch(self, version: int) -> SmithersError:
        return SmithersError(
            "STORE_SCHEMA_MISMATCH",
            f"Store {self.describe} has schema version {version}; this Smithers"
            f" reads version {SCHEMA_VERSION} (a host or a writing command migrates it)",
        )

    def _start_writer(self, conn: Any, name: str) -> None:
        self._writer_conn = conn
        self._writer = threading.Thread(
            target=self._writer_loop, name=f"smithers-writer:{name}", daemon=True
        )
        self._writer.start()

    def close(self) -> None:
        """Finish queued writes, stop the writer and close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=30)
        self._close_connections()

    # -- writes -------------------------------------------------------------------------------
    def add_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def on_foreign_commit(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (on a driver thread) when another process commits events, if the
        driver can tell (:attr:`notifies_commits`); returns a function that unsubscribes."""
        self._foreign.append(callback)

        def remove() -> None:
            if callback in self._foreign:
                self._foreign.remove(callback)

        return remove

    def wake_on_foreign_commit(
        self, loop: asyncio.AbstractEventLoop, wake: Callable[[], object]
    ) -> Callable[[], None]:
        """:meth:`on_foreign_commit` calling ``wake()`` on the event ``loop``; returns the
        unsubscribe function."""

        def callback() -> None:
            try:
                loop.call_soon_threadsafe(wake)
            except RuntimeError:  # the loop is closed: nothing left to wake
                pass

        return self.on_foreign_commit(callback)

    def _foreign_committed(self) -> None:
        for callback in list(self._foreign):
            try:
                callback()
            except Exception:
                log.exception("foreign-commit callback failed")

    def submit(self, change: Callable[[Tx], T]) -> concurrent.futures.Future[T]:
        """Queue a change; the future resolves after its transaction commits."""
        if self._closed:
            raise SmithersError("STORE_CLOSED", "The store is closed")
        if self.mode == "ro":
            raise SmithersError("STORE_READ_ONLY", f"The store {self.describe} is open read-only")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((change, future))
        return future

    def write_sync(self, change: Callable[[Tx], T]) -> T:
        if threading.current_thread() is self._writer:
            raise RuntimeError("write_sync called from the writer thread")
        return self.submit(change).result()

    async def write(self, change: Callable[[Tx], T]) -> T:
        return await asyncio.wrap_future(self.submit(change))

    def _writer_loop(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(batch)

    @staticmethod
    def _fail(batch: list[Change], message: str) -> None:
        for _, fut in batch:
            if fut.done():
                continue
            if fut.running() or fut.set_running_or_notify_cancel():
                fut.set_exception(SmithersError("STORE_UNAVAILABLE", message))

    def _run_batch(self, batch: list[Change]) -> None:
        conn = self._writer_conn
        try:
            self._begin(conn)
        except self.db_errors as exc:
            try:  # a transaction half begun (BEGIN passed, the lock failed) must not linger
                conn.execute("ROLLBACK")
            except self.db_errors:
                pass
            self._writer_conn = self._write_failed(conn, exc)
            self._fail(batch, f"Cannot write: {exc}")
            return
        tx = Tx(conn)
        results: list[tuple[bool, Any]] = []
        # a change alone in its transaction needs no savepoint: its failure rolls back all
        alone = len(batch) == 1
        try:
            for index, (change, fut) in enumerate(batch):
                if not fut.set_running_or_notify_cancel():
                    results.append((False, None))  # the caller gave up before it ran: skip it
                    continue
                mark = tx._mark()
                savepoint = f"sp{index}"
                if not alone:
                    conn.execute(f"SAVEPOINT {savepoint}")
                try:
                    value = change(tx)
                except BaseException as exc:
                    if alone:
                        conn.execute("ROLLBACK")
                        fut.set_exception(exc)
                        return
                    conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                    conn.execute(f"RELEASE SAVEPOINT {savepoint}")
                    tx._restore(mark)
                    results.append((False, exc))
                else:
                    if not alone:
                        conn.execute(f"RELEASE SAVEPOINT {savepoint}")
                    results.append((True, value))
            self._commit(conn, tx)
        except self.db_errors as exc:
            try:
                conn.execute("ROLLBACK")
            except self.db_errors:
                self._writer_conn = self._write_failed(conn, exc)
            self._fail(batch, f"Commit failed: {exc}")
            return
        if tx.events:
            for listener in list(self._listeners):
                try:
                    listener(tx.events)
                except Exception:  # a listener must never break the writer
                    log.exception("commit listener failed")
        for (ok, value), (_, fut) in zip(results, batch, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    # -- reads --------------------------------------------------------------------------------
    async def aread(self, fn: Callable[[Connection], T]) -> T:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.read, fn)

    def tail(self, after_rowid: int, limit: int = 1000) -> list[CommittedEvent]:
        """Events committed after ``after_rowid`` by any process, in commit order."""
        rows = self.read(lambda c: rows_after_rowid(c, after_rowid, limit))
        return [
            CommittedEvent(r[1], r[2], r[3], jsonutil.loads(r[4]), r[4].encode(), r[0])
            for r in rows
        ]
