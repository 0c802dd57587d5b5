"""The PostgreSQL store driver: several gateway replicas on one database.

Semantics are SQLite's (:mod:`smithers_core.store.base`): one writer thread per process with
group commit, and every write transaction takes one transaction-level advisory lock, so writers
of all replicas take turns exactly as SQLite's ``BEGIN IMMEDIATE`` makes them. That keeps each
run's event seqs contiguous, makes claims (runs, cron windows, webhook deliveries, approvals,
signals) exactly-once, and numbers events in commit order, so the event tail never skips one.
A transaction that wrote events sends ``NOTIFY`` (delivered at commit); a listener thread on
each replica wakes its event readers, and their polling stays as the fallback. Reads use a
psycopg connection pool, each in one ``REPEATABLE READ READ ONLY`` snapshot.

URL: ``postgresql://user:password@host:port/dbname`` with libpq's parameters, plus Smithers'
own: ``schema`` (created when missing; the tables live there), ``pool_min``, ``pool_max``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from smithers_core.errors import SmithersError
from smithers_core.store import redact_url
from smithers_core.store.base import OpenMode, Store, Tx
from smithers_core.store.conn import Connection
from smithers_core.store.schema import MIGRATIONS, SCHEMA_VERSION
from smithers_store_postgres.dialect import translate_migration
from smithers_store_postgres.rows import PgConnection, configure

log = logging.getLogger("smithers.store.postgres")
T = TypeVar("T")

LOCK_CLASS = 0x536D7468  # "Smth": the advisory lock's first key; the second is the schema's hash
OWN_PARAMS = ("schema", "pool_min", "pool_max")
BEGIN_LOCKED = f"BEGIN; SELECT pg_advisory_xact_lock({LOCK_CLASS}, hashtext(current_schema()))"
"""Every write transaction of every replica takes this lock first: writers take turns."""


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """``(libpq URL, Smithers' own parameters)``; ``postgres://`` and ``postgresql+x://``
    become ``postgresql://``."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in pairs if k in OWN_PARAMS}
    rest = [(k, v) for k, v in pairs if k not in OWN_PARAMS]
    query = urlencode(rest, quote_via=quote)  # libpq reads %20, not +, as a space
    clean = urlunsplit(("postgresql", parts.netloc, parts.path, query, parts.fragment))
    return clean, own


SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _count(own: dict[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = own.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < minimum or int(raw) > 1000:
        raise SmithersError(
            "INVALID_INPUT",
            f"Store URL parameter {name}={raw!r}: a whole number from {minimum} to 1000",
        )
    return int(raw)


class PostgresStore(Store):
    """A PostgreSQL database shared by every replica (``smithers.stores`` driver)."""

    scheme = "postgresql"
    notifies_commits = True
    inline_reads = False  # every query is a round trip: never on the event loop
    db_errors = (psycopg.Error,)

    def __init__(self, url: str, *, base_dir: Path | None = None, **_: Any) -> None:
        super().__init__(url)
        self.conninfo, own = parse_url(url)
        self.schema = own.get("schema") or None
        if self.schema is not None and not SCHEMA_NAME.fullmatch(self.schema):
            raise SmithersError(
                "INVALID_INPUT",
                f"Store URL parameter schema={self.schema!r}: use lowercase letters, digits and"
                " _ (at most 63, not starting with a digit)",
            )
        self.pool_min = _count(own, "pool_min", 1, minimum=0)
        self.pool_max = max(self.pool_min, _count(own, "pool_max", 16, minimum=1))
        self.writer_id = uuid.uuid4().hex
        self.channel = "smithers_commits"
        self._pool: ConnectionPool[Any] | None = None
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()
        self._notify_commit: str | None = None

    @property
    def describe(self) -> str:
        return redact_url(self.url)

    # -- connections ------------------------------------------------------------------------
    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True}
        if self.schema:  # added to the URL's own libpq options, if any
            given = str(conninfo_to_dict(self.conninfo).get("options") or "")
            kwargs["options"] = f"{given} -c search_path={self.schema}".strip()
        return kwargs

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.conninfo, **self._kwargs())
        except psycopg.Error as exc:
            raise SmithersError(
                "STORE_UNAVAILABLE", f"Cannot connect to {self.describe}: {exc}".strip()
            ) from exc
        configure(conn)
        return conn

    def _use_schema(self, conn: psycopg.Connection[Any], *, create: bool) -> None:
        """Adopt the connection's current schema (made first when ``create``) and its channel;
        ``STORE_UNAVAILABLE`` when the search path names none that exists."""
        if create and self.schema:
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
        row = conn.execute("SELECT current_schema()").fetchone()
        if not row or not row[0]:
            raise SmithersError(
                "STORE_UNAVAILABLE", f"{self.describe}: no schema on the search path to use"
            )
        self.schema = str(row[0])
        self.channel = f"smithers_commits:{self.schema}"[:63]

    # -- lifecycle --------------------------------------------------------------------------
    def open(self, mode: OpenMode = "rwc") -> PostgresStore:
        """Connect, create the schema and migrate (``rwc``), start the writer, the pool and the
        commit listener. ``rw`` and ``ro`` need an existing store (``STORE_NOT_FOUND``); ``ro``
        starts no writer."""
        self.mode = mode
        conn = self._connect()
        try:
            if mode == "rwc":
                self._use_schema(conn, create=True)
                self._migrate(PgConnection(conn), [translate_migration(m) for m in MIGRATIONS])
            else:
                self._check_existing(conn)
                if mode == "rw":
                    self._migrate(PgConnection(conn), [translate_migration(m) for m in MIGRATIONS])
        except BaseException:
            conn.close()
            raise
        self._pool = ConnectionPool(
            self.conninfo,
            min_size=self.pool_min,
            max_size=self.pool_max,
            kwargs=self._kwargs(),
            configure=configure,
            open=True,
            name="smithers-readers",
        )
        if mode == "ro":
            conn.close()
        else:
            self._start_writer(PgConnection(conn), "postgres")
        self._listener = threading.Thread(
            target=self._listen, name="smithers-pg-listen", daemon=True
        )
        self._listener.start()
        return self

    def _check_existing(self, conn: psycopg.Connection[Any]) -> None:
        missing = SmithersError(
            "STORE_NOT_FOUND", f"no database at {self.describe}", {"url": self.describe}
        )
        try:
            self._use_schema(conn, create=False)
            rows = conn.execute("SELECT key, value FROM _smithers_meta").fetchall()
        except (psycopg.Error, SmithersError) as exc:
            raise missing from exc
        meta = {r[0]: r[1] for r in rows}
        if "schema_version" not in meta:
            raise missing
        if self.mode == "ro" and int(meta["schema_version"]) != SCHEMA_VERSION:
            raise self.schema_mismatch(int(meta["schema_version"]))
        self.epoch = str(meta.get("epoch") or "")

    def _close_connections(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        if self._writer_conn is not None:
            self._writer_conn.raw.close()
        if self._pool is not None:
            self._pool.close(timeout=5)

    # -- writes -----------------------------------------------------------------------------
    def _begin(self, conn: Any) -> None:
        # one round trip (no parameters: the simple protocol takes both statements)
        conn.raw.execute(BEGIN_LOCKED)

    def _commit(self, conn: Any, tx: Tx) -> None:
        if not tx.events:
            conn.raw.execute("COMMIT")
            return
        if self._notify_commit is None:
            self._notify_commit = (
                sql.SQL("NOTIFY {}, {}; COMMIT")
                .format(sql.Identifier(self.channel), sql.Literal(self.writer_id))
                .as_string(conn.raw)
            )
        conn.raw.execute(self._notify_commit)  # delivered at commit, to every replica

    def _write_failed(self, conn: Any, exc: BaseException) -> Any:
        if not conn.raw.closed and not conn.raw.broken:
            return conn
        log.warning("store connection lost (%s); reconnecting", exc)
        try:
            return PgConnection(self._connect())
        except SmithersError:
            return conn

    # -- reads ------------------------------------------------------------------------------
    def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` on a pooled connection in one read-only snapshot."""
        if self._pool is None:
            raise SmithersError("STORE_CLOSED", "The store is closed")
        try:
            return self._read_once(self._pool, fn)
        except psycopg.OperationalError:
            # a pooled connection the server dropped (a restart, a failover, an idle timeout):
            # the pool discards it and checks the idle ones; a read has no side effects, so it
            # is tried once more
            self._pool.check()
            return self._read_once(self._pool, fn)

    @staticmethod
    def _read_once(pool: ConnectionPool[Any], fn: Callable[[Connection], T]) -> T:
        # pipeline mode: BEGIN travels with the first query, one round trip for both
        with pool.connection() as raw, raw.pipeline():
            raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                return fn(PgConnection(raw))
            finally:
                if not raw.broken:
                    raw.execute("COMMIT")

    # -- other replicas' commits ------------------------------------------------------------
    def _listen(self) -> None:
        """LISTEN on the store's channel and wake readers for every other writer's commit;
        reconnects (with a growing pause) when the connection drops."""
        pause = 0.1
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.conninfo, **self._kwargs()) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    pause = 0.1
                    self._foreign_committed()  # catch up on what committed while away
                    while not self._stopping.is_set():
                        foreign = False
                        for note in conn.notifies(timeout=0.5):
                            if note.payload != self.writer_id:
                                foreign = True
                            break
                        if foreign:
                            self._foreign_committed()
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    return
                log.warning("commit listener lost its connection (%s); retrying", exc)
                self._stopping.wait(pause)
                pause = min(pause * 2, 5.0)


def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    """Wait until the server at ``url`` accepts connections (deploy scripts, tests)."""
    conninfo, _ = parse_url(url)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(conninfo, connect_timeout=2).close()
            return
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
