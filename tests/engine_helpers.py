"""Shared fixtures for the engine tests: a real SQLite store, an Engine with small time
constants, a RunService, and read helpers that assert what a user can see.

Nothing here sleeps for a fixed time: waiting is either an awaited event (a driver settling,
reported by ``Engine.on_run_settled``) or a bounded poll (:func:`wait_for`, every 10 ms with a
hard deadline).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from smithers_core import jsonutil
from smithers_core.engine.engine import Engine
from smithers_core.engine.options import EngineOptions
from smithers_core.service import RunService
from smithers_core.store import Store
from smithers_core.store.db import SmithersDb
from smithers_core.workflow.definition import Workflow
from tests import stores

REPO_ROOT = Path(__file__).resolve().parent.parent

FAST = {
    "timer_tick_ms": 20,
    "cancel_poll_ms": 20,
    "heartbeat_interval_ms": 50,
    "sweep_ms": 200,
    "task_heartbeat_throttle_ms": 50,
    "cancel_grace_ms": 2_000,
}


def engine_options(**overrides: int) -> EngineOptions:
    """Small time constants; the process environment is ignored so tests are hermetic."""
    return EngineOptions.from_env(environ={}, **{**FAST, **overrides})


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 5.0, message: str | None = None
) -> Any:
    """Poll ``predicate`` (sync or async) every 10 ms until truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        await anyio.sleep(0.01)


def open_store(tmp_path: Path, name: str = "smithers.db") -> Store:
    """The test's store called ``name`` (SQLite or PostgreSQL: :mod:`tests.stores`)."""
    return stores.open_store(tmp_path, name)


class Harness:
    """An engine over a real SQLite file, with a resolver over the workflows it has seen.

    ``async with Harness(tmp_path) as h:`` opens the store (unless one is given), starts the
    engine and closes both on exit (the store only if the harness opened it).
    """

    def __init__(
        self,
        tmp_path: Path,
        *workflows: Workflow,
        store: Store | None = None,
        resolver: Callable[[dict[str, Any]], Workflow | None] | None = None,
        use_registry: bool = True,
        supervise: bool = True,
        **options: int,
    ) -> None:
        self.tmp_path = tmp_path
        self.workflows: dict[str, Workflow] = {wf.name: wf for wf in workflows}
        self._own_store = store is None
        self.store = store
        self._resolver = resolver
        self._use_registry = use_registry
        self.supervise = supervise
        self.options = engine_options(**options)
        self.settled: dict[str, list[str | None]] = {}
        self._consumed: dict[str, int] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def resolve(self, row: dict[str, Any]) -> Workflow | None:
        if self._resolver is not None:
            return self._resolver(row)
        if not self._use_registry:
            return None
        return self.workflows.get(row["workflow_name"])

    async def __aenter__(self) -> Harness:
        if self.store is None:
            self.store = open_store(self.tmp_path)
        self.engine = Engine(
            self.store, options=self.options, resolver=self.resolve, supervise=self.supervise
        )
        self.engine.on_run_settled.append(self._on_settled)
        await self.engine.__aenter__()
        self.svc = RunService(self.engine)
        self.db: SmithersDb = self.svc.db
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.engine.__aexit__(*exc)
        finally:
            if self._own_store and self.store is not None:
                self.store.close()

    def _on_settled(self, run_id: str, status: str | None) -> None:
        self.settled.setdefault(run_id, []).append(status)

    # -- driving ------------------------------------------------------------------------------
    async def launch(self, wf: Workflow, input: Any = None, **kw: Any) -> str:
        self.workflows.setdefault(wf.name, wf)
        result = await self.svc.launch(wf, input, **kw)
        run_id: str = result["runId"]
        return run_id

    async def settle(self, run_id: str, timeout: float = 5.0) -> str | None:
        """The final status of the next driver of ``run_id`` to stop in this engine."""
        index = self._consumed.get(run_id, 0)
        await wait_for(
            lambda: len(self.settled.get(run_id, ())) > index,
            timeout,
            f"run {run_id} to settle (#{index + 1})",
        )
        self._consumed[run_id] = index + 1
        return self.settled[run_id][index]

    async def start(self, wf: Workflow, input: Any = None, **kw: Any) -> tuple[str, str | None]:
        run_id = await self.launch(wf, input, **kw)
        return run_id, await self.settle(run_id)

    # -- reading ------------------------------------------------------------------------------
    def run(self, run_id: str) -> dict[str, Any]:
        run = self.db.get_run(run_id)
        assert run is not None, run_id
        return run

    def row(self, run_id: str) -> dict[str, Any]:
        row = self.db.run_row(run_id)
        assert row is not None, run_id
        return row

    def status(self, run_id: str) -> str:
        return str(self.row(run_id)["status"])

    def error(self, run_id: str) -> Any:
        return jsonutil.loads(self.row(run_id)["error_json"])

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """Every persisted event (payload parsed); asserts seqs are 0..n-1 without gaps."""
        rows = self.db.list_events(run_id, -1, 1_000_000)
        seqs = [r["seq"] for r in rows]
        assert seqs == list(range(len(rows))), f"seqs not contiguous from 0: {seqs}"
        out = []
        for r in rows:
            payload = jsonutil.loads(r["payloadJson"])
            assert payload["type"] == r["type"]
            assert payload["runId"] == run_id
            out.append({"seq": r["seq"], **payload})
        return out

    def types(self, run_id: str) -> list[str]:
        return [e["type"] for e in self.events(run_id)]

    def find(self, run_id: str, type: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events(run_id)
            if e["type"] == type and all(e.get(k) == v for k, v in match.items())
        ]

    def node_types(self, run_id: str, node_id: str) -> list[str]:
        """Event types that name ``node_id`` (any iteration), in order."""
        return [e["type"] for e in self.events(run_id) if e.get("nodeId") == node_id]

    def nodes(self, run_id: str) -> dict[Any, str]:
        """``{node_id: state}`` for iteration 0 and ``{(node_id, i): state}`` for i > 0."""
        out: dict[Any, str] = {}
        for n in self.db.list_node_states(run_id):
            key = n["nodeId"] if n["iteration"] == 0 else (n["nodeId"], n["iteration"])
            out[key] = n["state"]
        return out

    def output(self, run_id: str, node_id: str, iteration: int = 0) -> Any:
        return self.db.get_output(run_id, node_id, iteration)

    def has_output(self, run_id: str, node_id: str, iteration: int = 0) -> bool:
        assert self.store is not None
        return bool(
            self.store.read(
                lambda c: c.execute(
                    "SELECT 1 FROM _smithers_outputs WHERE run_id = ? AND node_id = ?"
                    " AND iteration = ?",
                    (run_id, node_id, iteration),
                ).fetchone()
            )
        )

    def attempts(self, run_id: str, node_id: str, iteration: int = 0) -> list[dict[str, Any]]:
        """Attempts of one node, oldest first."""
        rows = self.db.list_attempts(run_id, node_id, iteration)
        return sorted(rows, key=lambda a: a["attempt"])


def contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(len(seqs)))
