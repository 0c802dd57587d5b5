"""What store queries need of a database connection, whichever driver made it.

The SQLite driver passes its ``sqlite3.Connection``; another driver passes an adapter with the
same ``execute`` (``?`` placeholders, rows readable by index and by column name).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

Row = Any
"""A result row: ``row[0]``, ``row["column"]`` and ``row.keys()``."""


class Cursor(Protocol):
    """The part of a DB-API cursor the queries use."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection running one SQL statement with ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
