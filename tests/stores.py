"""Which store the current test runs on: SQLite files in tmp dirs, or PostgreSQL schemas.

The engine, server and gateway suites run on both (``conftest.BOTH_STORES``): on the
``postgres`` leg every store a test opens by name (``url("gw.db")``) is its own schema of the
throwaway cluster at ``$SMITHERS_TEST_POSTGRES_URL``, fresh for that test, and ``$SMITHERS_DB``
points the hosts' default store there too.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

from smithers_core.store import Store
from smithers_core.store import open_store as open_url

PG_URL = os.environ.get("SMITHERS_TEST_POSTGRES_URL") or ""
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class _Current:
    kind = "sqlite"
    prefix = ""
    schemas: set[str] = set()


def kind() -> str:
    """``"sqlite"`` or ``"postgres"``."""
    return _Current.kind


def is_postgres() -> bool:
    return _Current.kind == "postgres"


def schema_for(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "db"
    schema = f"{_Current.prefix}_{slug}"[:60]
    _Current.schemas.add(schema)
    return schema


def url(name: str = "smithers.db") -> str:
    """The URL of the test's store called ``name`` (a relative SQLite path, or a schema)."""
    if _Current.kind == "sqlite":
        return f"sqlite:///{name}"
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema_for(name)}"


def open_store(tmp_path: Path, name: str = "smithers.db", **kw: Any) -> Store:
    """Open (create, migrate) the test's store called ``name``."""
    return open_url(url(name), base_dir=tmp_path, **kw)


def begin(kind_: str) -> None:
    _Current.kind = kind_
    _Current.prefix = f"t{uuid.uuid4().hex[:12]}"
    _Current.schemas = set()


def end() -> list[str]:
    """Back to SQLite; returns the schemas the test made (the caller drops them)."""
    made = sorted(_Current.schemas)
    _Current.kind, _Current.prefix, _Current.schemas = "sqlite", "", set()
    return made


def drop_schemas(schemas: list[str]) -> None:
    """Drop a finished test's schemas (best effort: a store left open keeps its locks)."""
    if not schemas or not PG_URL:
        return
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET lock_timeout = '2s'")
            for schema in schemas:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
    except psycopg.Error:
        pass


def rows(db_file: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one read query (SQLite syntax) on the test's store at ``db_file`` (a SQLite file, or
    on PostgreSQL the schema named after ``db_file.name``), with a connection of its own."""
    if _Current.kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=10)
        try:
            return [tuple(r) for r in conn.execute(sql, args)]
        finally:
            conn.close()
    import psycopg
    from smithers_store_postgres.dialect import translate

    options = f"-c search_path={schema_for(db_file.name)}"
    with psycopg.connect(PG_URL, autocommit=True, options=options) as pg:
        return [tuple(r) for r in pg.execute(translate(sql), args)]


def abs_url(tmp_path: Path, name: str = "smithers.db") -> str:
    """:func:`url`, with a SQLite file's absolute path (for other processes and configs)."""
    return f"sqlite:///{tmp_path / name}" if _Current.kind == "sqlite" else url(name)


def require_postgres() -> None:
    """Skip the test without a PostgreSQL to run it on; fail instead in CI."""
    import pytest

    if not PG_URL:
        message = "PostgreSQL suites skipped: SMITHERS_TEST_POSTGRES_URL is not set"
        if IN_CI:
            pytest.fail(message + " (CI must run them)")
        pytest.skip(message)


def module_url(request: Any, name: str) -> str:
    """For a fixture parametrized ``["sqlite", "postgres"]`` (wider than one test): the URL
    of its store ``name`` on ``request.param``'s store (a fresh schema, never dropped: the
    cluster is thrown away), or a skip when there is no PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{name}"
    require_postgres()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema=m{uuid.uuid4().hex[:12]}_{name.replace('.', '_')}"
