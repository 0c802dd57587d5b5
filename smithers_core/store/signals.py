"""Queries of signals (``_smithers_signals``): buffered until a wait consumes or rejects them.

Each run numbers its signals from 0 (``seq``). Writes take the writer's
:class:`~smithers_core.store.sqlite.Tx` and emit the signal events; reads take a connection.
"""

from __future__ import annotations

from typing import Any

from smithers_core import jsonutil
from smithers_core.store.base import Tx
from smithers_core.store.conn import Connection, Row


def receive_signal(
    tx: Tx,
    run_id: str,
    signal_name: str,
    correlation_id: str | None,
    payload_json: str,
    received_by: str | None,
) -> int:
    """Buffer a signal under the run's next signal seq (``SignalReceived``); returns the seq."""
    row = tx.one(
        "SELECT COALESCE(MAX(seq), -1) + 1 FROM _smithers_signals WHERE run_id = ?", (run_id,)
    )
    seq = int(row[0]) if row is not None else 0
    tx.execute(
        "INSERT INTO _smithers_signals (run_id, seq, signal_name, correlation_id,"
        " payload_json, received_at_ms, received_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (run_id, seq, signal_name, correlation_id, payload_json, tx.now, received_by),
    )
    tx.emit(run_id, "SignalReceived", signalName=signal_name, correlationId=correlation_id, seq=seq)
    return seq


def consume_signal(tx: Tx, run_id: str, seq: int, key: tuple[str, int]) -> None:
    """Mark signal ``seq`` as taken by the wait of node ``key``."""
    tx.execute(
        "UPDATE _smithers_signals SET consumed_node_id = ?, consumed_iteration = ?,"
        " consumed_at_ms = ? WHERE run_id = ? AND seq = ?",
        (key[0], key[1], tx.now, run_id, seq),
    )


def reject_signal(
    tx: Tx,
    run_id: str,
    seq: int,
    signal_name: str,
    correlation_id: str | None,
    error: dict[str, Any],
) -> None:
    """Mark signal ``seq`` as refused by the wait it matched (``SignalRejected``)."""
    tx.execute(
        "UPDATE _smithers_signals SET rejected_at_ms = ?, rejection_json = ?"
        " WHERE run_id = ? AND seq = ?",
        (tx.now, jsonutil.dumps(error), run_id, seq),
    )
    tx.emit(
        run_id,
        "SignalRejected",
        signalName=signal_name,
        correlationId=correlation_id,
        seq=seq,
        error=error,
    )


def signal_rows(conn: Connection, run_id: str) -> list[Row]:
    """Every signal the run received, in seq order."""
    return conn.execute(
        "SELECT * FROM _smithers_signals WHERE run_id = ? ORDER BY seq", (run_id,)
    ).fetchall()
