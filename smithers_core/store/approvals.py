"""Queries of approvals (``_smithers_approvals``): requests, decisions and what is pending.

A row is ``requested`` until it is ``approved`` or ``denied`` (by a person or by the
auto-approve rule). Writes take the writer's :class:`~smithers_core.store.sqlite.Tx` and emit
the approval events; reads take a connection.
"""

from __future__ import annotations

from typing import Any

from smithers_core import jsonutil
from smithers_core.store.base import Tx
from smithers_core.store.conn import Connection
from smithers_core.store.events import node_event

Key = tuple[str, int]

# -- reads ------------------------------------------------------------------------------------


def approval_row(
    conn: Connection, run_id: str, node_id: str, iteration: int
) -> dict[str, Any] | None:
    """The approval row of one node, or None when it was never requested."""
    row = conn.execute(
        "SELECT * FROM _smithers_approvals WHERE run_id = ? AND node_id = ? AND iteration = ?",
        (run_id, node_id, iteration),
    ).fetchone()
    return dict(row) if row is not None else None


def pending_approvals(conn: Connection, run_id: str | None = None) -> list[dict[str, Any]]:
    """Approvals someone can still decide, oldest request first (then run, node, iteration).

    Pending means: the row is ``requested``, its run is not terminal (finished, failed,
    cancelled, continued) and its node is ``waiting-approval`` (not withdrawn). Each row has
    every approval column plus the run's ``workflow_name``, ``workflow_path``,
    ``config_json`` and ``run_status`` and the node's ``label``.
    """
    rows = conn.execute(
        "SELECT a.*, r.workflow_name, r.workflow_path, r.config_json, r.status AS run_status,"
        " n.label FROM _smithers_approvals a JOIN _smithers_runs r ON r.run_id = a.run_id"
        " JOIN _smithers_nodes n ON n.run_id = a.run_id AND n.node_id = a.node_id"
        " AND n.iteration = a.iteration WHERE a.status = 'requested'"
        " AND r.status NOT IN ('finished', 'failed', 'cancelled', 'continued')"
        " AND n.state = 'waiting-approval' AND (? IS NULL OR a.run_id = ?)"
        " ORDER BY a.requested_at_ms, a.run_id, a.node_id, a.iteration",
        (run_id, run_id),
    ).fetchall()
    return [dict(r) for r in rows]


def oldest_request(conn: Connection, run_id: str) -> tuple[str, int] | None:
    """``(node_id, requested_at_ms)`` of the run's oldest undecided approval, or None."""
    row = conn.execute(
        "SELECT node_id, requested_at_ms FROM _smithers_approvals WHERE run_id = ?"
        " AND status = 'requested' AND requested_at_ms IS NOT NULL"
        " ORDER BY requested_at_ms LIMIT 1",
        (run_id,),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def requested_count(conn: Connection, run_id: str) -> int:
    """How many of the run's approvals are still undecided."""
    row = conn.execute(
        "SELECT COUNT(*) FROM _smithers_approvals WHERE run_id = ? AND status = 'requested'",
        (run_id,),
    ).fetchone()
    return int(row[0])


def recent_human_decisions(
    conn: Connection, workflow_name: str, node_id: str, other_than_run: str, limit: int
) -> list[str]:
    """The statuses (``approved``/``denied``) of the newest ``limit`` decisions people made on
    node ``node_id`` of workflow ``workflow_name`` in runs other than ``other_than_run``."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT a.status FROM _smithers_approvals a JOIN _smithers_runs r"
            " ON r.run_id = a.run_id WHERE r.workflow_name = ? AND a.node_id = ?"
            " AND a.run_id != ? AND a.status IN ('approved', 'denied')"
            " AND a.auto_approved = 0 ORDER BY a.decided_at_ms DESC LIMIT ?",
            (workflow_name, node_id, other_than_run, limit),
        )
    ]


# -- writes -----------------------------------------------------------------------------------


def request_approval(tx: Tx, run_id: str, key: Key, request: dict[str, Any]) -> None:
    """Ask for a decision on node ``key`` (``ApprovalRequested``)."""
    tx.execute(
        "INSERT INTO _smithers_approvals (run_id, node_id, iteration, status,"
        " requested_at_ms, request_json) VALUES (?, ?, ?, 'requested', ?, ?)",
        (run_id, key[0], key[1], tx.now, jsonutil.dumps(request)),
    )
    tx.emit(run_id, "ApprovalRequested", **node_event(key))


def auto_approve(
    tx: Tx, run_id: str, key: Key, request: dict[str, Any], decision: dict[str, Any] | None
) -> None:
    """Record node ``key`` as approved by ``smithers:auto`` without asking anyone
    (``ApprovalAutoApproved``)."""
    tx.execute(
        "INSERT INTO _smithers_approvals (run_id, node_id, iteration, status,"
        " requested_at_ms, decided_at_ms, note, decided_by, request_json,"
        " decision_json, auto_approved) VALUES (?, ?, ?, 'approved', ?, ?,"
        " 'Auto-approved', 'smithers:auto', ?, ?, 1)",
        (
            run_id,
            key[0],
            key[1],
            tx.now,
            tx.now,
            jsonutil.dumps(request),
            jsonutil.dumps(decision) if decision is not None else None,
        ),
    )
    tx.emit(run_id, "ApprovalAutoApproved", **node_event(key))


def decide_approval(
    tx: Tx,
    run_id: str,
    key: Key,
    *,
    approved: bool,
    note: str | None,
    decided_by: str | None,
    decision: Any,
) -> None:
    """Record a person's decision (``ApprovalGranted`` or ``ApprovalDenied``, with
    ``decidedBy`` and ``note``); a None ``decision`` keeps the stored one."""
    tx.execute(
        "UPDATE _smithers_approvals SET status = ?, decided_at_ms = ?, note = ?,"
        " decided_by = ?, decision_json = COALESCE(?, decision_json) WHERE run_id = ?"
        " AND node_id = ? AND iteration = ?",
        (
            "approved" if approved else "denied",
            tx.now,
            note,
            decided_by,
            jsonutil.dumps(decision) if decision is not None else None,
            run_id,
            key[0],
            key[1],
        ),
    )
    # who decided, and their note, stay in the event history (beyond upstream's fields)
    tx.emit(
        run_id,
        "ApprovalGranted" if approved else "ApprovalDenied",
        **node_event(key, decidedBy=decided_by, note=note),
    )


def withdraw_request(tx: Tx, run_id: str, key: Key) -> None:
    """Delete node ``key``'s undecided request (its node left the tree)."""
    tx.execute(
        "DELETE FROM _smithers_approvals WHERE run_id = ? AND node_id = ?"
        " AND iteration = ? AND status = 'requested'",
        (run_id, key[0], key[1]),
    )
