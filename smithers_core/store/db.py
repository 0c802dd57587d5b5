"""``SmithersDb``: the read side every host uses, returning upstream's camelCase row shapes.

Point reads are indexed and cheap; scans go through worker threads. The queries themselves
live in the store's modules of each concept (runs, nodes, approvals, signals, frames, events);
this shapes their rows. Writes never happen here: they are state changes owned by the engine
and the run service.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from smithers_core import jsonutil
from smithers_core.clock import now_ms
from smithers_core.store import approvals, events, frames, nodes, runs, signals
from smithers_core.store.base import Store
from smithers_core.store.conn import Connection, Row
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
    "pause_requested_at_ms",
    "cancel_request_id",
    "cancel_request_source",
    "cancel_request_client_identity",
    "cancel_request_client_pid",
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
    """A snake_case column name in camelCase (memoised)."""
    out = _CAMEL.get(name)
    if out is None:
        head, *rest = name.split("_")
        out = head + "".join(p[:1].upper() + p[1:] for p in rest)
        _CAMEL[name] = out
    return out


def camel_row(row: Row | dict[str, Any], columns: Iterable[str] | None = None) -> dict[str, Any]:
    """A row as a dict with camelCase keys (only ``columns`` when given)."""
    keys = columns if columns is not None else row.keys()
    return {camel(k): row[k] for k in keys}


def run_state_view(
    run: dict[str, Any], conn: Connection, stale_after_ms: int = STALE_AFTER_MS
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
        request = approvals.oldest_request(conn, run["run_id"])
        if request is not None:
            view["blocked"] = {
                "kind": "approval",
                "nodeId": request[0],
                "requestedAt": iso_from_ms(request[1]),
            }
    elif status == "waiting-timer":
        view["state"] = "waiting-timer"
        best: tuple[int, str] | None = None
        for r in nodes.attempts_in_states(conn, run["run_id"], ("waiting-timer",)):
            fires = ((jsonutil.loads(r["meta_json"]) or {}).get("timer") or {}).get("firesAtMs")
            if isinstance(fires, int) and (best is None or fires < best[0]):
                best = (fires, r["node_id"])
        if best is not None:
            view["blocked"] = {"kind": "timer", "nodeId": best[1], "wakeAt": iso_from_ms(best[0])}
    elif status == "waiting-event":
        view["state"] = "waiting-event"
        waits = nodes.attempts_in_states(conn, run["run_id"], ("waiting-event",))
        if waits:
            wait = (jsonutil.loads(waits[0]["meta_json"]) or {}).get("waitForEvent") or {}
            key = wait.get("correlationId") or wait.get("signalName") or ""
            view["blocked"] = {
                "kind": "event",
                "nodeId": waits[0]["node_id"],
                "correlationKey": key,
            }
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

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def epoch(self) -> str:
        """The store's epoch (a UUID made with the store)."""
        return self.store.epoch

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (a method of this class) in a worker thread."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    # -- runs -------------------------------------------------------------------------------
    def run_row(self, run_id: str) -> dict[str, Any] | None:
        """The whole run row (snake_case), or None."""
        return self.store.read(lambda c: runs.run_row(c, run_id))

    def node_summary(self, conn: Connection, run_id: str) -> dict[str, int]:
        """How many of the run's nodes are in each state."""
        return nodes.node_summary(conn, run_id)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The whole run row (camelCase) plus ``summary`` and ``runState``."""

        def q(c: Connection) -> dict[str, Any] | None:
            run = runs.run_row(c, run_id)
            if run is None:
                return None
            out = camel_row(run, RUN_COLUMNS)
            out["summary"] = nodes.node_summary(c, run_id)
            out["runState"] = run_state_view(run, c)
            return out

        return self.store.read(q)

    def run_status(self, run_id: str) -> str | None:
        """The run's status, or None."""
        return self.store.read(lambda c: runs.run_status(c, run_id))

    def list_runs(self, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
        """Newest first; ``status`` matches exactly (D7 Q11)."""
        return self.store.read(
            lambda c: [
                camel_row(r, RUN_COLUMNS) for r in runs.iter_runs(c, status=status, limit=limit)
            ]
        )

    def input_of(self, run_id: str) -> Any:
        """The run's stored input payload, or None."""
        return self.store.read(lambda c: runs.run_input(c, run_id))

    # -- nodes, attempts, frames, outputs -----------------------------------------------------
    def list_node_states(self, run_id: str) -> list[dict[str, Any]]:
        """The run's node rows (camelCase), least recently updated first."""
        return self.store.read(lambda c: [camel_row(r) for r in nodes.node_rows(c, run_id)])

    def list_attempts(
        self, run_id: str, node_id: str | None = None, iteration: int | None = None
    ) -> list[dict[str, Any]]:
        """The run's attempts in start order, or one node's newest first (camelCase)."""
        return self.store.read(
            lambda c: [camel_row(r) for r in nodes.attempt_rows(c, run_id, node_id, iteration)]
        )

    def get_attempt(
        self, run_id: str, node_id: str, iteration: int, attempt: int
    ) -> dict[str, Any] | None:
        """One attempt row (camelCase), or None."""

        def q(c: Connection) -> dict[str, Any] | None:
            r = nodes.attempt_row(c, run_id, node_id, iteration, attempt)
            return camel_row(r) if r is not None else None

        return self.store.read(q)

    def list_frames(
        self, run_id: str, limit: int = 50, after_frame_no: int | None = None
    ) -> list[dict[str, Any]]:
        """Frames newest first (``frame_no`` descending), optionally after a frame number."""
        return self.store.read(
            lambda c: [camel_row(r) for r in frames.frame_rows(c, run_id, limit, after_frame_no)]
        )

    def get_frame(self, run_id: str, frame_no: int | None = None) -> dict[str, Any] | None:
        """Frame ``frame_no`` (the newest when None) as a camelCase row, or None."""

        def q(c: Connection) -> dict[str, Any] | None:
            r = frames.frame_row(c, run_id, frame_no)
            return camel_row(r) if r is not None else None

        return self.store.read(q)

    def get_output(self, run_id: str, node_id: str, iteration: int = 0) -> Any:
        """A node's output payload, or None."""
        return self.store.read(lambda c: nodes.output_payload(c, run_id, node_id, iteration))

    def node_output(self, run_id: str, node_id: str, iteration: int) -> dict[str, Any]:
        """What ``getNodeOutput`` reads of one node, in one snapshot: ``iterations`` (its node
        rows by iteration, camelCase), ``output`` (the output row of ``iteration`` with the
        raw ``payloadJson`` and ``schemaJson``, or None) and ``attempt`` (the newest attempt
        of ``iteration``, or None)."""

        def q(c: Connection) -> dict[str, Any]:
            out = nodes.output_row(c, run_id, node_id, iteration)
            attempts = nodes.attempt_rows(c, run_id, node_id, iteration)
            return {
                "iterations": [camel_row(r) for r in nodes.node_iterations(c, run_id, node_id)],
                "output": camel_row(out) if out is not None else None,
                "attempt": camel_row(attempts[0]) if attempts else None,
            }

        return self.store.read(q)

    def list_outputs(self, run_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The run's outputs, first written first: ``{nodeId, iteration, outputTable, row}``."""
        return self.store.read(
            lambda c: [
                {
                    "nodeId": r[0],
                    "iteration": r[1],
                    "outputTable": r[2] or None,
                    "row": jsonutil.loads(r[3]),
                }
                for r in nodes.run_outputs(c, run_id, limit)
            ]
        )

    # -- approvals and signals --------------------------------------------------------------
    def pending_approvals(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Approvals someone can still decide, oldest first, with run and node details
        (:func:`smithers_core.store.approvals.pending_approvals`)."""
        return self.store.read(lambda c: approvals.pending_approvals(c, run_id))

    def approval(self, run_id: str, node_id: str, iteration: int = 0) -> dict[str, Any] | None:
        """A node's approval row (snake_case), or None."""
        return self.store.read(lambda c: approvals.approval_row(c, run_id, node_id, iteration))

    def list_signals(self, run_id: str) -> list[dict[str, Any]]:
        """Every signal of the run (camelCase), in seq order."""
        return self.store.read(lambda c: [camel_row(r) for r in signals.signal_rows(c, run_id)])

    # -- events -----------------------------------------------------------------------------
    def list_events(
        self, run_id: str, after_seq: int = -1, limit: int = 200, node_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Events with ``seq > after_seq`` in seq order (only node ``node_id``'s when given):
        ``{runId, seq, timestampMs, type, payloadJson}``."""

        def q(c: Connection) -> list[dict[str, Any]]:
            rows = (
                events.event_rows(c, run_id, after_seq, limit)
                if node_id is None
                else events.node_event_rows(c, run_id, node_id, after_seq, limit)
            )
            return [
                {
                    "runId": run_id,
                    "seq": r[0],
                    "timestampMs": r[2],
                    "type": r[1],
                    "payloadJson": r[3],
                }
                for r in rows
            ]

        return self.store.read(q)

    def last_seq(self, run_id: str) -> int:
        """The run's newest event seq, -1 before its first event."""
        return self.store.read(lambda c: events.last_event_seq(c, run_id))

    # -- token usage (issue 19) -------------------------------------------------------------
    async def token_usage(self, run_id: str, limit: int = 10_000) -> list[dict[str, Any]]:
        """``listRunTokenUsage`` items: the run's ``TokenUsageReported`` events in seq order,
        missing fields as ``"unknown"`` (names) or 0 (counts)."""

        def q(c: Connection) -> list[dict[str, Any]]:
            rows = c.execute(
                "SELECT timestamp_ms, payload_json FROM _smithers_events WHERE run_id = ?"
                " AND type = 'TokenUsageReported' ORDER BY seq LIMIT ?",
                (run_id, limit),
            )
            return [usage_item(jsonutil.loads(r[1]), r[0]) for r in rows]

        result: list[dict[str, Any]] = await self.store.aread(q)
        return result


USAGE_COUNTS = (
    "inputTokens",
    "outputTokens",
    "cacheReadTokens",
    "cacheWriteTokens",
    "reasoningTokens",
)


def usage_item(event: Any, timestamp_ms: int) -> dict[str, Any]:
    """One ``listRunTokenUsage`` item (and ``token.usage`` payload) from a stored event."""
    ev = event if isinstance(event, dict) else {}

    def count(name: str) -> int:
        value = ev.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        return 0

    def name(field: str) -> str:
        value = ev.get(field)
        return value if isinstance(value, str) and value else "unknown"

    return {
        "nodeId": name("nodeId"),
        "iteration": count("iteration"),
        "attempt": count("attempt"),
        "model": name("model"),
        "agent": name("agent"),
        **{k: count(k) for k in USAGE_COUNTS},
        "timestampMs": count("timestampMs") or timestamp_ms,
    }
