"""Queries of cron schedules (``_smithers_cron``, engine reference 14).

A row fires its workflow when ``next_run_at_ms`` is due. Each due window is claimed with a
compare-and-set on ``next_run_at_ms`` (:func:`claim_cron`), so several schedulers sharing one
store fire it once. Writes take the writer's :class:`~smithers_core.store.sqlite.Tx`; reads
take a connection. Times are epoch milliseconds given by the caller (its clock).
"""

from __future__ import annotations

from typing import Any

from smithers_core.store.base import Tx
from smithers_core.store.conn import Connection, Row

RETRY_AFTER_ERROR_MS = 60_000


def cron_view(row: Row | None) -> dict[str, Any] | None:
    """A row in wire shape (``cronId``, ``pattern``, ``workflowPath``, ``enabled`` ...)."""
    if row is None:
        return None
    return {
        "cronId": row["cron_id"],
        "pattern": row["pattern"],
        "workflowPath": row["workflow_path"],
        "enabled": bool(row["enabled"]),
        "createdAtMs": row["created_at_ms"],
        "lastRunAtMs": row["last_run_at_ms"],
        "nextRunAtMs": row["next_run_at_ms"],
        "errorJson": row["error_json"],
        "timezone": row["timezone"] or "UTC",
    }


def cron_rows(conn: Connection) -> list[dict[str, Any]]:
    """Every row, enabled or not, oldest first."""
    rows = conn.execute("SELECT * FROM _smithers_cron ORDER BY created_at_ms, cron_id").fetchall()
    return [view for view in map(cron_view, rows) if view is not None]


def cron_row(conn: Connection, cron_id: str) -> dict[str, Any] | None:
    return cron_view(
        conn.execute("SELECT * FROM _smithers_cron WHERE cron_id = ?", (cron_id,)).fetchone()
    )


def upsert_cron(
    tx: Tx,
    cron_id: str,
    *,
    pattern: str,
    workflow_path: str,
    enabled: bool,
    next_run_at_ms: int | None,
    timezone: str | None,
    now_ms: int,
) -> None:
    """Create the row, or replace its pattern, workflow, switch, zone and next fire time (its
    creation time, last run and error stay)."""
    tx.execute(
        "INSERT INTO _smithers_cron (cron_id, pattern, workflow_path, enabled, created_at_ms,"
        " next_run_at_ms, timezone) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (cron_id) DO UPDATE SET pattern = excluded.pattern,"
        " workflow_path = excluded.workflow_path, enabled = excluded.enabled,"
        " next_run_at_ms = excluded.next_run_at_ms, timezone = excluded.timezone",
        (cron_id, pattern, workflow_path, int(enabled), now_ms, next_run_at_ms, timezone),
    )


def delete_cron(tx: Tx, cron_id: str) -> bool:
    """Remove the row; False when there was none."""
    return tx.execute("DELETE FROM _smithers_cron WHERE cron_id = ?", (cron_id,)).rowcount > 0


def claim_cron(
    tx: Tx, cron_id: str, expected_next_ms: int | None, now_ms: int, next_ms: int | None
) -> bool:
    """Take the due window ``expected_next_ms`` (compare-and-set): True for exactly one caller
    among schedulers sharing the store; the row then records the run and its next window."""
    cur = tx.execute(
        "UPDATE _smithers_cron SET last_run_at_ms = ?, next_run_at_ms = ?, error_json = NULL"
        " WHERE cron_id = ? AND enabled = 1 AND next_run_at_ms IS ?",
        (now_ms, next_ms, cron_id, expected_next_ms),
    )
    return cur.rowcount == 1


def cron_failed(tx: Tx, cron_id: str, now_ms: int, error_json: str) -> None:
    """A fire failed: keep the error and try again a minute later."""
    tx.execute(
        "UPDATE _smithers_cron SET last_run_at_ms = ?, next_run_at_ms = ?, error_json = ?"
        " WHERE cron_id = ?",
        (now_ms, now_ms + RETRY_AFTER_ERROR_MS, error_json, cron_id),
    )


def cron_fired(tx: Tx, cron_id: str, now_ms: int, next_ms: int | None) -> bool:
    """A manual trigger ran the row's workflow now (``cronRun``); False if the row is gone."""
    cur = tx.execute(
        "UPDATE _smithers_cron SET last_run_at_ms = ?, next_run_at_ms = ?, error_json = NULL"
        " WHERE cron_id = ?",
        (now_ms, next_ms, cron_id),
    )
    return cur.rowcount == 1


def make_due(tx: Tx, cron_id: str, now_ms: int) -> bool:
    """Make the row due now, for a scheduler serving the store to fire (``smithers cron
    trigger --db``); False if the row is gone."""
    cur = tx.execute(
        "UPDATE _smithers_cron SET next_run_at_ms = ? WHERE cron_id = ?", (now_ms, cron_id)
    )
    return cur.rowcount == 1
