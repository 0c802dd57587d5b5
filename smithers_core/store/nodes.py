"""Queries of nodes (``_smithers_nodes``), their attempts (``_smithers_attempts``) and their
outputs (``_smithers_outputs``).

A node is keyed ``(node_id, iteration)`` within its run. Writes take the writer's
:class:`~smithers_core.store.sqlite.Tx`; reads take a connection (a reader's, or ``tx.conn``
inside a change). Which state follows which is the engine's decision; these only store it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from smithers_core import jsonutil
from smithers_core.store.base import Tx
from smithers_core.store.conn import Connection, Row
from smithers_core.store.events import node_event

Key = tuple[str, int]

# -- nodes ------------------------------------------------------------------------------------


def set_node(
    tx: Tx,
    run_id: str,
    node_id: str,
    iteration: int,
    state: str,
    *,
    last_attempt: int | None = None,
    output_table: str | None = None,
    label: str | None = None,
) -> None:
    """Upsert a node row (keeping columns that are not given)."""
    tx.execute(
        "INSERT INTO _smithers_nodes (run_id, node_id, iteration, state, last_attempt,"
        " updated_at_ms, output_table, label) VALUES (?, ?, ?, ?, ?, ?, COALESCE(?, ''), ?)"
        " ON CONFLICT(run_id, node_id, iteration) DO UPDATE SET state = excluded.state,"
        " updated_at_ms = excluded.updated_at_ms,"
        " last_attempt = COALESCE(?, _smithers_nodes.last_attempt),"
        " output_table = COALESCE(?, _smithers_nodes.output_table),"
        " label = COALESCE(?, _smithers_nodes.label)",
        (
            run_id,
            node_id,
            iteration,
            state,
            last_attempt,
            tx.now,
            output_table,
            label,
            last_attempt,
            output_table,
            label,
        ),
    )


def node_state(conn: Connection, run_id: str, node_id: str, iteration: int) -> str | None:
    """The node's state, or None when it was never mounted."""
    row = conn.execute(
        "SELECT state FROM _smithers_nodes WHERE run_id = ? AND node_id = ? AND iteration = ?",
        (run_id, node_id, iteration),
    ).fetchone()
    return None if row is None else str(row[0])


def node_summary(conn: Connection, run_id: str) -> dict[str, int]:
    """How many of the run's nodes are in each state, by state name."""
    return {
        r[0]: r[1]
        for r in conn.execute(
            "SELECT state, COUNT(*) FROM _smithers_nodes WHERE run_id = ? GROUP BY state"
            " ORDER BY state",
            (run_id,),
        )
    }


def node_rows(conn: Connection, run_id: str) -> list[Row]:
    """The run's node rows, least recently updated first."""
    return conn.execute(
        "SELECT * FROM _smithers_nodes WHERE run_id = ? ORDER BY updated_at_ms, node_id, iteration",
        (run_id,),
    ).fetchall()


def node_states(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    """The run's nodes with the times of their last attempt, least recently updated first:
    ``{nodeId, iteration, state, lastAttempt, updatedAtMs, label, startedAtMs,
    finishedAtMs}`` (the gateway's ``listNodeStates``)."""
    rows = conn.execute(
        "SELECT n.node_id, n.iteration, n.state, n.last_attempt, n.updated_at_ms,"
        " n.label, a.started_at_ms, a.finished_at_ms FROM _smithers_nodes n"
        " LEFT JOIN _smithers_attempts a ON a.run_id = n.run_id AND a.node_id = n.node_id"
        " AND a.iteration = n.iteration AND a.attempt = n.last_attempt"
        " WHERE n.run_id = ? ORDER BY n.updated_at_ms, n.node_id, n.iteration",
        (run_id,),
    ).fetchall()
    return [
        {
            "nodeId": r[0],
            "iteration": r[1],
            "state": r[2],
            "lastAttempt": r[3],
            "updatedAtMs": r[4],
            "label": r[5],
            "startedAtMs": r[6],
            "finishedAtMs": r[7],
        }
        for r in rows
    ]


# -- attempts ---------------------------------------------------------------------------------


def insert_attempt(
    tx: Tx,
    run_id: str,
    key: Key,
    attempt: int,
    state: str,
    *,
    started_at_ms: int,
    meta: dict[str, Any],
    finished_at_ms: int | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """Insert attempt number ``attempt`` of node ``key`` in ``state``."""
    tx.execute(
        "INSERT INTO _smithers_attempts (run_id, node_id, iteration, attempt, state,"
        " started_at_ms, finished_at_ms, error_json, meta_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            key[0],
            key[1],
            attempt,
            state,
            started_at_ms,
            finished_at_ms,
            jsonutil.dumps(error) if error else None,
            jsonutil.dumps(meta),
        ),
    )


def settle_attempt(
    tx: Tx,
    run_id: str,
    key: Key,
    attempt: int,
    state: str,
    *,
    error: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """End an attempt in ``state`` now, with its error (if any) and, when given, new meta."""
    tx.execute(
        "UPDATE _smithers_attempts SET state = ?, finished_at_ms = ?, error_json = ?,"
        " meta_json = COALESCE(?, meta_json)"
        " WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
        (
            state,
            tx.now,
            jsonutil.dumps(error) if error is not None else None,
            jsonutil.dumps(meta) if meta is not None else None,
            run_id,
            key[0],
            key[1],
            attempt,
        ),
    )


def cancel_attempt(tx: Tx, run_id: str, key: Key, attempt: int, reason: str) -> None:
    """Mark one attempt ``cancelled`` with ``error_json = {code: CANCELLED, reason}``."""
    error = {"code": "CANCELLED", "message": f"Cancelled ({reason})", "reason": reason}
    settle_attempt(tx, run_id, key, attempt, "cancelled", error=error)


def heartbeat_attempt(tx: Tx, run_id: str, key: Key, attempt: int, data_json: str | None) -> bool:
    """Record a heartbeat (and, when given, its JSON checkpoint) of an in-progress attempt;
    False when the attempt is no longer in progress."""
    cur = tx.execute(
        "UPDATE _smithers_attempts SET heartbeat_at_ms = ?,"
        " heartbeat_data_json = COALESCE(?, heartbeat_data_json)"
        " WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?"
        " AND state = 'in-progress'",
        (tx.now, data_json, run_id, key[0], key[1], attempt),
    )
    return bool(cur.rowcount)


def attempt_state(conn: Connection, run_id: str, key: Key, attempt: int) -> str | None:
    """The attempt's state, or None when there is no such attempt."""
    row = conn.execute(
        "SELECT state FROM _smithers_attempts WHERE run_id = ? AND node_id = ?"
        " AND iteration = ? AND attempt = ?",
        (run_id, key[0], key[1], attempt),
    ).fetchone()
    return None if row is None else str(row[0])


def failed_attempt_count(conn: Connection, run_id: str, key: Key) -> int:
    """How many attempts of node ``key`` failed."""
    row = conn.execute(
        "SELECT COUNT(*) FROM _smithers_attempts WHERE run_id = ? AND node_id = ?"
        " AND iteration = ? AND state = 'failed'",
        (run_id, key[0], key[1]),
    ).fetchone()
    return int(row[0])


def last_attempt_number(conn: Connection, run_id: str, key: Key) -> int:
    """The highest attempt number of node ``key`` (0 before its first attempt)."""
    row = conn.execute(
        "SELECT COALESCE(MAX(attempt), 0) FROM _smithers_attempts WHERE run_id = ?"
        " AND node_id = ? AND iteration = ?",
        (run_id, key[0], key[1]),
    ).fetchone()
    return int(row[0])


def attempts_in_states(conn: Connection, run_id: str, states: Collection[str]) -> list[Row]:
    """The run's attempts in one of ``states``, oldest start first:
    rows of ``(node_id, iteration, attempt, state, meta_json)``."""
    marks = ", ".join("?" for _ in states)
    return conn.execute(
        "SELECT node_id, iteration, attempt, state, meta_json FROM _smithers_attempts"
        f" WHERE run_id = ? AND state IN ({marks}) ORDER BY started_at_ms, node_id",
        (run_id, *states),
    ).fetchall()


def attempt_rows(
    conn: Connection, run_id: str, node_id: str | None = None, iteration: int | None = None
) -> list[Row]:
    """The run's attempts in start order; with ``node_id``, that node's (optionally only
    ``iteration``), newest attempt first."""
    if node_id is None:
        return conn.execute(
            "SELECT * FROM _smithers_attempts WHERE run_id = ? ORDER BY started_at_ms,"
            " node_id, iteration, attempt",
            (run_id,),
        ).fetchall()
    return conn.execute(
        "SELECT * FROM _smithers_attempts WHERE run_id = ? AND node_id = ?"
        " AND (? IS NULL OR iteration = ?) ORDER BY attempt DESC",
        (run_id, node_id, iteration, iteration),
    ).fetchall()


def attempt_row(
    conn: Connection, run_id: str, node_id: str, iteration: int, attempt: int
) -> Row | None:
    """One attempt row, or None."""
    row: Row | None = conn.execute(
        "SELECT * FROM _smithers_attempts WHERE run_id = ? AND node_id = ?"
        " AND iteration = ? AND attempt = ?",
        (run_id, node_id, iteration, attempt),
    ).fetchone()
    return row


def cancel_waiting_nodes(tx: Tx, run_id: str, reason: str) -> None:
    """Cancel the run's open attempts and the nodes waiting on them or on an approval
    (``TimerCancelled``, ``NodeCancelled``)."""
    for r in attempts_in_states(tx.conn, run_id, ("waiting-timer", "waiting-event", "in-progress")):
        key = (r["node_id"], r["iteration"])
        cancel_attempt(tx, run_id, key, int(r["attempt"]), reason)
        set_node(tx, run_id, key[0], key[1], "cancelled")
        if r["state"] == "waiting-timer":
            tx.emit(run_id, "TimerCancelled", timerId=key[0], **node_event(key))
        tx.emit(run_id, "NodeCancelled", **node_event(key, attempt=r["attempt"], reason=reason))
    for r in tx.all(
        "SELECT node_id, iteration FROM _smithers_nodes WHERE run_id = ?"
        " AND state = 'waiting-approval'",
        (run_id,),
    ):
        key = (r["node_id"], r["iteration"])
        set_node(tx, run_id, key[0], key[1], "cancelled")
        tx.emit(run_id, "NodeCancelled", **node_event(key, reason=reason))


# -- outputs ----------------------------------------------------------------------------------


def write_output(
    tx: Tx,
    run_id: str,
    key: Key,
    payload: Any,
    *,
    output_table: str,
    schema_json: str | None,
) -> None:
    """Upsert a node's output row: its JSON payload and the JSON schema of its model."""
    tx.execute(
        "INSERT INTO _smithers_outputs (run_id, node_id, iteration, output_table,"
        " payload_json, schema_json) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(run_id, node_id, iteration) DO UPDATE SET"
        " output_table = excluded.output_table, payload_json = excluded.payload_json,"
        " schema_json = excluded.schema_json",
        (run_id, key[0], key[1], output_table, jsonutil.dumps(payload), schema_json),
    )


def finish_with_output(
    tx: Tx,
    run_id: str,
    key: Key,
    attempt: int,
    payload: Any,
    *,
    output_table: str,
    schema_json: str | None,
    meta: dict[str, Any] | None = None,
) -> None:
    """A node's attempt produced its output: write it, finish the attempt (``meta`` replaces
    its metadata when given) and the node, and emit ``NodeFinished``."""
    write_output(tx, run_id, key, payload, output_table=output_table, schema_json=schema_json)
    settle_attempt(tx, run_id, key, attempt, "finished", meta=meta)
    set_node(tx, run_id, key[0], key[1], "finished", last_attempt=attempt)
    tx.emit(run_id, "NodeFinished", **node_event(key, attempt=attempt))


def output_payload(conn: Connection, run_id: str, node_id: str, iteration: int) -> Any:
    """A node's output payload, or None."""
    row = output_row(conn, run_id, node_id, iteration)
    return None if row is None else jsonutil.loads(row["payload_json"])


def node_iterations(conn: Connection, run_id: str, node_id: str) -> list[Row]:
    """Every iteration's row of one node, lowest iteration first (``getNodeOutput``)."""
    return conn.execute(
        "SELECT iteration, state, last_attempt, output_table FROM _smithers_nodes"
        " WHERE run_id = ? AND node_id = ? ORDER BY iteration",
        (run_id, node_id),
    ).fetchall()


def output_row(conn: Connection, run_id: str, node_id: str, iteration: int) -> Row | None:
    """A node's output row (``output_table``, ``payload_json``, ``schema_json``), or None."""
    row: Row | None = conn.execute(
        "SELECT output_table, payload_json, schema_json FROM _smithers_outputs"
        " WHERE run_id = ? AND node_id = ? AND iteration = ?",
        (run_id, node_id, iteration),
    ).fetchone()
    return row


def run_outputs(conn: Connection, run_id: str, limit: int) -> list[Row]:
    """The run's output rows in the order they were first written, at most ``limit``."""
    return conn.execute(
        "SELECT node_id, iteration, output_table, payload_json FROM _smithers_outputs"
        " WHERE run_id = ? ORDER BY rowid LIMIT ?",
        (run_id, limit),
    ).fetchall()


# -- retryTask (issue 19) ---------------------------------------------------------------------

NODE_END_EVENTS = ("NodeFinished", "NodeFailed", "NodeCancelled", "NodeSkipped")


def node_end_seq(conn: Connection, run_id: str, key: Key) -> int | None:
    """The seq of the last event that ended node ``key`` (finished, failed, cancelled or
    skipped), or None when it never ended."""
    row = conn.execute(
        "SELECT MAX(seq) FROM _smithers_events WHERE run_id = ? AND type IN (?, ?, ?, ?)"
        " AND json_extract(payload_json, '$.nodeId') = ?"
        " AND COALESCE(CAST(json_extract(payload_json, '$.iteration') AS INTEGER), 0) = ?",
        (run_id, *NODE_END_EVENTS, key[0], key[1]),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def nodes_started_after(conn: Connection, run_id: str, seq: int) -> list[Key]:
    """Nodes with a ``NodeStarted`` event after ``seq``, in the order they first started."""
    out: dict[Key, None] = {}
    for r in conn.execute(
        "SELECT json_extract(payload_json, '$.nodeId'),"
        " COALESCE(CAST(json_extract(payload_json, '$.iteration') AS INTEGER), 0)"
        " FROM _smithers_events"
        " WHERE run_id = ? AND seq > ? AND type = 'NodeStarted' ORDER BY seq",
        (run_id, seq),
    ):
        if isinstance(r[0], str):
            out.setdefault((r[0], int(r[1])), None)
    return list(out)


def last_attempt_kind(conn: Connection, run_id: str, key: Key) -> str | None:
    """The ``kind`` in the metadata of node ``key``'s last attempt (None without attempts)."""
    row = conn.execute(
        "SELECT json_extract(meta_json, '$.kind') FROM _smithers_attempts WHERE run_id = ?"
        " AND node_id = ? AND iteration = ? ORDER BY attempt DESC LIMIT 1",
        (run_id, key[0], key[1]),
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def delete_output(tx: Tx, run_id: str, key: Key) -> None:
    """Forget node ``key``'s output (it runs again)."""
    tx.execute(
        "DELETE FROM _smithers_outputs WHERE run_id = ? AND node_id = ? AND iteration = ?",
        (run_id, key[0], key[1]),
    )
