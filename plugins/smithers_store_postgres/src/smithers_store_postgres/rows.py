"""psycopg connections that look like core's :class:`~smithers_core.store.conn.Connection`:
rows readable by index and by column name, SQLite's SQL translated, booleans as integers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.adapt import Dumper

from smithers_store_postgres.dialect import translate


class Row:
    """A result row: ``row[0]``, ``row["column"]``, ``row.keys()`` (like ``sqlite3.Row``)."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = tuple(values)
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return self._values == other._values
        return self._values == other

    __hash__ = None  # type: ignore[assignment]

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def row_factory(cursor: Any) -> Any:
    """psycopg's row factory protocol, making :class:`Row` objects."""
    description = cursor.description
    index = {} if description is None else {d.name: i for i, d in enumerate(description)}

    def make(values: Sequence[Any]) -> Row:
        return Row(values, index)

    return make


class BoolAsInt(Dumper):
    """Core stores flags in INTEGER columns (SQLite has no booleans): True is 1, False 0."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


def configure(conn: psycopg.Connection[Any]) -> None:
    """Set a fresh connection up the way every query of core's store expects."""
    conn.adapters.register_dumper(bool, BoolAsInt)
    conn.row_factory = row_factory


class PgConnection:
    """A psycopg connection behind core's ``execute(sql, params)`` with ``?`` placeholders."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        return self.raw.execute(translate(sql), tuple(parameters))
