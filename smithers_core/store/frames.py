"""Queries of frames (``_smithers_frames``): the rendered tree of a run, numbered from 1.

A frame is committed only when the render's hash changed; each commit emits
``FrameCommitted``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from smithers_core import jsonutil
from smithers_core.store.sqlite import Tx


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


def latest_frame_hash(conn: sqlite3.Connection, run_id: str) -> tuple[int, str] | None:
    """``(frame_no, xml_hash)`` of the run's newest frame, or None before the first."""
    row = conn.execute(
        "SELECT frame_no, xml_hash FROM _smithers_frames WHERE run_id = ?"
        " ORDER BY frame_no DESC LIMIT 1",
        (run_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def frame_rows(
    conn: sqlite3.Connection, run_id: str, limit: int, after_frame_no: int | None = None
) -> list[sqlite3.Row]:
    """The run's frames numbered above ``after_frame_no``, newest first, at most ``limit``."""
    return conn.execute(
        "SELECT * FROM _smithers_frames WHERE run_id = ? AND frame_no > ?"
        " ORDER BY frame_no DESC LIMIT ?",
        (run_id, after_frame_no if after_frame_no is not None else 0, limit),
    ).fetchall()


def frame_row(
    conn: sqlite3.Connection, run_id: str, frame_no: int | None = None
) -> sqlite3.Row | None:
    """Frame ``frame_no`` of the run (its newest when None), or None."""
    if frame_no is None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM _smithers_frames WHERE run_id = ? ORDER BY frame_no DESC LIMIT 1",
            (run_id,),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT * FROM _smithers_frames WHERE run_id = ? AND frame_no = ?",
            (run_id, frame_no),
        ).fetchone()
    return row
