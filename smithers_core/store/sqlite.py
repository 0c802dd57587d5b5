"""The SQLite store driver: WAL, a busy timeout, one writer thread with group commit.

Every state change is a function ``change(tx)`` run by the writer thread. The writer drains
its queue and commits many changes in one ``BEGIN IMMEDIATE`` transaction, each inside its own
SAVEPOINT, so one failing change does not roll back the others (D5). A change and the events
it emits commit together; seqs are allocated inside the transaction, so several processes
sharing one file keep every run's seq contiguous. Callers are answered only after the commit;
commit listeners (the EventHub, event observers) are told right after, in seq order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from smithers_core import jsonutil
from smithers_core.clock import now_ms
from smithers_core.errors import SmithersError
from smithers_core.store.events import last_event_seq, rows_after_rowid
from smithers_core.store.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger("smithers.store")

T = TypeVar("T")
Row = sqlite3.Row
MAX_GROUP = 128


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

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.now = now_ms()
        self.events: list[CommittedEvent] = []
        self._next_seq: dict[str, int] = {}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.conn.execute(sql, params).fetchone()
        return row

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
        cur = self.conn.execute(
            "INSERT INTO _smithers_events (run_id, seq, timestamp_ms, type, payload_json)"
            " VALUES (?, ?, ?, ?, ?)",
            (run_id, seq, self.now, type, text),
        )
        self._next_seq[run_id] = seq + 1
        self.events.append(
            CommittedEvent(run_id, seq, type, event, text.encode(), int(cur.lastrowid or 0))
        )
        return event

    def _mark(self) -> tuple[int, dict[str, int]]:
        return len(self.events), dict(self._next_seq)

    def _restore(self, mark: tuple[int, dict[str, int]]) -> None:
        del self.events[mark[0] :]
        self._next_seq = mark[1]


CommitListener = Callable[[list[CommittedEvent]], None]
OpenMode = Literal["rwc", "rw", "ro"]
"""SQLite's URI modes: create if missing (the default), existing file only, read-only."""


def sqlite_path_from_url(url: str, base_dir: Path | None = None) -> Path:
    """``sqlite:///rel.db`` (relative to ``base_dir``) or ``sqlite:////abs.db``."""
    if not url.startswith("sqlite://"):
        raise SmithersError("INVALID_INPUT", f"Not a sqlite URL: {url}")
    rest = url[len("sqlite://") :]
    if rest.startswith("/"):
        rest = rest[1:]
    if not rest:
        raise SmithersError("INVALID_INPUT", f"sqlite URL has no path: {url}")
    path = Path(rest)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path


class SqliteStore:
    """A SQLite database shared safely by threads of this process and other processes."""

    scheme = "sqlite"

    def __init__(self, url: str, *, base_dir: Path | None = None, busy_timeout_ms: int = 30_000):
        self.url = url
        self.path = sqlite_path_from_url(url, base_dir)
        self.busy_timeout_ms = busy_timeout_ms
        self.mode: OpenMode = "rwc"
        self.epoch = ""
        self._queue: queue.SimpleQueue[
            tuple[Callable[[Tx], Any], concurrent.futures.Future[Any]] | None
        ] = queue.SimpleQueue()
        self._listeners: list[CommitListener] = []
        self._local = threading.local()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        if self.mode == "rwc":
            target, uri = str(self.path), False
        else:  # never creates the file (SQLite URI mode=ro / mode=rw)
            target, uri = f"{self.path.as_uri()}?mode={self.mode}", True
        conn = sqlite3.connect(
            target, isolation_level=None, check_same_thread=False, timeout=60, uri=uri
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        if readonly:
            conn.execute("PRAGMA query_only = 1")
        return conn

    def open(self, mode: OpenMode = "rwc") -> SqliteStore:
        """Create the file if needed, migrate, and start the writer thread.

        ``mode`` ``"rw"`` never creates the file and ``"ro"`` also never writes (no
        migration, no writer): both raise ``STORE_NOT_FOUND`` ("no database at PATH") when
        the file is missing or holds no Smithers store.
        """
        self.mode = mode
        if mode != "rwc":
            return self._open_existing()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return self._start_writer(conn)

    def _start_writer(self, conn: sqlite3.Connection | None = None) -> SqliteStore:
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA journal_mode = WAL")
            self._migrate(conn)
        self._writer_conn = conn
        self._writer = threading.Thread(
            target=self._writer_loop, name=f"smithers-writer:{self.path.name}", daemon=True
        )
        self._writer.start()
        return self

    def _open_existing(self) -> SqliteStore:
        missing = SmithersError(
            "STORE_NOT_FOUND", f"no database at {self.path}", {"path": str(self.path)}
        )
        if not self.path.is_file():
            raise missing
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise missing from exc
        try:
            meta = dict(conn.execute("SELECT key, value FROM _smithers_meta").fetchall())
        except sqlite3.Error as exc:
            raise missing from exc
        finally:
            conn.close()
        if "schema_version" not in meta:
            raise missing
        if self.mode == "ro" and int(meta["schema_version"]) != SCHEMA_VERSION:
            raise SmithersError(
                "STORE_SCHEMA_MISMATCH",
                f"Store {self.path} has schema version {meta['schema_version']}; this Smithers"
                f" reads version {SCHEMA_VERSION} (a host or a writing command migrates it)",
            )
        self.epoch = str(meta.get("epoch") or "")
        if self.mode == "rw":
            return self._start_writer()
        return self

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
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
                    f"Store {self.path} has schema version {current}; this Smithers knows "
                    f"up to {SCHEMA_VERSION}. Upgrade smithers-core.",
                    {"schemaVersion": current, "supported": SCHEMA_VERSION},
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1].split(";"):
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

    def close(self) -> None:
        """Finish queued writes, stop the writer and close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=30)
            self._writer_conn.close()
        with self._readers_lock:
            for conn in self._readers:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._readers.clear()

    # -- writes -----------------------------------------------------------------------------
    def add_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def submit(self, change: Callable[[Tx], T]) -> concurrent.futures.Future[T]:
        """Queue a change; the future resolves after its transaction commits."""
        if self._closed:
            raise SmithersError("STORE_CLOSED", "The store is closed")
        if self.mode == "ro":
            raise SmithersError("STORE_READ_ONLY", f"The store {self.path} is open read-only")
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
        conn = self._writer_conn
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
            self._run_batch(conn, batch)

    def _run_batch(
        self,
        conn: sqlite3.Connection,
        batch: list[tuple[Callable[[Tx], Any], concurrent.futures.Future[Any]]],
    ) -> None:
        results: list[tuple[bool, Any]] = []
        tx = Tx(conn)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for _, fut in batch:
                if fut.set_running_or_notify_cancel():
                    fut.set_exception(SmithersError("STORE_UNAVAILABLE", f"Cannot write: {exc}"))
            return
        for index, (change, fut) in enumerate(batch):
            if not fut.set_running_or_notify_cancel():
                results.append((False, None))  # the caller gave up before it ran: skip it
                continue
            mark = tx._mark()
            savepoint = f"sp{index}"
            conn.execute(f"SAVEPOINT {savepoint}")
            try:
                value = change(tx)
            except BaseException as exc:
                conn.execute(f"ROLLBACK TO {savepoint}")
                conn.execute(f"RELEASE {savepoint}")
                tx._restore(mark)
                results.append((False, exc))
            else:
                conn.execute(f"RELEASE {savepoint}")
                results.append((True, value))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(SmithersError("STORE_UNAVAILABLE", f"Commit failed: {exc}"))
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

    # -- reads ------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on this thread's read-only connection (a consistent snapshot)."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def aread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.read, fn)

    # -- event tailing (other processes) --------------------------------------------------
    def tail(self, after_rowid: int, limit: int = 1000) -> list[CommittedEvent]:
        """Events committed after ``after_rowid`` by any process, in commit order."""
        rows = self.read(lambda c: rows_after_rowid(c, after_rowid, limit))
        return [
            CommittedEvent(r[1], r[2], r[3], jsonutil.loads(r[4]), r[4].encode(), r[0])
            for r in rows
        ]
