"""State changes shared by the engine and the API side, each run inside one transaction.

Every function here takes the writer's :class:`~smithers_core.store.sqlite.Tx`, changes rows
and emits the events describing the change, so a row never commits without its event.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel

from smithers_core import jsonutil
from smithers_core.errors import SmithersError
from smithers_core.store.sqlite import Tx

TERMINAL_RUN = frozenset({"finished", "failed", "cancelled", "continued"})
WAITING_RUN = frozenset({"waiting-approval", "waiting-event", "waiting-timer"})


def error_dict(exc: BaseException) -> dict[str, Any]:
    """The serialised error stored in ``error_json`` and carried by events."""
    if isinstance(exc, SmithersError):
        out: dict[str, Any] = {"name": "SmithersError", "code": exc.code, "message": exc.message}
        if exc.details is not None:
            out["details"] = exc.details
        return out
    return {
        "name": type(exc).__name__,
        "code": "TASK_FAILED",
        "message": str(exc) or type(exc).__name__,
    }


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


@functools.lru_cache(maxsize=512)
def _schema_json(model: type[BaseModel]) -> str:
    return jsonutil.dumps(model.model_json_schema())


def write_output(
    tx: Tx, run_id: str, key: tuple[str, int], model: type[BaseModel] | None, payload: Any
) -> None:
    """Upsert a node's output row (JSON payload plus the JSON schema of its model)."""
    tx.execute(
        "INSERT INTO _smithers_outputs (run_id, node_id, iteration, output_table,"
        " payload_json, schema_json) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(run_id, node_id, iteration) DO UPDATE SET"
        " output_table = excluded.output_table, payload_json = excluded.payload_json,"
        " schema_json = excluded.schema_json",
        (
            run_id,
            key[0],
            key[1],
            model.__name__ if model is not None else "",
            jsonutil.dumps(payload),
            _schema_json(model) if model is not None else None,
        ),
    )


def node_event(key: tuple[str, int], **fields: Any) -> dict[str, Any]:
    return {"nodeId": key[0], "iteration": key[1], **fields}


def get_run_row(tx: Tx, run_id: str) -> dict[str, Any]:
    row = tx.one("SELECT * FROM _smithers_runs WHERE run_id = ?", (run_id,))
    if row is None:
        raise SmithersError("RUN_NOT_FOUND", f"Run not found: {run_id}", {"runId": run_id})
    return dict(row)


def bump_inbox(tx: Tx, run_id: str) -> None:
    tx.execute("UPDATE _smithers_runs SET inbox_seq = inbox_seq + 1 WHERE run_id = ?", (run_id,))


def cancel_attempt(tx: Tx, run_id: str, key: tuple[str, int], attempt: int, reason: str) -> None:
    """Mark one attempt ``cancelled`` with ``error_json = {code: CANCELLED, reason}``."""
    tx.execute(
        "UPDATE _smithers_attempts SET state = 'cancelled', finished_at_ms = ?,"
        " error_json = ? WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
        (
            tx.now,
            jsonutil.dumps(
                {"code": "CANCELLED", "message": f"Cancelled ({reason})", "reason": reason}
            ),
            run_id,
            key[0],
            key[1],
            attempt,
        ),
    )


def cancel_waiting_nodes(tx: Tx, run_id: str, reason: str) -> None:
    """Cancel timers, waits and approvals still waiting (``TimerCancelled``, ``NodeCancelled``)."""
    rows = tx.all(
        "SELECT a.node_id, a.iteration, a.attempt, a.state FROM _smithers_attempts a"
        " WHERE a.run_id = ? AND a.state IN ('waiting-timer', 'waiting-event', 'in-progress')"
        " ORDER BY a.started_at_ms, a.node_id",
        (run_id,),
    )
    for r in rows:
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


def finish_run(tx: Tx, run_id: str, status: str, error: dict[str, Any] | None = None) -> None:
    """Write a terminal run status and its event (RunFinished, RunFailed or RunCancelled)."""
    tx.execute(
        "UPDATE _smithers_runs SET status = ?, finished_at_ms = ?, heartbeat_at_ms = NULL,"
        " runtime_owner_id = NULL, wake_at_ms = NULL, error_json = ? WHERE run_id = ?",
        (status, tx.now, jsonutil.dumps(error) if error is not None else None, run_id),
    )
    if status == "finished":
        tx.emit(run_id, "RunFinished")
    elif status == "failed":
        tx.emit(run_id, "RunFailed", error=error)
    elif status == "cancelled":
        tx.emit(run_id, "RunCancelled")
