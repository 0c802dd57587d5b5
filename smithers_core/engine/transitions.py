"""The run vocabulary shared by the engine and the API side: run status groups, the stored
error shape, and reading a run that must exist inside a change.

The state changes themselves are store functions (``smithers_core/store/``); each takes the
writer's :class:`~smithers_core.store.sqlite.Tx` and emits the events describing its rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smithers_core.errors import SmithersError
from smithers_core.store import nodes, runs
from smithers_core.store.base import Tx
from smithers_core.store.events import node_event
from smithers_core.store.runs import run_row

Key = tuple[str, int]

TERMINAL_RUN = frozenset({"finished", "failed", "cancelled", "continued"})
WAITING_RUN = frozenset({"waiting-approval", "waiting-event", "waiting-timer"})
PARKED_RUN = WAITING_RUN | {"paused"}
"""Statuses a resume claims (besides an orphaned ``running`` run)."""
# attempt kinds of nodes that are not tasks: retryTask never resets them
NON_TASK_KINDS = frozenset({"approval", "wait-for-event", "timer"})


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


def get_run_row(tx: Tx, run_id: str) -> dict[str, Any]:
    """The run row inside a change; ``RUN_NOT_FOUND`` when there is no such run."""
    row = run_row(tx.conn, run_id)
    if row is None:
        raise SmithersError("RUN_NOT_FOUND", f"Run not found: {run_id}", {"runId": run_id})
    return row


# -- pause and retry (issue 19) ---------------------------------------------------------------


def request_pause(tx: Tx, run_id: str) -> None:
    """Record a durable pause request for a ``running`` run, else ``RUN_NOT_ACTIVE``."""
    row = get_run_row(tx, run_id)
    if row["status"] != "running":
        raise SmithersError(
            "RUN_NOT_ACTIVE",
            "Run is not currently executing",
            {"runId": run_id, "status": row["status"]},
        )
    runs.request_pause(tx, run_id)


def retry_nodes(tx: Tx, run_id: str, key: tuple[str, int], reset_dependents: bool) -> list[Key]:
    """The nodes ``retryTask`` resets: ``key``, then (with ``reset_dependents``) every task
    node whose attempt started (``NodeStarted``) after ``key`` last ended: every node that
    could have depended on it. ``NOT_FOUND`` for an unknown node; ``INVALID_REQUEST`` when
    ``key`` is an approval, a signal wait or a timer."""
    if nodes.node_state(tx.conn, run_id, key[0], key[1]) is None:
        raise SmithersError(
            "NOT_FOUND",
            f"Node not found: {key[0]} (iteration {key[1]})",
            {"runId": run_id, "nodeId": key[0], "iteration": key[1]},
        )
    if nodes.last_attempt_kind(tx.conn, run_id, key) in NON_TASK_KINDS:
        raise SmithersError(
            "INVALID_REQUEST",
            f"Only task nodes can be retried: {key[0]}",
            {"runId": run_id, "nodeId": key[0], "iteration": key[1]},
        )
    out = [key]
    if reset_dependents:
        end = nodes.node_end_seq(tx.conn, run_id, key)
        if end is not None:
            for other in nodes.nodes_started_after(tx.conn, run_id, end):
                kind = nodes.last_attempt_kind(tx.conn, run_id, other)
                if other != key and kind not in NON_TASK_KINDS:
                    out.append(other)
    return out


def reset_for_retry(tx: Tx, run_id: str, keys: list[Key]) -> None:
    """Set ``keys`` back to ``pending`` without their outputs (``NodePending`` each), and the
    run to an unowned ``running`` one (``RetryTaskStarted``) for a resume to claim."""
    for key in keys:
        nodes.delete_output(tx, run_id, key)
        nodes.set_node(tx, run_id, key[0], key[1], "pending")
        tx.emit(run_id, "NodePending", **node_event(key))
    runs.reopen_for_retry(tx, run_id)
    tx.emit(
        run_id,
        "RetryTaskStarted",
        nodeId=keys[0][0],
        iteration=keys[0][1],
        resetNodes=[{"nodeId": k[0], "iteration": k[1]} for k in keys],
    )


def retry_task(
    tx: Tx,
    run_id: str,
    key: Key,
    reset_dependents: bool,
    *,
    executing: Callable[[dict[str, Any]], bool],
) -> list[Key]:
    """``retryTask``'s change: ``RUN_ACTIVE`` while the run is ``executing``, else reset
    :func:`retry_nodes` (:func:`reset_for_retry`); the reset keys."""
    row = get_run_row(tx, run_id)
    if executing(row):
        raise SmithersError(
            "RUN_ACTIVE", "Run is still executing", {"runId": run_id, "status": row["status"]}
        )
    keys = retry_nodes(tx, run_id, key, reset_dependents)
    reset_for_retry(tx, run_id, keys)
    return keys
