"""The SQLite store driver: WAL, a busy timeout, one writer thread with group commit.

The writer's transactions are ``BEGIN IMMEDIATE``, so writers of every process sharing the file
take turns (:mod:`smithers_core.store.base`). Reads use one read-only connection per thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from smithers_core.errors import SmithersError
from smithers_core.store.base import (
    CommitListener,
    CommittedEvent,
    OpenMode,
    Store,
    Tx,
)
from smithers_core.store.conn import Connection
from smithers_core.store.schema import SCHEMA_VERSION

T = TypeVar("T")
Row = sqlite3.Row

__all__ = [
    "CommitListener",
    "CommittedEvent",
    "OpenMode",
    "SqliteStore",
    "Tx",
    "sqlite_path_from_url",
]


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


class SqliteStore(Store):
    """A SQLite database shared safely by threads of this process and other processes."""

    scheme = "sqlite"
    db_errors = (sqlite3.Error,)

    def __init__(self, url: str, *, base_dir: Path | None = None, busy_timeout_ms: int = 30_000):
        super().__init__(url)
        self.path = sqlite_path_from_url(url, base_dir)
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    @property
    def describe(self) -> str:
        return str(self.path)

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
        self._start()
        return self

    def _start(self) -> None:
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._start_writer(conn, self.path.name)

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
            raise self.schema_mismatch(int(meta["schema_version"]))
        self.epoch = str(meta.get("epoch") or "")
        if self.mode == "rw":
            self._start()
        return self

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _close_connections(self) -> None:
        if self._writer_conn is not None:
            self._writer_conn.close()
        with self._readers_lock:
            for conn in self._readers:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._readers.clear()

    # -- reads ------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` on this thread's read-only connection (a consistent snapshot)."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")
