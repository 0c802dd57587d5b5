"""The gateway's read models of runs: ``getRun`` (cached once terminal, D13), ``listRuns``,
pending approvals and the hello snapshot, shaped from store rows (SQL stays in the store)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from smithers_core import jsonutil
from smithers_core.engine.transitions import TERMINAL_RUN
from smithers_core.errors import SmithersError
from smithers_core.gateway.registry import WorkflowRegistry
from smithers_core.runtime import Runtime
from smithers_core.store.approvals import pending_approvals
from smithers_core.store.base import CommittedEvent
from smithers_core.store.db import RUN_COLUMNS, camel_row
from smithers_core.store.nodes import node_states
from smithers_core.store.runs import iter_runs

ACTIVE_STATUSES = ("running", "waiting-approval", "waiting-event", "waiting-timer", "paused")
RUN_CACHE_SIZE = 1000


def run_config(row: dict[str, Any]) -> dict[str, Any]:
    """A run row's ``config_json`` (snake or camel row) as a dict; ``{}`` when unreadable."""
    raw = row.get("config_json", row.get("configJson"))
    try:
        value = jsonutil.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class RunViews:
    """Run reads of one gateway, bound to its runtime while it listens."""

    def __init__(self, registry: WorkflowRegistry) -> None:
        self.registry = registry
        self._runtime: Runtime | None = None
        self._cache: OrderedDict[str, list[Any]] = OrderedDict()

    def bind(self, runtime: Runtime | None) -> None:
        """Read from ``runtime`` (None: the gateway stopped; the cache is dropped)."""
        self._runtime = runtime
        self._cache.clear()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise SmithersError("SERVER_ERROR", "The gateway is not running")
        return self._runtime

    def on_events(self, events: list[CommittedEvent]) -> None:
        """The EventHub tap: a run's cached ``getRun`` body is stale once it has new events."""
        for ev in events:
            self._cache.pop(ev.run_id, None)

    # -- rows ------------------------------------------------------------------------------
    def run_row(self, run_id: str) -> dict[str, Any]:
        """The stored run row (snake_case), else ``NOT_FOUND``."""
        row: dict[str, Any] | None = self.runtime.db.run_row(run_id)
        if row is None:
            raise SmithersError("NOT_FOUND", f"Run not found: {run_id}")
        return row

    def enrich(self, row: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        """Add ``workflowKey``, ``system`` and ``startedBy`` to a camelCase run row, and blank
        ``workflowPath``: the gateway names workflows by key and never shows a server path."""
        row["workflowKey"] = self.registry.key_of(
            config, row.get("workflowName"), row.get("workflowPath")
        )
        row["workflowPath"] = None
        system = config.get("gatewaySystem")
        row["system"] = True if system is None else bool(system)
        started_by = config.get("startedBy")
        if isinstance(started_by, dict):
            row["startedBy"] = started_by
        return row

    # -- getRun ------------------------------------------------------------------------------
    def _entry(self, run_id: str) -> list[Any]:
        """``[body, body's JSON or None]`` of ``getRun``; a terminal run's entry is cached
        until an event of that run commits, so its JSON is encoded once."""
        cached = self._cache.get(run_id)
        if cached is not None:
            self._cache.move_to_end(run_id)
            return cached
        run: dict[str, Any] | None = self.runtime.db.get_run(run_id)
        if run is None:
            raise SmithersError("NOT_FOUND", f"Run not found: {run_id}")
        entry: list[Any] = [self.enrich(run, run_config(run)), None]
        if entry[0].get("status") in TERMINAL_RUN:
            self._cache[run_id] = entry
            while len(self._cache) > RUN_CACHE_SIZE:
                self._cache.popitem(last=False)
        return entry

    def run_record(self, run_id: str) -> dict[str, Any]:
        """``getRun``'s body."""
        record: dict[str, Any] = self._entry(run_id)[0]
        return record

    def run_record_json(self, run_id: str) -> str:
        """``getRun``'s body as JSON, encoded once per cached terminal run."""
        entry = self._entry(run_id)
        text: str | None = entry[1]
        if text is None:
            text = entry[1] = jsonutil.dumps(entry[0])
        return text

    # -- lists ---------------------------------------------------------------------------------
    async def query_runs(
        self,
        *,
        limit: int,
        offset: int = 0,
        status: str | None = None,
        statuses: tuple[str, ...] | None = None,
        workflow: str | None = None,
        parent_run_id: str | None = None,
        include_system: bool = False,
    ) -> list[dict[str, Any]]:
        """``listRuns`` rows, newest first, filtered by workflow key and system flag."""
        enrich = self.enrich

        def q(c: Any) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            skipped = 0
            for row in iter_runs(c, status=status, statuses=statuses, parent_run_id=parent_run_id):
                rec = enrich(camel_row(row, RUN_COLUMNS), run_config(row))
                if not include_system and rec["system"]:
                    continue
                if workflow and rec["workflowKey"] != workflow:
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                out.append(rec)
                if len(out) >= limit:
                    break
            return out

        result: list[dict[str, Any]] = await self.runtime.store.aread(q)
        return result

    async def node_states(self, run_id: str) -> list[dict[str, Any]]:
        """``listNodeStates``: every node of the run with its last attempt's times."""
        result: list[dict[str, Any]] = await self.runtime.store.aread(
            lambda c: node_states(c, run_id)
        )
        return result

    async def pending_approvals(
        self, run_id: str | None = None, workflow: str | None = None
    ) -> list[dict[str, Any]]:
        """``listApprovals`` items: approvals requested by live runs whose node still waits."""
        key_of = self.registry.key_of

        def q(c: Any) -> list[dict[str, Any]]:
            out = []
            for r in pending_approvals(c, run_id):
                request = jsonutil.loads(r["request_json"]) or {}
                key = key_of(run_config(r), r["workflow_name"], r["workflow_path"])
                if workflow and key != workflow:
                    continue
                out.append(
                    {
                        "runId": r["run_id"],
                        "workflowKey": key,
                        "nodeId": r["node_id"],
                        "iteration": r["iteration"],
                        "requestTitle": request.get("title") or r["node_id"],
                        "requestSummary": request.get("summary"),
                        "requestedAtMs": r["requested_at_ms"],
                        "approvalMode": request.get("mode") or "gate",
                        "options": request.get("options") or [],
                        "allowedScopes": request.get("allowedScopes") or [],
                        "allowedUsers": request.get("allowedUsers") or [],
                        "autoApprove": request.get("autoApprove"),
                    }
                )
            return out

        result: list[dict[str, Any]] = await self.runtime.store.aread(q)
        return result


__all__ = ["ACTIVE_STATUSES", "RunViews", "run_config"]
