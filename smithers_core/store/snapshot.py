"""A run's persisted state, read in one snapshot (one read transaction) before each render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smithers_core import jsonutil
from smithers_core.store.conn import Connection
from smithers_core.store.frames import LATEST_FRAME_SQL
from smithers_core.store.loops import LOOPS_SQL, LoopState, loop_states_of

Key = tuple[str, int]


@dataclass(slots=True)
class RunState:
    """The run row and everything its nodes stored, keyed ``(node_id, iteration)``: node
    rows, attempts (oldest first, ``meta`` decoded), outputs, approvals, the signals no wait
    took yet (in seq order), loop progress and the newest frame."""

    run: dict[str, Any]
    nodes: dict[Key, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)
    outputs: dict[Key, Any] = field(default_factory=dict)
    approvals: dict[Key, dict[str, Any]] = field(default_factory=dict)
    signals: list[dict[str, Any]] = field(default_factory=list)
    loops: dict[str, LoopState] = field(default_factory=dict)
    last_frame_no: int = 0
    last_frame_hash: str | None = None

    def node_state(self, key: Key) -> str | None:
        """The node's state, None when it is not mounted yet."""
        node = self.nodes.get(key)
        return None if node is None else str(node["state"])

    def last_attempt(self, key: Key) -> dict[str, Any] | None:
        """The node's newest attempt, or None."""
        rows = self.attempts.get(key)
        return rows[-1] if rows else None

    def failed_attempts(self, key: Key) -> int:
        """How many of the node's attempts failed."""
        return sum(1 for a in self.attempts.get(key, ()) if a["state"] == "failed")


SNAPSHOT_SQL = (
    "SELECT * FROM _smithers_runs WHERE run_id = ?",
    "SELECT * FROM _smithers_nodes WHERE run_id = ?",
    "SELECT * FROM _smithers_attempts WHERE run_id = ? ORDER BY node_id, iteration, attempt",
    "SELECT node_id, iteration, payload_json FROM _smithers_outputs WHERE run_id = ?",
    "SELECT * FROM _smithers_approvals WHERE run_id = ?",
    "SELECT * FROM _smithers_signals WHERE run_id = ? AND consumed_at_ms IS NULL"
    " AND rejected_at_ms IS NULL ORDER BY seq",
    LOOPS_SQL,
    LATEST_FRAME_SQL,
)


def load_run_state(conn: Connection, run_id: str) -> RunState | None:
    """The run's state, or None when there is no such run.

    Every query is sent before any result is read: a driver that pipelines them (PostgreSQL)
    makes one round trip for all.
    """
    cursors = [conn.execute(sql, (run_id,)) for sql in SNAPSHOT_SQL]
    runs, nodes, attempts, outputs, approvals, signals, loops, frames = cursors
    run = runs.fetchone()
    if run is None:
        return None
    st = RunState(run=dict(run))
    for r in nodes:
        st.nodes[(r["node_id"], r["iteration"])] = dict(r)
    for r in attempts:
        d = dict(r)
        d["meta"] = jsonutil.loads(d.get("meta_json")) or {}
        st.attempts.setdefault((r["node_id"], r["iteration"]), []).append(d)
    for r in outputs:
        st.outputs[(r["node_id"], r["iteration"])] = jsonutil.loads(r["payload_json"])
    for r in approvals:
        st.approvals[(r["node_id"], r["iteration"])] = dict(r)
    st.signals.extend(dict(r) for r in signals)
    st.loops = loop_states_of(loops)
    frame = frames.fetchone()
    if frame is not None:
        st.last_frame_no, st.last_frame_hash = int(frame[0]), str(frame[1])
    return st
