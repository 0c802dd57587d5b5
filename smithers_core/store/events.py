"""Queries of the event table: a run's pages, its last seq, gaps in it, and the global tail.

Events are only appended by ``Tx.emit`` (store/sqlite.py), in the transaction of the change
they describe. Everything here reads; none of it needs more than the ``(run_id, seq)`` primary
key or the rowid.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from smithers_core.store.conn import Connection, Row


def node_event(key: tuple[str, int], **fields: Any) -> dict[str, Any]:
    """The fields of an event about node ``key`` (``nodeId``, ``iteration``, then ``fields``)."""
    return {"nodeId": key[0], "iteration": key[1], **fields}


def last_event_seq(conn: Connection, run_id: str) -> int:
    """The run's newest seq, -1 before its first event."""
    row = conn.execute(
        "SELECT COALESCE(MAX(seq), -1) FROM _smithers_events WHERE run_id = ?", (run_id,)
    ).fetchone()
    return int(row[0])


def event_rows(conn: Connection, run_id: str, after_seq: int, limit: int) -> Iterator[Row]:
    """The run's events with ``seq > after_seq`` in seq order, at most ``limit``:
    rows of ``(seq, type, timestamp_ms, payload_json)``, read as the caller iterates."""
    return iter(
        conn.execute(
            "SELECT seq, type, timestamp_ms, payload_json FROM _smithers_events"
            " WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after_seq, limit),
        )
    )


def node_event_rows(
    conn: Connection, run_id: str, node_id: str, after_seq: int, limit: int
) -> Iterator[Row]:
    """:func:`event_rows` of the events about node ``node_id`` (their ``nodeId`` field)."""
    return iter(
        conn.execute(
            "SELECT seq, type, timestamp_ms, payload_json FROM _smithers_events"
            " WHERE run_id = ? AND seq > ? AND json_extract(payload_json, '$.nodeId') = ?"
            " ORDER BY seq LIMIT ?",
            (run_id, after_seq, node_id, limit),
        )
    )


def newest_missing_event_seq(conn: Connection, run_id: str, lo: int, hi: int) -> int | None:
    """The newest seq in ``[lo, hi]`` that has no event row, or None when none is missing.

    One indexed count first; the rows are scanned (newest first) only when some are missing.
    """
    count = conn.execute(
        "SELECT COUNT(*) FROM _smithers_events WHERE run_id = ? AND seq BETWEEN ? AND ?",
        (run_id, lo, hi),
    ).fetchone()[0]
    if count == hi - lo + 1:
        return None
    expected = hi
    for (seq,) in conn.execute(
        "SELECT seq FROM _smithers_events WHERE run_id = ? AND seq BETWEEN ? AND ?"
        " ORDER BY seq DESC",
        (run_id, lo, hi),
    ):
        if seq != expected:
            break
        expected -= 1
    return expected


def last_event_rowid(conn: Connection) -> int:
    """The rowid of the newest event of any run (0 when there is none)."""
    return int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM _smithers_events").fetchone()[0])


def rows_after_rowid(conn: Connection, after_rowid: int, limit: int) -> list[Row]:
    """Events of every run committed after ``after_rowid``, in commit order, at most
    ``limit``: rows of ``(rowid, run_id, seq, type, payload_json)``."""
    return conn.execute(
        "SELECT rowid, run_id, seq, type, payload_json FROM _smithers_events WHERE rowid > ?"
        " ORDER BY rowid LIMIT ?",
        (after_rowid, limit),
    ).fetchall()
