"""Queries for inbound webhooks: remembered delivery ids (replay protection) and the runs a
signal would wake.

A delivery id is claimed with an insert that only one writer can win, so two gateways sharing
the store act on a delivery once; ids older than the retention window are pruned as new ones
arrive. A delivery whose handling fails is forgotten again, so the sender's retry is handled.
"""

from __future__ import annotations

from typing import Any

from smithers_core import jsonutil
from smithers_core.store.base import Tx
from smithers_core.store.conn import Connection

TERMINAL = ("finished", "failed", "cancelled", "continued")


def claim_delivery(tx: Tx, key: str, delivery_id: str, now_ms: int, retention_ms: int) -> bool:
    """True when ``delivery_id`` is new for ``key`` (now remembered); False for a repeat."""
    tx.execute(
        "DELETE FROM _smithers_webhook_deliveries WHERE received_at_ms < ?",
        (now_ms - retention_ms,),
    )
    cur = tx.execute(
        "INSERT INTO _smithers_webhook_deliveries (webhook_key, delivery_id,"
        " received_at_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (key, delivery_id, now_ms),
    )
    return cur.rowcount == 1


def forget_delivery(tx: Tx, key: str, delivery_id: str) -> None:
    """Drop a claimed id whose handling failed, so a retry is handled."""
    tx.execute(
        "DELETE FROM _smithers_webhook_deliveries WHERE webhook_key = ? AND delivery_id = ?",
        (key, delivery_id),
    )


def runs_awaiting(
    conn: Connection,
    signal_name: str,
    correlation_id: str | None,
    run_id: str | None = None,
) -> list[str]:
    """Active runs with a node waiting for ``signal_name`` and ``correlation_id`` (oldest
    wait first), optionally only ``run_id``."""
    marks = ", ".join("?" for _ in TERMINAL)
    sql = (
        "SELECT a.run_id, a.meta_json FROM _smithers_attempts a"
        " JOIN _smithers_runs r ON r.run_id = a.run_id"
        f" WHERE a.state = 'waiting-event' AND r.status NOT IN ({marks})"
    )
    params: list[Any] = list(TERMINAL)
    if run_id is not None:
        sql += " AND a.run_id = ?"
        params.append(run_id)
    found: list[str] = []
    for row in conn.execute(sql + " ORDER BY a.started_at_ms, a.run_id", params):
        wait = (jsonutil.loads(row["meta_json"]) or {}).get("waitForEvent") or {}
        if (
            wait.get("signalName") == signal_name
            and wait.get("correlationId") == correlation_id
            and row["run_id"] not in found
        ):
            found.append(row["run_id"])
    return found
