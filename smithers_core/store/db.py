"""``SmithersDb``: the read side every host uses, returning upstream's camelCase row shapes.

Point reads are indexed and cheap; scans go through worker threads. Writes never happen here:
they are state changes owned by the engine and the run service.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from smithers_core import jsonutil
from smithers_core.clock import now_ms
from smithers_core.store.sqlite import SqliteStore
from smithers_core.workflow.durations import iso_from_ms

_CAMEL: dict[str, str] = {}

RUN_COLUMNS = [
    "run_id",
    "parent_run_id",
    "workflow_name",
    "workflow_path",
    "workflow_hash",
    "status",
    "created_at_ms",
    "started_at_ms",
    "finished_at_ms",
    "heartbeat_at_ms",
    "runtime_owner_id",
    "cancel_requested_at_ms",
    "hijack_requested_at_ms",
    "hijack_target",
    "vcs_type",
    "vcs_root",
    "vcs_revision",
    "error_json",
    "config_json",
]

STALE_AFTER_MS = 30_000


def camel(name: str) -> str:
    out = _CAMEL.get(name)
    if out is None:
        head, *rest = name.split("_")
        out = head + "".join(p[:1].upper() + p[1:] for p in rest)
        _CAMEL[name] = out
    return out


def camel_row(
    row: sqlite3.Row | dict[str, Any], columns: Iterable[str] | None = None
) -> dict[str, Any]:
    keys = columns if columns is not None else row.keys()
    return {camel(k): row[k] for k in keys}


def run_state_view(
    run: dict[str, Any], conn: sqlite3.Connection, stale_after_ms: int = STALE_AFTER_MS
) -> dict[str, Any]:
    """Upstream's ``RunStateView``: a pure function of the run row (plus its blocker)."""
    status = run["status"]
    now = now_ms()
    view: dict[str, Any] = {"runId": run["run_id"], "computedAt": iso_from_ms(now)}
    if status in ("finished", "continued"):
        view["state"] = "succeeded"
    elif status in ("failed", "cancelled"):
        view["state"] = status
    elif status == "waiting-approval":
        view["state"] = "waiting-approval"
        row = conn.execute(
            "SELECT node_id, requested_at_ms FROM _smithers_approvals WHERE run_id = ?"
            " AND status = 'requested' AND requested_at_ms IS NOT NULL"
            " ORDER BY requested_at_ms LIMIT 1",
            (run["run_id"],),
        ).fetchone()
        if row is not None:
            view["blocked"] = {
                "kind": "approval",
                "nodeId": row[0],
                "requestedAt": iso_from_ms(row[1]),
            }
    elif status == "waiting-timer":
        view["state"] = "waiting-timer"
        best: tuple[int, str] | None = None
        for r in conn.execute(
            "SELECT node_id, meta_json FROM _smithers_attempts WHERE run_id = ?"
            " AND state = 'waiting-timer'",
            (run["run_id"],),
        ):
            fires = ((jsonutil.loads(r[1]) or {}).get("timer") or {}).get("firesAtMs")
            if isinstance(fires, int) and (best is None or fires < best[0]):
                best = (fires, r[0])
        if best is not None:
            view["blocked"] = {"kind": "timer", "nodeId": best[1], "wakeAt": iso_from_ms(best[0])}
    elif status == "waiting-event":
        view["state"] = "waiting-event"
        r = conn.execute(
            "SELECT node_id, meta_json FROM _smithers_attempts WHERE run_id = ?"
            " AND state = 'waiting-event' ORDER BY started_at_ms LIMIT 1",
            (run["run_id"],),
        ).fetchone()
        if r is not None:
            wait = (jsonutil.loads(r[1]) or {}).get("waitForEvent") or {}
            key = wait.get("correlationId") or wait.get("signalName") or ""
            view["blocked"] = {"kind": "event", "nodeId": r[0], "correlationKey": key}
    elif status == "running":
        beats = [v for v in (run["heartbeat_at_ms"], run["started_at_ms"]) if v is not None]
        if not beats:
            view["state"] = "unknown"
        else:
            last = max(beats)
            if now - last <= stale_after_ms:
                view["state"] = "running"
            else:
                view["state"] = "stale" if run["runtime_owner_id"] else "orphaned"
                view["unhealthy"] = {
                    "kind": "engine-heartbeat-stale",
                    "lastHeartbeatAt": iso_from_ms(last),
                }
    else:
        view["state"] = "unknown"
    return view


class SmithersDb:
    """Read queries over one store. All methods are synchronous; call them in a thread
    (``await db.call(db.get_run, run_id)``) unless they are indexed point reads."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    @property
    def epoch(self) -> str:
        return self.store.epoch

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    # -- runs -------------------------------------------------------------------------------
    def run_row(self, run_id: str) -> dict[str, Any] | None:
        def q(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = c.execute("SELECT * FROM _smithers_runs WHERE run_id = ?", (run_id,)).fetchone()
            return dict(row) if row is not None else None

        return self.store.read(q)

    def node_summary(self, conn: sqlite3.Connection, run_id: str) -> dict[str, int]:
        return {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT state, COUNT(*) FROM _smithers_nodes WHERE run_id = ? GROUP BY state"
                " ORDER BY state",
                (run_id,),
            )
        }

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The whole run row (camelCase) plus ``summary`` and ``runState``."""

        def q(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = c.execute("SELECT * FROM _smithers_runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            run = dict(row)
            out = camel_row(run, RUN_COLUMNS)
            out["summary"] = self.node_summary(c, run_id)
            out["runState"] = run_state_view(run, c)
            return out

        return self.store.read(q)

    def run_status(self, run_id: str) -> str | None:
        return self.store.read(
            lambda c: (
                r[0]
                if (
                    r := c.execute(
                        "SELECT status FROM _smithers_runs WHERE run_id = ?", (run_id,)
                    ).fetchone()
                )
                is not None
                else None
            )
        )

    def list_runs(self, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
        """Newest first; ``status`` matches exactly (D7 Q11)."""

        def q(c: sqlite3.Connection) -> list[dict[str, Any]]:
            if status:
                rows = c.execute(
                    "SELECT * FROM _smithers_runs WHERE status = ? ORDER BY created_at_ms DESC,"
                    " rowid DESC LIMIT ?",
                    (status, limit),
                ).fetchall()
            else:
                rows = c.execute(
                    "SELECT * FROM _smithers_runs ORDER BY created_at_ms DESC, rowid DESC LIMIT ?",
                    (limit,),
                ).fetchall()
            return [camel_row(r, RUN_COLUMNS) for r in rows]

        return self.store.read(q)

    def input_of(self, run_id: str) -> Any:
        return self.store.read(
            lambda c: (
                jsonutil.loads(r[0])
                if (
                    r := c.execute(
                        "SELECT payload_json FROM _smithers_input WHERE run_id = ?", (run_id,)
                    ).fetchone()
                )
                is not None
                else None
            )
        )

    # -- nodes, attempts, frames, outputs -----------------------------------------------------
    def list_node_states(self, run_id: str) -> list[dict[str, Any]]:
        return self.store.read(
            lambda c: [
                camel_row(r)
                for r in c.execute(
                    "SELECT * FROM _smithers_nodes WHERE run_id = ? ORDER BY updated_at_ms,"
                    " node_id, iteration",
                    (run_id,),
                )
            ]
        )

    def list_attempts(
        self, run_id: str, node_id: str | None = None, iteration: int | None = None
    ) -> list[dict[str, Any]]:
        def q(c: sqlite3.Connection) -> list[dict[str, Any]]:
            if node_id is None:
                rows = c.execute(
                    "SELECT * FROM _smithers_attempts WHERE run_id = ? ORDER BY started_at_ms,"
                    " node_id, iteration, attempt",
                    (run_id,),
                ).fetchall()
            else:
                rows = c.execute(
                    "SELECT * FROM _smithers_attempts WHERE run_id = ? AND node_id = ?"
                    " AND (? IS NULL OR iteration = ?) ORDER BY attempt DESC",
                    (run_id, node_id, iteration, iteration),
                ).fetchall()
            return [camel_row(r) for r in rows]

        return self.store.read(q)

    def get_attempt(
        self, run_id: str, node_id: str, iteration: int, attempt: int
    ) -> dict[str, Any] | None:
        def q(c: sqlite3.Connection) -> dict[str, Any] | None:
            r = c.execute(
                "SELECT * FROM _smithers_attempts WHERE run_id = ? AND node_id = ?"
                " AND iteration = ? AND attempt = ?",
                (run_id, node_id, iteration, attempt),
            ).fetchone()
            return camel_row(r) if r is not None else None

        return self.store.read(q)

    def list_frames(
        self, run_id: str, limit: int = 50, after_frame_no: int | None = None
    ) -> list[dict[str, Any]]:
        """Frames newest first (``frame_no`` descending), optionally after a frame number."""

        def q(c: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = c.execute(
                "SELECT * FROM _smithers_frames WHERE run_id = ? AND frame_no > ?"
                " ORDER BY frame_no DESC LIMIT ?",
                (run_id, after_frame_no if after_frame_no is not None else 0, limit),
            ).fetchall()
            return [camel_row(r) for r in rows]

        return self.store.read(q)

    def get_frame(self, run_id: str, frame_no: int | None = None) -> dict[str, Any] | None:
        def q(c: sqlite3.Connection) -> dict[str, Any] | None:
            if frame_no is None:
                r = c.execute(
                    "SELECT * FROM _smithers_frames WHERE run_id = ?"
                    " ORDER BY frame_no DESC LIMIT 1",
                    (run_id,),
                ).fetchone()
            else:
                r = c.execute(
                    "SELECT * FROM _smithers_frames WHERE run_id = ? AND frame_no = ?",
                    (run_id, frame_no),
                ).fetchone()
            return camel_row(r) if r is not None else None

        return self.store.read(q)

    def get_output(self, run_id: str, node_id: str, iteration: int = 0) -> Any:
        return self.store.read(
            lambda c: (
                jsonutil.loads(r[0])
                if (
                    r := c.execute(
                        "SELECT payload_json FROM _smithers_outputs"
                        " WHERE run_id = ? AND node_id = ?"
                        " AND iteration = ?",
                        (run_id, node_id, iteration),
                    ).fetchone()
                )
                is not None
                else None
            )
        )

    # -- approvals and signals --------------------------------------------------------------
    def pending_approvals(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Requested approvals, oldest first, with run and node details."""

        def q(c: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = c.execute(
                "SELECT a.*, r.workflow_name, r.status AS run_status, n.label FROM"
                " _smithers_approvals a JOIN _smithers_runs r ON r.run_id = a.run_id"
                " LEFT JOIN _smithers_nodes n ON n.run_id = a.run_id AND n.node_id = a.node_id"
                " AND n.iteration = a.iteration WHERE a.status = 'requested'"
                " AND r.status NOT IN ('finished', 'failed', 'cancelled', 'continued')"
                " AND n.state IN ('waiting-approval', 'waiting_approval')"
                " AND (? IS NULL OR a.run_id = ?) ORDER BY a.requested_at_ms, a.run_id",
                (run_id, run_id),
            ).fetchall()
            return [dict(r) for r in rows]

        return self.store.read(q)

    def approval(self, run_id: str, node_id: str, iteration: int = 0) -> dict[str, Any] | None:
        def q(c: sqlite3.Connection) -> dict[str, Any] | None:
            r = c.execute(
                "SELECT * FROM _smithers_approvals WHERE run_id = ? AND node_id = ?"
                " AND iteration = ?",
                (run_id, node_id, iteration),
            ).fetchone()
            return dict(r) if r is not None else None

        return self.store.read(q)

    def list_signals(self, run_id: str) -> list[dict[str, Any]]:
        return self.store.read(
            lambda c: [
                camel_row(r)
                for r in c.execute(
                    "SELECT * FROM _smithers_signals WHERE run_id = ? ORDER BY seq", (run_id,)
                )
            ]
        )

    # -- events -----------------------------------------------------------------------------
    def list_events(
        self, run_id: str, after_seq: int = -1, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Events with ``seq > after_seq`` in seq order: ``{seq, type, timestampMs, payload}``."""

        def q(c: sqlite3.Connection) -> list[dict[str, Any]]:
            return [
                {
                    "runId": run_id,
                    "seq": r[0],
                    "timestampMs": r[1],
                    "type": r[2],
                    "payloadJson": r[3],
                }
                for r in c.execute(
                    "SELECT seq, timestamp_ms, type, payload_json FROM _smithers_events"
                    " WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (run_id, after_seq, limit),
                )
            ]

        return self.store.read(q)

    def last_seq(self, run_id: str) -> int:
        return self.store.read(
            lambda c: int(
                c.execute(
                    "SELECT COALESCE(MAX(seq), -1) FROM _smithers_events WHERE run_id = ?",
                    (run_id,),
                ).fetchone()[0]
            )
        )
