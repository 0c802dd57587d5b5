"""The run vocabulary shared by the engine and the API side: run status groups, the stored
error shape, and reading a run that must exist inside a change.

The state changes themselves are store functions (``smithers_core/store/``); each takes the
writer's :class:`~smithers_core.store.sqlite.Tx` and emits the events describing its rows.
"""

from __future__ import annotations

from typing import Any

from smithers_core.errors import SmithersError
from smithers_core.store.runs import run_row
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


def get_run_row(tx: Tx, run_id: str) -> dict[str, Any]:
    """The run row inside a change; ``RUN_NOT_FOUND`` when there is no such run."""
    row = run_row(tx.conn, run_id)
    if row is None:
        raise SmithersError("RUN_NOT_FOUND", f"Run not found: {run_id}", {"runId": run_id})
    return row
