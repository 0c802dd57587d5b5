"""Queries of frames (``_smithers_frames``): the rendered tree of a run, numbered from 1.

A frame is committed only when the render's hash changed; each commit emits
``FrameCommitted``.
"""

from __future__ import annotations

from typing import Any

from smithers_core import jsonutil
from smithers_core.store.base import Tx
from smithers_core.store.conn import Connection, Row
from smithers_core.store.events import last_event_seq
from smithers_core.store.nodes import attempt_rows, node_states, run_outputs
from smithers_core.store.runs import run_row
from smithers_core.store.signals import signal_rows


def commit_frame(
    tx: Tx,
    run_id: str,
    *,
    workflow_name: str,
    frame_json: str,
    frame_hash: str,
    mounted_task_ids: list[str],
    task_index: list[dict[str, Any]],
) -> int:
    """Store the run's next frame (and the workflow name it renders) and emit
    ``FrameCommitted``; returns the frame number."""
    row = tx.one(
        "SELECT COALESCE(MAX(frame_no), 0) FROM _smithers_frames WHERE run_id = ?", (run_id,)
    )
    frame_no = int(row[0]) + 1 if row is not None else 1
    tx.execute(
        "INSERT INTO _smithers_frames (run_id, frame_no, created_at_ms, xml_json, xml_hash,"
        " encoding, mounted_task_ids_json, task_index_json, note)"
        " VALUES (?, ?, ?, ?, ?, 'full', ?, ?, 'python-engine')",
        (
            run_id,
            frame_no,
            tx.now,
            frame_json,
            frame_hash,
            jsonutil.dumps(mounted_task_ids),
            jsonutil.dumps(task_index),
        ),
    )
    tx.execute(
        "UPDATE _smithers_runs SET workflow_name = ? WHERE run_id = ?", (workflow_name, run_id)
    )
    tx.emit(run_id, "FrameCommitted", frameNo=frame_no, xmlHash=frame_hash)
    return frame_no


LATEST_FRAME_SQL = (
    "SELECT frame_no, xml_hash FROM _smithers_frames WHERE run_id = ?"
    " ORDER BY frame_no DESC LIMIT 1"
)


def latest_frame_hash(conn: Connection, run_id: str) -> tuple[int, str] | None:
    """``(frame_no, xml_hash)`` of the run's newest frame, or None before the first."""
    row = conn.execute(LATEST_FRAME_SQL, (run_id,)).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def frame_rows(
    conn: Connection, run_id: str, limit: int, after_frame_no: int | None = None
) -> list[Row]:
    """The run's frames numbered above ``after_frame_no``, newest first, at most ``limit``."""
    return conn.execute(
        "SELECT * FROM _smithers_frames WHERE run_id = ? AND frame_no > ?"
        " ORDER BY frame_no DESC LIMIT ?",
        (run_id, after_frame_no if after_frame_no is not None else 0, limit),
    ).fetchall()


def frame_row(conn: Connection, run_id: str, frame_no: int | None = None) -> Row | None:
    """Frame ``frame_no`` of the run (its newest when None), or None."""
    if frame_no is None:
        row: Row | None = conn.execute(
            "SELECT * FROM _smithers_frames WHERE run_id = ? ORDER BY frame_no DESC LIMIT 1",
            (run_id,),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT * FROM _smithers_frames WHERE run_id = ? AND frame_no = ?",
            (run_id, frame_no),
        ).fetchone()
    return row


# -- DevTools reads (issue 19): each one read, in one snapshot of the store -----------------------


def frame_commit_seq(conn: Connection, run_id: str, frame_no: int) -> int | None:
    """The db seq of the newest ``FrameCommitted`` event of frame ``frame_no``, or None."""
    row = conn.execute(
        "SELECT MAX(seq) FROM _smithers_events WHERE run_id = ? AND type = 'FrameCommitted'"
        " AND CAST(json_extract(payload_json, '$.frameNo') AS INTEGER) = ?",
        (run_id, frame_no),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def devtools_read(
    conn: Connection, run_id: str, frame_no: int | None = None
) -> dict[str, Any] | None:
    """What a DevTools snapshot reads of a run, or None without such a run: ``status``,
    ``latestFrameNo`` (0 before the first frame), ``frameNo`` and ``xmlJson`` of frame
    ``frame_no`` (the newest when None; ``xmlJson`` None when that frame does not exist),
    ``seq`` (the db seq of that frame's ``FrameCommitted``, None if unknown), ``lastSeq`` (the
    run's newest db seq) and ``nodes`` (``listNodeStates`` rows)."""
    run = run_row(conn, run_id)
    if run is None:
        return None
    latest = latest_frame_hash(conn, run_id)
    latest_no = latest[0] if latest is not None else 0
    wanted = latest_no if frame_no is None else frame_no
    frame = frame_row(conn, run_id, wanted) if wanted > 0 else None
    return {
        "status": run["status"],
        "latestFrameNo": latest_no,
        "frameNo": wanted,
        "xmlJson": str(frame["xml_json"]) if frame is not None else None,
        "seq": frame_commit_seq(conn, run_id, wanted) if frame is not None else None,
        "lastSeq": last_event_seq(conn, run_id),
        "nodes": node_states(conn, run_id),
    }


def run_facts(conn: Connection, run_id: str) -> dict[str, Any] | None:
    """What ``whatHappened`` and ``runs.diff`` read of a run, or None without such a run:
    the run row, ``nodes`` (``listNodeStates`` rows), ``attempts`` (start order),
    ``approvals`` and ``signals`` (rows as dicts) and ``outputs`` (``(node_id, iteration,
    payload_json)``, at most 10,000)."""
    run = run_row(conn, run_id)
    if run is None:
        return None
    approvals = conn.execute(
        "SELECT node_id, iteration, status, requested_at_ms, decided_at_ms, note, decided_by,"
        " auto_approved FROM _smithers_approvals WHERE run_id = ?"
        " ORDER BY COALESCE(decided_at_ms, requested_at_ms), node_id, iteration",
        (run_id,),
    ).fetchall()
    return {
        "run": run,
        "nodes": node_states(conn, run_id),
        "attempts": [dict(r) for r in attempt_rows(conn, run_id)],
        "approvals": [dict(r) for r in approvals],
        "signals": [dict(r) for r in signal_rows(conn, run_id)],
        "outputs": [(str(r[0]), int(r[1]), str(r[3])) for r in run_outputs(conn, run_id, 10_000)],
    }
