"""Time travel: the SQL of a rewind (``rewindRun``) and its audit (``_smithers_time_travel_audit``).

A rewind takes a run back to frame ``N``. The *cut* is the moment frame ``N`` was committed:
its ``created_at_ms`` and the seq of its ``FrameCommitted`` event, which breaks ties between
changes committed in the same millisecond (frame ``0`` is the start of the run: everything is
after the cut). In one transaction :func:`jump`

- deletes the frames numbered above ``N``;
- deletes the attempts started after the cut (an attempt started in the same millisecond
  counts as before only when its ``NodeStarted`` event precedes the frame's event);
- deletes the rows of nodes first mounted after the cut (``NodePending``/``NodeSkipped``
  after the frame's event): the render mounts them again, as it did the first time;
- deletes approval requests and decisions made after the cut (the approval is asked again);
- resets to ``pending`` every other node that changed after the cut: nodes that lost an
  attempt or an approval row, and nodes that became ``cancelled``, ``skipped``,
  ``waiting-*`` or ``in-progress`` after it; their outputs are deleted and signals their
  waits consumed are buffered again (signals themselves are never deleted);
- takes loops that advanced after the cut back to the iteration frame ``N`` shows;
- makes the run ``running`` with no owner, heartbeat, wake time, end, error or pending
  cancel, so a host claims and resumes it;
- appends ``TimeTravelJumped{fromFrameNo, toFrameNo, caller, ...}`` and ``NodePending`` for
  each reset node. Event rows are never deleted and seqs never reused (D10).

Every call to ``rewindRun`` writes one audit row: refusals ``failed`` (with the refusal's
code in ``error_code``), a rewind ``in_progress`` and then ``success`` (in the jump's own
transaction) or ``failed``; :func:`recover_interrupted` turns rows left ``in_progress`` by a
process that died into ``partial``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smithers_core import jsonutil
from smithers_core.errors import SmithersError
from smithers_core.store.base import Tx
from smithers_core.store.conn import Connection
from smithers_core.store.events import node_event

Key = tuple[str, int]

RATE_LIMIT = 10
"""Rewinds one caller may start on one run per :data:`RATE_WINDOW_MS`."""
RATE_WINDOW_MS = 3_600_000
STALE_AUDIT_MS = 60_000
"""An ``in_progress`` row older than this is an interrupted rewind, whoever wrote it."""

_RESET_STATES = (
    "cancelled",
    "skipped",
    "waiting-approval",
    "waiting-event",
    "waiting-timer",
    "in-progress",
)


# -- the audit --------------------------------------------------------------------------------


def write_audit(
    tx: Tx,
    run_id: str,
    *,
    caller: str,
    result: str,
    from_frame_no: int | None = None,
    to_frame_no: int | None = None,
    duration_ms: int | None = 0,
    error_code: str | None = None,
    owner_id: str | None = None,
) -> int:
    """Insert one audit row; returns its id."""
    row = tx.one(
        "INSERT INTO _smithers_time_travel_audit (run_id, from_frame_no, to_frame_no, caller,"
        " timestamp_ms, result, duration_ms, error_code, owner_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            run_id,
            from_frame_no,
            to_frame_no,
            caller,
            tx.now,
            result,
            duration_ms,
            error_code,
            owner_id,
        ),
    )
    return int(row[0]) if row is not None else 0


def finish_audit(
    tx: Tx, audit_id: int, result: str, duration_ms: int, error_code: str | None = None
) -> None:
    """Settle a rewind's ``in_progress`` row as ``result``."""
    tx.execute(
        "UPDATE _smithers_time_travel_audit SET result = ?, duration_ms = ?, error_code = ?"
        " WHERE id = ?",
        (result, duration_ms, error_code, audit_id),
    )


def audit_rows(conn: Connection, run_id: str | None = None) -> list[dict[str, Any]]:
    """Audit rows (of one run, or all), oldest first."""
    rows = conn.execute(
        "SELECT * FROM _smithers_time_travel_audit WHERE (? IS NULL OR run_id = ?) ORDER BY id",
        (run_id, run_id),
    ).fetchall()
    return [dict(r) for r in rows]


def latest_frame_no(conn: Connection, run_id: str) -> int:
    """The run's newest frame number (0 before its first frame)."""
    row = conn.execute(
        "SELECT COALESCE(MAX(frame_no), 0) FROM _smithers_frames WHERE run_id = ?", (run_id,)
    ).fetchone()
    return int(row[0])


@dataclass(frozen=True, slots=True)
class Begun:
    """What :func:`begin` decided: the audit row of the started rewind, or the refusal (whose
    ``failed`` audit row is already written)."""

    audit_id: int = 0
    from_frame_no: int = 0
    refusal: SmithersError | None = None


def begin(
    tx: Tx,
    run_id: str,
    frame_no: int,
    *,
    caller: str,
    owner_id: str,
    owner_gone: Callable[[str | None], bool],
) -> Begun:
    """Start a rewind of ``run_id`` by ``caller``: ``Busy`` while another rewind of the run is
    under way, ``RateLimited`` after :data:`RATE_LIMIT` rewinds in the last hour,
    ``FrameOutOfRange`` beyond the newest frame; else an ``in_progress`` row.
    ``owner_gone(owner_id)`` tells whether the process that wrote another row is dead."""
    latest = latest_frame_no(tx.conn, run_id)
    refusal: SmithersError | None = None
    busy = [
        r
        for r in tx.all(
            "SELECT owner_id, timestamp_ms FROM _smithers_time_travel_audit"
            " WHERE run_id = ? AND result = 'in_progress'",
            (run_id,),
        )
        if not _interrupted(r["owner_id"], int(r["timestamp_ms"]), tx.now, owner_gone)
    ]
    row = tx.one(
        "SELECT COUNT(*) FROM _smithers_time_travel_audit WHERE run_id = ? AND caller = ?"
        " AND timestamp_ms > ? AND error_code IS NULL",
        (run_id, caller, tx.now - RATE_WINDOW_MS),
    )
    recent = int(row[0]) if row is not None else 0
    if busy:
        refusal = SmithersError(
            "Busy", "Another rewind of this run is in progress.", {"runId": run_id}
        )
    elif recent >= RATE_LIMIT:
        refusal = SmithersError(
            "RateLimited",
            f"At most {RATE_LIMIT} rewinds of one run per caller per hour.",
            {"runId": run_id, "limit": RATE_LIMIT, "windowMs": RATE_WINDOW_MS},
        )
    elif frame_no > latest:
        refusal = SmithersError(
            "FrameOutOfRange",
            f"frameNo {frame_no} is beyond the run's latest frame {latest}",
            {"runId": run_id, "frameNo": frame_no, "latestFrameNo": latest},
        )
    if refusal is not None:
        write_audit(
            tx,
            run_id,
            caller=caller,
            result="failed",
            from_frame_no=latest,
            to_frame_no=frame_no,
            error_code=refusal.code,
        )
        return Begun(from_frame_no=latest, refusal=refusal)
    audit_id = write_audit(
        tx,
        run_id,
        caller=caller,
        result="in_progress",
        from_frame_no=latest,
        to_frame_no=frame_no,
        duration_ms=None,
        owner_id=owner_id,
    )
    return Begun(audit_id=audit_id, from_frame_no=latest)


def _interrupted(
    owner: str | None, timestamp_ms: int, now: int, owner_gone: Callable[[str | None], bool]
) -> bool:
    return owner is None or now - timestamp_ms > STALE_AUDIT_MS or owner_gone(owner)


def recover_interrupted(tx: Tx, owner_gone: Callable[[str | None], bool]) -> int:
    """Turn ``in_progress`` rows of rewinds that can no longer finish (their process is gone,
    or they are older than :data:`STALE_AUDIT_MS`) into ``partial``; returns how many."""
    ids = [
        int(r["id"])
        for r in tx.all(
            "SELECT id, owner_id, timestamp_ms FROM _smithers_time_travel_audit"
            " WHERE result = 'in_progress'"
        )
        if _interrupted(r["owner_id"], int(r["timestamp_ms"]), tx.now, owner_gone)
    ]
    for audit_id in ids:
        tx.execute(
            "UPDATE _smithers_time_travel_audit SET result = 'partial',"
            " duration_ms = COALESCE(duration_ms, ? - timestamp_ms),"
            " error_code = COALESCE(error_code, 'INTERRUPTED') WHERE id = ?",
            (tx.now, audit_id),
        )
    return len(ids)


# -- the jump ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Jumped:
    """What one jump changed."""

    from_frame_no: int
    to_frame_no: int
    deleted_frames: int = 0
    deleted_attempts: int = 0
    reset_nodes: list[Key] = field(default_factory=list)
    unmounted_nodes: list[Key] = field(default_factory=list)


def _cut(conn: Connection, run_id: str, frame_no: int) -> tuple[int, int]:
    """``(created_at_ms, seq of its FrameCommitted)`` of frame ``frame_no``; ``(-1, -1)`` for
    frame 0 (the start of the run)."""
    if frame_no == 0:
        return -1, -1
    frame = conn.execute(
        "SELECT created_at_ms FROM _smithers_frames WHERE run_id = ? AND frame_no = ?",
        (run_id, frame_no),
    ).fetchone()
    if frame is None:
        raise SmithersError(
            "FrameOutOfRange", f"Frame {frame_no} not found", {"runId": run_id, "frameNo": frame_no}
        )
    seq = conn.execute(
        "SELECT MAX(seq) FROM _smithers_events WHERE run_id = ? AND type = 'FrameCommitted'"
        " AND CAST(json_extract(payload_json, '$.frameNo') AS INTEGER) = ?",
        (run_id, frame_no),
    ).fetchone()
    # without its event (never the case for this engine's frames) ties count as after
    return int(frame[0]), int(seq[0]) if seq is not None and seq[0] is not None else -1


def _keys_of_events(
    conn: Connection,
    run_id: str,
    after_seq: int,
    types: tuple[str, ...],
    at_ms: int | None = None,
) -> dict[tuple[str, int, int | None], int]:
    """``(nodeId, iteration, attempt) -> latest seq`` of node events of ``types`` after
    ``after_seq`` (only those of millisecond ``at_ms`` when given)."""
    marks = ", ".join("?" for _ in types)
    out: dict[tuple[str, int, int | None], int] = {}
    for r in conn.execute(
        "SELECT seq, json_extract(payload_json, '$.nodeId'),"
        " CAST(json_extract(payload_json, '$.iteration') AS INTEGER),"
        " CAST(json_extract(payload_json, '$.attempt') AS INTEGER)"
        f" FROM _smithers_events WHERE run_id = ? AND seq > ? AND type IN ({marks})"
        " AND (? IS NULL OR timestamp_ms = ?)",
        (run_id, after_seq, *types, at_ms, at_ms),
    ):
        if r[1] is None:
            continue
        out[(str(r[1]), int(r[2] or 0), None if r[3] is None else int(r[3]))] = int(r[0])
    return out


def _frame_loops(conn: Connection, run_id: str, frame_no: int) -> dict[str, int]:
    """Loop id -> the iteration frame ``frame_no`` shows it in."""
    row = conn.execute(
        "SELECT xml_json FROM _smithers_frames WHERE run_id = ? AND frame_no = ?",
        (run_id, frame_no),
    ).fetchone()
    loops: dict[str, int] = {}
    if row is None:
        return loops

    def iterations(node: Any) -> list[int]:
        if not isinstance(node, dict):
            return []
        found: list[int] = []
        props = node.get("props") or {}
        if node.get("tag") != "smithers:ralph" and "iteration" in props:
            try:
                found.append(int(props["iteration"]))
            except (TypeError, ValueError):
                pass
        for child in node.get("children") or []:
            found.extend(iterations(child))
        if node.get("tag") == "smithers:ralph" and props.get("id"):
            loops[str(props["id"])] = max(found, default=0)
        return found

    iterations(jsonutil.loads(row[0]))
    return loops


def jump(tx: Tx, run_id: str, frame_no: int, *, caller: str) -> Jumped:
    """Rewind ``run_id`` to frame ``frame_no`` (see the module docstring). The caller made
    sure no process executes the run."""
    conn = tx.conn
    from_frame = latest_frame_no(conn, run_id)
    if frame_no > from_frame:
        raise SmithersError(
            "FrameOutOfRange",
            f"frameNo {frame_no} is beyond the run's latest frame {from_frame}",
            {"runId": run_id, "frameNo": frame_no, "latestFrameNo": from_frame},
        )
    at_ms, at_seq = _cut(conn, run_id, frame_no)
    out = Jumped(from_frame, frame_no)

    # frames after the target
    cur = tx.execute(
        "DELETE FROM _smithers_frames WHERE run_id = ? AND frame_no > ?", (run_id, frame_no)
    )
    out.deleted_frames = cur.rowcount

    # nodes first mounted after the cut: their rows go, the render mounts them again
    mounted_after = {
        (k[0], k[1]) for k in _keys_of_events(conn, run_id, at_seq, ("NodePending", "NodeSkipped"))
    }
    existing = {
        (r[0], int(r[1])): str(r[2])
        for r in conn.execute(
            "SELECT node_id, iteration, state FROM _smithers_nodes WHERE run_id = ?", (run_id,)
        )
    }
    unmount = sorted(k for k in mounted_after if k in existing)

    # attempts started after the cut
    started = _keys_of_events(conn, run_id, -1, ("NodeStarted",), at_ms) if at_ms >= 0 else {}
    doomed: list[tuple[str, int, int]] = []
    for r in conn.execute(
        "SELECT node_id, iteration, attempt, started_at_ms FROM _smithers_attempts"
        " WHERE run_id = ? AND started_at_ms >= ?",
        (run_id, at_ms),
    ):
        key3 = (str(r[0]), int(r[1]), int(r[2]))
        if int(r[3]) == at_ms and started.get(key3, at_seq + 1) < at_seq:
            continue  # started in the frame's millisecond, but before the frame
        doomed.append(key3)
    reset: set[Key] = {(k[0], k[1]) for k in doomed}
    for node_id, iteration, attempt in doomed:
        tx.execute(
            "DELETE FROM _smithers_attempts WHERE run_id = ? AND node_id = ? AND iteration = ?"
            " AND attempt = ?",
            (run_id, node_id, iteration, attempt),
        )
    out.deleted_attempts = len(doomed)

    # approvals asked or decided after the cut are asked again
    for r in tx.all(
        "SELECT node_id, iteration FROM _smithers_approvals WHERE run_id = ?"
        " AND (COALESCE(requested_at_ms, -1) > ? OR COALESCE(decided_at_ms, -1) > ?)",
        (run_id, at_ms, at_ms),
    ):
        reset.add((str(r[0]), int(r[1])))
        tx.execute(
            "DELETE FROM _smithers_approvals WHERE run_id = ? AND node_id = ? AND iteration = ?",
            (run_id, r[0], r[1]),
        )

    # nodes interrupted, skipped or waiting since the cut
    marks = ", ".join("?" for _ in _RESET_STATES)
    for r in tx.all(
        "SELECT node_id, iteration FROM _smithers_nodes WHERE run_id = ? AND updated_at_ms > ?"
        f" AND state IN ({marks})",
        (run_id, at_ms, *_RESET_STATES),
    ):
        reset.add((str(r[0]), int(r[1])))

    for key in unmount:
        _forget_node(tx, run_id, key, delete_row=True)
    out.unmounted_nodes = unmount
    out.reset_nodes = sorted(k for k in reset if k in existing and k not in mounted_after)
    for key in out.reset_nodes:
        _forget_node(tx, run_id, key, delete_row=False)

    # loops that advanced after the cut
    frame_loops = _frame_loops(conn, run_id, frame_no) if frame_no > 0 else {}
    for r in tx.all(
        "SELECT ralph_id FROM _smithers_ralph WHERE run_id = ? AND updated_at_ms > ?",
        (run_id, at_ms),
    ):
        loop_id = str(r[0])
        if loop_id in frame_loops:
            tx.execute(
                "UPDATE _smithers_ralph SET iteration = ?, done = 0, updated_at_ms = ?"
                " WHERE run_id = ? AND ralph_id = ?",
                (frame_loops[loop_id], tx.now, run_id, loop_id),
            )
        else:
            tx.execute(
                "DELETE FROM _smithers_ralph WHERE run_id = ? AND ralph_id = ?", (run_id, loop_id)
            )

    # the run: resumable by any host
    tx.execute(
        "UPDATE _smithers_runs SET status = 'running', runtime_owner_id = NULL,"
        " heartbeat_at_ms = NULL, wake_at_ms = NULL, finished_at_ms = NULL, error_json = NULL,"
        " cancel_requested_at_ms = NULL, pause_requested_at_ms = NULL,"
        " inbox_seq = inbox_seq + 1 WHERE run_id = ?",
        (run_id,),
    )
    tx.emit(
        run_id,
        "TimeTravelJumped",
        fromFrameNo=from_frame,
        toFrameNo=frame_no,
        caller=caller,
        deletedFrames=out.deleted_frames,
        deletedAttempts=out.deleted_attempts,
        resetNodes=[{"nodeId": k[0], "iteration": k[1]} for k in out.reset_nodes],
        unmountedNodes=[{"nodeId": k[0], "iteration": k[1]} for k in unmount],
    )
    for key in out.reset_nodes:
        tx.emit(run_id, "NodePending", **node_event(key))
    return out


def _forget_node(tx: Tx, run_id: str, key: Key, *, delete_row: bool) -> None:
    """Drop what node ``key`` produced after the cut: its output, the signal its wait took,
    and either its row (with every attempt and approval) or its state (back to ``pending``,
    ``last_attempt`` the newest attempt left)."""
    args = (run_id, key[0], key[1])
    where = " WHERE run_id = ? AND node_id = ? AND iteration = ?"
    tx.execute("DELETE FROM _smithers_outputs" + where, args)
    tx.execute(
        "UPDATE _smithers_signals SET consumed_node_id = NULL, consumed_iteration = NULL,"
        " consumed_at_ms = NULL WHERE run_id = ? AND consumed_node_id = ?"
        " AND consumed_iteration = ?",
        args,
    )
    if delete_row:
        for table in ("_smithers_attempts", "_smithers_approvals", "_smithers_nodes"):
            tx.execute(f"DELETE FROM {table}" + where, args)
        return
    row = tx.one("SELECT MAX(attempt) FROM _smithers_attempts" + where, args)
    last = None if row is None or row[0] is None else int(row[0])
    tx.execute(
        "UPDATE _smithers_nodes SET state = 'pending', last_attempt = ?, updated_at_ms = ?" + where,
        (last, tx.now, *args),
    )


__all__ = [
    "RATE_LIMIT",
    "RATE_WINDOW_MS",
    "STALE_AUDIT_MS",
    "Begun",
    "Jumped",
    "audit_rows",
    "begin",
    "finish_audit",
    "jump",
    "latest_frame_no",
    "recover_interrupted",
    "write_audit",
]
