"""Queries of run rows (``_smithers_runs``) and run inputs (``_smithers_input``).

Writes take the writer's :class:`~smithers_core.store.sqlite.Tx` and emit the events that
describe them in the same transaction; reads take a connection (a reader's, or ``tx.conn``
inside a change). Ownership rules (who may write a running run) are the engine's: the
statements here only carry them as ``WHERE`` conditions.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from smithers_core import jsonutil
from smithers_core.store.base import Tx
from smithers_core.store.conn import Connection, Row


@dataclass(frozen=True, slots=True)
class CancelAttribution:
    """Who asked to cancel a run: upstream's ``cancelRequest*`` columns of the run row.

    ``source`` names the surface (``gateway``, ``server``, ``serve``, ``cli``, ``api``),
    ``identity`` the authenticated caller when there is one, ``pid`` a local client's process.
    """

    source: str = "api"
    identity: str | None = None
    pid: int | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


# -- reads ------------------------------------------------------------------------------------


def run_row(conn: Connection, run_id: str) -> dict[str, Any] | None:
    """The whole run row, or None."""
    row = conn.execute("SELECT * FROM _smithers_runs WHERE run_id = ?", (run_id,)).fetchone()
    return dict(row) if row is not None else None


def run_status(conn: Connection, run_id: str) -> str | None:
    """The run's status, or None when there is no such run."""
    row = conn.execute("SELECT status FROM _smithers_runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else str(row[0])


def run_owner(conn: Connection, run_id: str) -> tuple[str | None, str] | None:
    """``(runtime_owner_id, status)`` of the run, or None when there is no such run."""
    row = conn.execute(
        "SELECT runtime_owner_id, status FROM _smithers_runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def run_input(conn: Connection, run_id: str) -> Any:
    """The run's stored (validated) input payload, or None."""
    row = conn.execute(
        "SELECT payload_json FROM _smithers_input WHERE run_id = ?", (run_id,)
    ).fetchone()
    return None if row is None else jsonutil.loads(row[0])


def iter_runs(
    conn: Connection,
    *,
    status: str | None = None,
    statuses: Collection[str] | None = None,
    parent_run_id: str | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Run rows newest first (``created_at_ms``, then insertion order), read as the caller
    iterates. ``status`` matches exactly (D7 Q11), ``statuses`` any of several; empty
    filters are ignored."""
    conds: list[str] = []
    args: list[Any] = []
    if status:
        conds.append("status = ?")
        args.append(status)
    if statuses:
        conds.append(f"status IN ({', '.join('?' for _ in statuses)})")
        args.extend(statuses)
    if parent_run_id:
        conds.append("parent_run_id = ?")
        args.append(parent_run_id)
    sql = "SELECT * FROM _smithers_runs"
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    sql += " ORDER BY created_at_ms DESC, rowid DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    for row in conn.execute(sql, args):
        yield dict(row)


def owned_runs(conn: Connection, *, owner_id: str) -> list[Row]:
    """``(run_id, cancel_requested_at_ms, inbox_seq)`` of every run ``owner_id`` holds."""
    return conn.execute(
        "SELECT run_id, cancel_requested_at_ms, inbox_seq FROM _smithers_runs"
        " WHERE runtime_owner_id = ?",
        (owner_id,),
    ).fetchall()


def due_run_ids(conn: Connection, now_ms: int) -> list[str]:
    """Parked runs whose wake time has come, and running runs nobody owns."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT run_id FROM _smithers_runs WHERE (wake_at_ms IS NOT NULL"
            " AND wake_at_ms <= ? AND status IN"
            " ('waiting-timer', 'waiting-event', 'waiting-approval'))"
            " OR (status = 'running' AND runtime_owner_id IS NULL)",
            (now_ms,),
        )
    ]


def stale_running_runs(conn: Connection, stale_before_ms: int, hostname: str) -> list[Row]:
    """``(run_id, runtime_owner_id, heartbeat_at_ms)`` of running runs that may be orphaned:
    no owner or heartbeat, a heartbeat older than ``stale_before_ms``, or an owner on
    ``hostname`` (whose process may be gone). Oldest heartbeat first."""
    return conn.execute(
        "SELECT run_id, runtime_owner_id, heartbeat_at_ms FROM _smithers_runs"
        " WHERE status = 'running' AND (heartbeat_at_ms IS NULL OR runtime_owner_id"
        " IS NULL OR heartbeat_at_ms < ? OR runtime_owner_id LIKE ?)"
        " ORDER BY heartbeat_at_ms",
        (stale_before_ms, f"%@{hostname}"),
    ).fetchall()


# -- writes -----------------------------------------------------------------------------------


def create_run(
    tx: Tx,
    *,
    run_id: str,
    parent_run_id: str | None,
    workflow_name: str,
    workflow_path: str | None,
    workflow_hash: str | None,
    owner_id: str,
    config: dict[str, Any],
    input_payload: Any,
) -> bool:
    """Insert a ``running`` run owned by ``owner_id`` and its input (``RunStarted``);
    False, writing nothing, when ``run_id`` already exists."""
    if run_status(tx.conn, run_id) is not None:
        return False
    tx.execute(
        "INSERT INTO _smithers_runs (run_id, parent_run_id, workflow_name, workflow_path,"
        " workflow_hash, status, created_at_ms, started_at_ms, heartbeat_at_ms,"
        " runtime_owner_id, config_json) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
        (
            run_id,
            parent_run_id,
            workflow_name,
            workflow_path,
            workflow_hash,
            tx.now,
            tx.now,
            tx.now,
            owner_id,
            jsonutil.dumps(config),
        ),
    )
    tx.execute(
        "INSERT INTO _smithers_input (run_id, payload_json) VALUES (?, ?)",
        (run_id, jsonutil.dumps(input_payload)),
    )
    tx.emit(run_id, "RunStarted")
    return True


def claim_run(tx: Tx, run_id: str, owner_id: str) -> None:
    """Make ``owner_id`` the owner of a ``running`` run, clearing its wake time, end and
    error (the caller checked that the run may be claimed)."""
    tx.execute(
        "UPDATE _smithers_runs SET status = 'running', runtime_owner_id = ?,"
        " heartbeat_at_ms = ?, wake_at_ms = NULL, finished_at_ms = NULL,"
        " hijack_requested_at_ms = NULL, hijack_target = NULL, error_json = NULL"
        " WHERE run_id = ?",
        (owner_id, tx.now, run_id),
    )


def reload_workflow(tx: Tx, run_id: str, previous_hash: str, new_hash: str) -> None:
    """Record that the run continues with a changed workflow file (``WorkflowReloaded``)."""
    tx.execute("UPDATE _smithers_runs SET workflow_hash = ? WHERE run_id = ?", (new_hash, run_id))
    tx.emit(run_id, "WorkflowReloaded", previousHash=previous_hash, hash=new_hash)


def heartbeat_runs(tx: Tx, owner_id: str) -> None:
    """One heartbeat for every running run ``owner_id`` holds (D5: one write per owner)."""
    tx.execute(
        "UPDATE _smithers_runs SET heartbeat_at_ms = ?"
        " WHERE runtime_owner_id = ? AND status = 'running'",
        (tx.now, owner_id),
    )


def park_run(
    tx: Tx, run_id: str, owner_id: str, status: str, wake_at_ms: int | None, inbox_seq: int
) -> bool:
    """Park a running run as ``status`` (a ``waiting-*``) and release it
    (``RunStatusChanged``). Only while ``owner_id`` holds it, no cancel is requested and
    nothing arrived since ``inbox_seq`` was read; False when that no longer holds."""
    cur = tx.execute(
        "UPDATE _smithers_runs SET status = ?, heartbeat_at_ms = NULL,"
        " runtime_owner_id = NULL, wake_at_ms = ?, cancel_requested_at_ms = NULL"
        " WHERE run_id = ? AND runtime_owner_id = ? AND status = 'running'"
        " AND inbox_seq = ? AND cancel_requested_at_ms IS NULL",
        (status, wake_at_ms, run_id, owner_id, inbox_seq),
    )
    if cur.rowcount != 1:
        return False
    tx.emit(run_id, "RunStatusChanged", status=status)
    return True


def release_run(tx: Tx, run_id: str, owner_id: str) -> None:
    """Give up a running run ``owner_id`` holds, leaving it ``running`` for any host to claim."""
    tx.execute(
        "UPDATE _smithers_runs SET runtime_owner_id = NULL, heartbeat_at_ms = NULL"
        " WHERE run_id = ? AND runtime_owner_id = ? AND status = 'running'",
        (run_id, owner_id),
    )


def reopen_run(tx: Tx, run_id: str) -> None:
    """Turn a parked run back into an unowned ``running`` one, to be claimed and resumed."""
    tx.execute(
        "UPDATE _smithers_runs SET status = 'running', runtime_owner_id = NULL,"
        " heartbeat_at_ms = NULL, wake_at_ms = NULL WHERE run_id = ?",
        (run_id,),
    )


def bump_inbox(tx: Tx, run_id: str) -> None:
    """Note that something arrived for the run (a decision, a signal): a run that read an
    older ``inbox_seq`` cannot park."""
    tx.execute("UPDATE _smithers_runs SET inbox_seq = inbox_seq + 1 WHERE run_id = ?", (run_id,))


def request_cancel(tx: Tx, run_id: str, by: CancelAttribution) -> bool:
    """Ask the process driving the run to cancel it (and keep it from parking), recording who
    asked; True when this is the run's first cancel request (the caller "won")."""
    cur = tx.execute(
        "UPDATE _smithers_runs SET cancel_requested_at_ms = ?, cancel_request_id = ?,"
        " cancel_request_source = ?, cancel_request_client_identity = ?,"
        " cancel_request_client_pid = ?, inbox_seq = inbox_seq + 1"
        " WHERE run_id = ? AND cancel_requested_at_ms IS NULL",
        (tx.now, by.request_id, by.source, by.identity, by.pid, run_id),
    )
    if cur.rowcount:
        return True
    tx.execute("UPDATE _smithers_runs SET inbox_seq = inbox_seq + 1 WHERE run_id = ?", (run_id,))
    return False


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


# -- pause, retry and descendants (issue 19) --------------------------------------------------


def request_pause(tx: Tx, run_id: str) -> None:
    """Record a durable pause request (the first one's time is kept) and bump ``inbox_seq``
    so the process driving the run notices it at its next poll."""
    tx.execute(
        "UPDATE _smithers_runs SET pause_requested_at_ms = COALESCE(pause_requested_at_ms, ?),"
        " inbox_seq = inbox_seq + 1 WHERE run_id = ?",
        (tx.now, run_id),
    )


def pause_run(tx: Tx, run_id: str, owner_id: str, inbox_seq: int) -> bool:
    """Park a running run as ``paused`` and release it, consuming its pause request
    (``RunStatusChanged{status:"paused"}``). Same conditions as :func:`park_run`."""
    cur = tx.execute(
        "UPDATE _smithers_runs SET status = 'paused', heartbeat_at_ms = NULL,"
        " runtime_owner_id = NULL, wake_at_ms = NULL, pause_requested_at_ms = NULL"
        " WHERE run_id = ? AND runtime_owner_id = ? AND status = 'running'"
        " AND inbox_seq = ? AND cancel_requested_at_ms IS NULL",
        (run_id, owner_id, inbox_seq),
    )
    if cur.rowcount != 1:
        return False
    tx.emit(run_id, "RunStatusChanged", status="paused")
    return True


def reopen_for_retry(tx: Tx, run_id: str) -> None:
    """Make any non-executing run an unowned ``running`` one again (``retryTask``), clearing
    its end, error, wake time and any cancel or pause request."""
    tx.execute(
        "UPDATE _smithers_runs SET status = 'running', runtime_owner_id = NULL,"
        " heartbeat_at_ms = NULL, wake_at_ms = NULL, finished_at_ms = NULL, error_json = NULL,"
        " cancel_requested_at_ms = NULL, pause_requested_at_ms = NULL,"
        " inbox_seq = inbox_seq + 1 WHERE run_id = ?",
        (run_id,),
    )


def descendant_runs(conn: Connection, run_id: str, limit: int) -> list[dict[str, Any]]:
    """Runs whose ``parent_run_id`` chain leads to ``run_id`` (not the run itself), newest
    first, at most ``limit``. ``UNION`` drops repeats, so a cyclic chain still ends."""
    sql = (
        "WITH RECURSIVE d(run_id) AS ("
        " SELECT run_id FROM _smithers_runs WHERE parent_run_id = ?"
        " UNION SELECT r.run_id FROM _smithers_runs r JOIN d ON r.parent_run_id = d.run_id)"
        " SELECT r.* FROM _smithers_runs r JOIN d ON r.run_id = d.run_id"
        " WHERE r.run_id != ? ORDER BY r.created_at_ms DESC, r.run_id LIMIT ?"
    )
    return [dict(row) for row in conn.execute(sql, (run_id, run_id, limit))]
