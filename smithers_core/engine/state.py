"""A run's persisted state, read in one snapshot before each render."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from smithers_core import jsonutil
from smithers_core.engine.render import Key, LoopState


@dataclass(slots=True)
class RunState:
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
        node = self.nodes.get(key)
        return None if node is None else str(node["state"])

    def last_attempt(self, key: Key) -> dict[str, Any] | None:
        rows = self.attempts.get(key)
        return rows[-1] if rows else None

    def failed_attempts(self, key: Key) -> int:
        return sum(1 for a in self.attempts.get(key, ()) if a["state"] == "failed")


def load_run_state(conn: sqlite3.Connection, run_id: str) -> RunState | None:
    row = conn.execute("SELECT * FROM _smithers_runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    st = RunState(run=dict(row))
    for r in conn.execute("SELECT * FROM _smithers_nodes WHERE run_id = ?", (run_id,)):
        st.nodes[(r["node_id"], r["iteration"])] = dict(r)
    for r in conn.execute(
        "SELECT * FROM _smithers_attempts WHERE run_id = ? ORDER BY node_id, iteration, attempt",
        (run_id,),
    ):
        d = dict(r)
        d["meta"] = jsonutil.loads(d.get("meta_json")) or {}
        st.attempts.setdefault((r["node_id"], r["iteration"]), []).append(d)
    for r in conn.execute(
        "SELECT node_id, iteration, payload_json FROM _smithers_outputs WHERE run_id = ?", (run_id,)
    ):
        st.outputs[(r["node_id"], r["iteration"])] = jsonutil.loads(r["payload_json"])
    for r in conn.execute("SELECT * FROM _smithers_approvals WHERE run_id = ?", (run_id,)):
        st.approvals[(r["node_id"], r["iteration"])] = dict(r)
    for r in conn.execute(
        "SELECT * FROM _smithers_signals WHERE run_id = ? AND consumed_at_ms IS NULL"
        " AND rejected_at_ms IS NULL ORDER BY seq",
        (run_id,),
    ):
        st.signals.append(dict(r))
    for r in conn.execute(
        "SELECT ralph_id, iteration, done FROM _smithers_ralph WHERE run_id = ?", (run_id,)
    ):
        st.loops[r["ralph_id"]] = LoopState(int(r["iteration"]), bool(r["done"]))
    frame = conn.execute(
        "SELECT frame_no, xml_hash FROM _smithers_frames WHERE run_id = ?"
        " ORDER BY frame_no DESC LIMIT 1",
        (run_id,),
    ).fetchone()
    if frame is not None:
        st.last_frame_no, st.last_frame_hash = int(frame[0]), str(frame[1])
    return st


def load_input(conn: sqlite3.Connection, run_id: str) -> Any:
    row = conn.execute(
        "SELECT payload_json FROM _smithers_input WHERE run_id = ?", (run_id,)
    ).fetchone()
    return None if row is None else jsonutil.loads(row[0])
