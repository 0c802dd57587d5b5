"""The engine of one host process: starts, resumes, cancels and supervises runs (D6).

One :class:`Engine` per host process. It owns the process's runtime owner id
(``pid:<pid>:<uuid>@<hostname>``), a task group in which run drivers execute, and the
supervisor: a timer wheel resuming parked runs whose timer or wait timeout is due, a sweep that
claims ``running`` runs whose owner is gone, one owner heartbeat per interval, and a poll that
notices cancel requests, approval decisions and signals written by other processes.
Use it as an async context manager; leaving it suspends (never cancels) active runs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc

from smithers_core import jsonutil
from smithers_core.clock import now_ms
from smithers_core.engine import transitions
from smithers_core.engine.driver import RunDriver
from smithers_core.engine.host import SettledRun
from smithers_core.engine.options import EngineOptions
from smithers_core.engine.transitions import PARKED_RUN, TERMINAL_RUN, get_run_row
from smithers_core.engine.wait_models import WaitModels
from smithers_core.errors import SmithersError
from smithers_core.ids import check_run_id
from smithers_core.store import nodes, runs
from smithers_core.store.base import Store, Tx
from smithers_core.store.events import node_event
from smithers_core.store.runs import CancelAttribution
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.models import RunAuth

log = logging.getLogger("smithers.engine")

HOSTNAME = os.environ.get("SMITHERS_REPLICA_ID") or socket.gethostname()
"""The host part of owner ids: processes with the same one see each other's PIDs, so a dead
owner among them is noticed at once; others wait out ``stale_after_ms`` (a replica in its own
container, or one given its own ``$SMITHERS_REPLICA_ID``)."""
WorkflowResolver = Callable[[dict[str, Any]], Workflow | None]


def make_owner_id() -> str:
    return f"pid:{os.getpid()}:{uuid.uuid4()}@{HOSTNAME}"


def owner_is_dead_here(owner: str | None) -> bool:
    """True when ``owner`` names a process on this host that no longer exists."""
    if not owner or not owner.startswith("pid:"):
        return False
    body, _, host = owner.partition("@")
    if host and host != HOSTNAME:
        return False
    try:
        pid = int(body.split(":")[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class Engine:
    """Executes and supervises runs in this process; the
    :class:`~smithers_core.engine.host.RunHost` of its run drivers."""

    def __init__(
        self,
        store: Store,
        *,
        options: EngineOptions | None = None,
        resolver: WorkflowResolver | None = None,
        root_dir: str | None = None,
        allow_network: bool = False,
        supervise: bool = True,
        unconfined_tools: bool = False,
    ) -> None:
        self.store = store
        self.options = options or EngineOptions.from_env()
        self.resolver = resolver
        self.root_dir = root_dir
        self.allow_network = allow_network
        self.supervise = supervise
        self.unconfined_tools = unconfined_tools
        self.owner_id = make_owner_id()
        self.active: dict[str, RunDriver] = {}
        self.wait_models = WaitModels()
        self._tg: anyio.abc.TaskGroup | None = None
        self._stack: AsyncExitStack | None = None
        self._closing = False
        self._inbox: dict[str, int] = {}
        self._resuming: set[str] = set()
        self.on_run_settled: list[Callable[[str, str | None], None]] = []
        self._poll_wake = anyio.Event()
        self._unsubscribe: Callable[[], None] | None = None

    # -- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        self._stack = AsyncExitStack()
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._tg.start_soon(self._heartbeat_loop)
        self._tg.start_soon(self._poll_loop)
        if self.store.notifies_commits:  # another replica's commit: poll the inbox now
            self._unsubscribe = self.store.wake_on_foreign_commit(
                asyncio.get_running_loop(), lambda: self._poll_wake.set()
            )
        if self.supervise:
            self._tg.start_soon(self._timer_loop)
            self._tg.start_soon(self._sweep_loop)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Suspend active runs (D6: shutdown never cancels) and stop the supervisor."""
        if self._closing:
            return
        self._closing = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        drivers = list(self.active.values())
        for driver in drivers:
            driver.request_shutdown()
        with anyio.move_on_after(self.options.cancel_grace_ms / 1000 + 5):
            for driver in drivers:
                await driver.done.wait()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    def run_settled(self, driver: SettledRun) -> None:
        """A driver stopped driving its run: forget it and tell the ``on_run_settled``
        callbacks. Drivers call it once when they stop (``Engine`` is their
        :class:`~smithers_core.engine.host.RunHost`)."""
        if self.active.get(driver.run_id) is driver:
            del self.active[driver.run_id]
        self._inbox.pop(driver.run_id, None)
        if not (driver.final_status or "").startswith("waiting-"):
            self.wait_models.forget(driver.run_id)
        for callback in list(self.on_run_settled):
            try:
                callback(driver.run_id, driver.final_status)
            except Exception:
                log.exception("on_run_settled callback failed")

    def _spawn(self, driver: RunDriver) -> None:
        if self._tg is None or self._closing:
            raise SmithersError("ENGINE_CLOSED", "The engine is not running")
        self.active[driver.run_id] = driver
        self._tg.start_soon(driver.run)

    # -- launching --------------------------------------------------------------------------
    async def launch(
        self,
        workflow: Workflow,
        input: Any = None,
        *,
        run_id: str | None = None,
        auth: RunAuth | None = None,
        config: dict[str, Any] | None = None,
        workflow_path: str | None = None,
        parent_run_id: str | None = None,
        allow_network: bool | None = None,
    ) -> str:
        """Validate the input, insert the run (``RunStarted``) and start executing it."""
        if self._tg is None or self._closing:
            raise SmithersError("ENGINE_CLOSED", "The engine is not running")
        value = workflow.validate_input(input)
        run_id = run_id or str(uuid.uuid4())
        check_run_id(run_id)
        # upstream's configJson keys, null when unset (the limits the engine applies, the tool
        # root), then what the surface adds
        cfg: dict[str, Any] = dict.fromkeys(RUN_LIMIT_KEYS)
        cfg["rootDir"] = self.root_dir
        cfg.update(config or {})
        if auth is not None:
            cfg["auth"] = auth.model_dump(mode="json", by_alias=True)
        network = self.allow_network if allow_network is None else allow_network
        cfg["allowNetwork"] = network
        payload = value.model_dump(mode="json", by_alias=True)
        path = workflow_path or workflow.source_path

        def change(tx: Tx) -> None:
            created = runs.create_run(
                tx,
                run_id=run_id,
                parent_run_id=parent_run_id,
                workflow_name=workflow.name,
                workflow_path=path,
                workflow_hash=workflow.source_hash,
                owner_id=self.owner_id,
                config=cfg,
                input_payload=payload,
            )
            if not created:
                raise SmithersError(
                    "RUN_ALREADY_EXISTS", f"Run already exists: {run_id}", {"runId": run_id}
                )

        await self.store.write(change)
        self._spawn(
            RunDriver(
                self,
                run_id,
                workflow,
                value,
                auth,
                allow_network=network,
                **run_limits(cfg),
            )
        )
        return run_id

    # -- resuming ---------------------------------------------------------------------------
    def _owner_alive(self, row: dict[str, Any], now: int) -> bool:
        owner = row.get("runtime_owner_id")
        hb = row.get("heartbeat_at_ms")
        if not owner or hb is None:
            return False
        if owner == self.owner_id:
            return row["run_id"] in self.active
        if owner_is_dead_here(owner):
            return False
        return now - int(hb) <= self.options.stale_after_ms

    async def resume(self, run_id: str, workflow: Workflow | None = None) -> dict[str, Any]:
        """Resume a parked or orphaned run. Idempotent: answers ``{runId, status}``.

        A terminal run executes nothing; a run another live process owns is left alone.
        """
        row = self.store.read(lambda c: runs.run_row(c, run_id))  # a point read, inline (D13)
        if row is None:
            raise SmithersError("RUN_NOT_FOUND", f"Run not found: {run_id}", {"runId": run_id})
        if row["status"] in TERMINAL_RUN:
            return {"runId": run_id, "status": row["status"], "resumed": False}
        if run_id in self.active or run_id in self._resuming:
            return {"runId": run_id, "status": "running", "resumed": False}
        if row["status"] == "running" and self._owner_alive(row, now_ms()):
            return {"runId": run_id, "status": "running", "resumed": False}
        if workflow is None:
            workflow = self.resolver(row) if self.resolver is not None else None
            if workflow is None:
                raise SmithersError(
                    "WORKFLOW_NOT_FOUND",
                    f"This host cannot load the workflow of run {run_id}",
                    {"runId": run_id, "workflowPath": row.get("workflow_path")},
                )
        self._resuming.add(run_id)
        try:
            return await self._claim_and_start(run_id, workflow)
        finally:
            self._resuming.discard(run_id)

    async def _claim_and_start(self, run_id: str, workflow: Workflow) -> dict[str, Any]:
        stale = self.options.stale_after_ms
        owner_id = self.owner_id

        def claim(tx: Tx) -> dict[str, Any]:
            row = get_run_row(tx, run_id)
            status = row["status"]
            if status in TERMINAL_RUN:
                return {"claimed": False, "status": status}
            if status == "running":
                owner, hb = row["runtime_owner_id"], row["heartbeat_at_ms"]
                orphaned = (
                    owner is None
                    or hb is None
                    or tx.now - int(hb) > stale
                    or owner_is_dead_here(owner)
                    or (owner == owner_id and run_id not in self.active)
                )
                if not orphaned:
                    return {"claimed": False, "status": status}
            elif status not in PARKED_RUN:  # waiting-* or paused
                return {"claimed": False, "status": status}
            runs.claim_run(tx, run_id, owner_id)
            for a in nodes.attempts_in_states(tx.conn, run_id, ("in-progress",)):
                key = (a["node_id"], a["iteration"])
                nodes.cancel_attempt(tx, run_id, key, int(a["attempt"]), "abandoned")
                nodes.set_node(tx, run_id, key[0], key[1], "pending")
                tx.emit(
                    run_id,
                    "NodeCancelled",
                    **node_event(key, attempt=a["attempt"], reason="abandoned"),
                )
            previous = row["workflow_hash"]
            if previous and workflow.source_hash and previous != workflow.source_hash:
                runs.reload_workflow(tx, run_id, previous, workflow.source_hash)
            tx.emit(run_id, "RunStarted")
            return {
                "claimed": True,
                "status": "running",
                "config": jsonutil.loads(row["config_json"]) or {},
                "input": runs.run_input(tx.conn, run_id),
            }

        if self._tg is None or self._closing:
            raise SmithersError("ENGINE_CLOSED", "The engine is not running")
        result = await self.store.write(claim)
        if not result["claimed"]:
            return {"runId": run_id, "status": result["status"], "resumed": False}
        config = result["config"]
        try:
            value = workflow.validate_input(result["input"])
        except SmithersError as exc:
            error = {"name": "SmithersError", **exc.to_dict()}
            await self.store.write(lambda tx: runs.finish_run(tx, run_id, "failed", error))
            return {"runId": run_id, "status": "failed", "resumed": False}
        auth = RunAuth.model_validate(config["auth"]) if config.get("auth") else None
        network = bool(config.get("allowNetwork", self.allow_network))
        self._spawn(
            RunDriver(
                self,
                run_id,
                workflow,
                value,
                auth,
                allow_network=network,
                **run_limits(config),
            )
        )
        return {"runId": run_id, "status": "running", "resumed": True}

    # -- cancel -----------------------------------------------------------------------------
    async def cancel(self, run_id: str, by: CancelAttribution | None = None) -> dict[str, Any]:
        """Cancel a run in any non-terminal status, recording who asked (``by``).

        A run executing somewhere is asked to stop: ``status: "cancelling"``, ``terminalStatus``
        None, ``won`` True for the first request only. Any other run (parked, or ``running``
        with a dead or stale owner, which ``repaired`` reports) is finalised here and now:
        ``status`` and ``terminalStatus`` ``"cancelled"``, ``won`` True.
        """
        driver = self.active.get(run_id)
        stale = self.options.stale_after_ms
        attribution = by or CancelAttribution()

        def change(tx: Tx) -> dict[str, Any]:
            row = get_run_row(tx, run_id)
            status = row["status"]
            if status in TERMINAL_RUN:
                raise SmithersError(
                    "RUN_NOT_ACTIVE",
                    f"Run {run_id} is {status}",
                    {"runId": run_id, "status": status},
                )
            owner, hb = row["runtime_owner_id"], row["heartbeat_at_ms"]
            live = (
                status == "running"
                and owner is not None
                and hb is not None
                and (
                    (owner == self.owner_id and driver is not None)
                    or (
                        owner != self.owner_id
                        and tx.now - int(hb) <= stale
                        and not owner_is_dead_here(owner)
                    )
                )
            )
            won = runs.request_cancel(tx, run_id, attribution)
            if live:
                return {"status": "cancelling", "won": won, "terminalStatus": None}
            nodes.cancel_waiting_nodes(tx, run_id, "run-cancelled")
            runs.finish_run(tx, run_id, "cancelled")
            return {
                "status": "cancelled",
                "won": True,
                "terminalStatus": "cancelled",
                "repaired": status == "running",
            }

        result = await self.store.write(change)
        if result["status"] == "cancelling" and driver is not None:
            driver.request_cancel()
        return {"runId": run_id, "repaired": False, **result}

    # -- pause and retry (issue 19; docs/engine.md "Pause and retry") -----------------------
    async def pause(self, run_id: str) -> dict[str, Any]:
        """Ask a ``running`` run to pause (durable; drained, then parked ``paused``)."""
        await self.store.write(lambda tx: transitions.request_pause(tx, run_id))
        self.notify(run_id)
        return {"runId": run_id, "status": "pausing"}

    def executing(self, row: dict[str, Any]) -> bool:
        """True while a process drives the run (this one, or a live owner elsewhere)."""
        if row["run_id"] in self.active or row["run_id"] in self._resuming:
            return True
        return row["status"] == "running" and self._owner_alive(row, now_ms())

    async def retry_task(
        self,
        run_id: str,
        key: tuple[str, int],
        *,
        reset_dependents: bool = True,
        workflow: Workflow | None = None,
        settle_timeout_s: float = 1.0,
    ) -> list[tuple[str, int]]:
        """Reset node ``key`` (and its dependents) and resume the run; the reset keys.
        Waits up to ``settle_timeout_s`` for a run driven here to stop, else ``RUN_ACTIVE``."""
        driver = self.active.get(run_id)
        if driver is not None:
            with anyio.move_on_after(settle_timeout_s):
                await driver.done.wait()
        reset = functools.partial(transitions.retry_task, executing=self.executing)
        keys: list[tuple[str, int]] = await self.store.write(
            lambda tx: reset(tx, run_id, key, reset_dependents)
        )
        await self.resume(run_id, workflow)
        return keys

    # -- rewind (issue 19): stop a run here and keep it stopped ------------------------------
    async def hold(self, run_id: str, timeout_s: float) -> bool:
        """Keep this engine from resuming ``run_id`` until :meth:`unhold`, and suspend it if it
        executes here (in-flight attempts cancelled, nodes back to ``pending``); False when
        its driver did not stop within ``timeout_s``. Always pair with :meth:`unhold`."""
        self._resuming.add(run_id)
        driver = self.active.get(run_id)
        if driver is None:
            return True
        driver.request_shutdown()
        with anyio.move_on_after(timeout_s):
            await driver.done.wait()
        return driver.done.is_set()

    def unhold(self, run_id: str) -> None:
        """End :meth:`hold`: the engine may resume ``run_id`` again."""
        self._resuming.discard(run_id)

    # -- waiting for runs (CLI, tests) ------------------------------------------------------
    async def wait_settled(self, run_id: str) -> str | None:
        """Wait until this process stops driving ``run_id``; returns its final status."""
        driver = self.active.get(run_id)
        if driver is None:
            return None
        await driver.done.wait()
        return driver.final_status

    def notify(self, run_id: str) -> None:
        """Something changed for ``run_id`` (a decision, a signal): wake its driver."""
        driver = self.active.get(run_id)
        if driver is not None:
            driver.poke()

    # -- background loops -------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        interval = self.options.heartbeat_interval_ms / 1000
        while True:
            await anyio.sleep(interval)
            if not self.active:
                continue
            try:
                await self.store.write(
                    functools.partial(runs.heartbeat_runs, owner_id=self.owner_id)
                )
            except Exception:
                log.exception("owner heartbeat failed")

    async def _poll_loop(self) -> None:
        interval = self.options.cancel_poll_ms / 1000
        while True:
            with anyio.move_on_after(interval):
                await self._poll_wake.wait()
            self._poll_wake = anyio.Event()
            if not self.active:
                continue
            owner = self.owner_id
            try:
                rows = await self.store.aread(functools.partial(runs.owned_runs, owner_id=owner))
            except Exception:
                log.exception("cancel poll failed")
                continue
            seen = {r[0]: r for r in rows}
            for run_id, driver in list(self.active.items()):
                row = seen.get(run_id)
                if row is None:
                    continue
                if row[1] is not None:
                    driver.request_cancel()
                elif self._inbox.get(run_id) != row[2]:
                    # first sight: poke only if the driver has not read this inbox yet
                    if run_id in self._inbox or driver.inbox_seq != row[2]:
                        driver.poke()
                    self._inbox[run_id] = row[2]

    async def _timer_loop(self) -> None:
        interval = self.options.timer_tick_ms / 1000
        while True:
            await anyio.sleep(interval)
            try:
                run_ids = await self.store.aread(lambda c: runs.due_run_ids(c, now_ms()))
            except Exception:
                log.exception("timer sweep failed")
                continue
            for run_id in run_ids:
                await self._try_resume(run_id)

    async def _sweep_loop(self) -> None:
        while True:
            await self.sweep()
            await anyio.sleep(self.options.sweep_ms / 1000)

    async def sweep(self) -> int:
        """Claim ``running`` runs whose owner is gone and whose workflow this host can load."""
        stale_before = now_ms() - self.options.stale_after_ms
        try:
            rows = await self.store.aread(
                lambda c: runs.stale_running_runs(c, stale_before, HOSTNAME)
            )
        except Exception:
            log.exception("stale-run sweep failed")
            return 0
        resumed = 0
        for run_id, owner, hb in rows:
            if run_id in self.active:
                continue
            orphaned = owner is None or hb is None or hb < stale_before or owner_is_dead_here(owner)
            if orphaned and await self._try_resume(run_id):
                resumed += 1
        return resumed

    async def _try_resume(self, run_id: str) -> bool:
        if self._closing or run_id in self.active or run_id in self._resuming:
            return False
        try:
            result = await self.resume(run_id)
        except SmithersError as exc:
            if exc.code not in ("WORKFLOW_NOT_FOUND", "RUN_NOT_FOUND"):
                log.warning("could not resume run %s: %s", run_id, exc.message)
            return False
        except Exception:
            log.exception("could not resume run %s", run_id)
            return False
        return bool(result.get("resumed"))

    def request_resume(self, run_id: str) -> None:
        """Resume ``run_id`` soon, in the background (after a decision or a signal)."""
        if self._tg is None or self._closing:
            return
        self._tg.start_soon(self._try_resume, run_id)

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Run a host's helper ``fn(*args)`` until the engine closes (then it is cancelled);
        False, starting nothing, when the engine is not running."""
        if self._tg is None or self._closing:
            return False
        self._tg.start_soon(fn, *args)
        return True


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return None


RUN_LIMIT_KEYS = ("maxConcurrency", "maxOutputBytes", "toolTimeoutMs")
"""The limits a run's ``configJson`` carries (null when unset): see :func:`run_limits`."""


def run_limits(config: dict[str, Any]) -> dict[str, int | None]:
    """The limits a run's config sets for its driver: ``maxConcurrency`` (nodes at once) and
    the tool limits ``toolTimeoutMs`` / ``maxOutputBytes`` (``launchRun`` options)."""
    return {
        "max_concurrency": _positive_int(config.get("maxConcurrency")),
        "tool_timeout_ms": _positive_int(config.get("toolTimeoutMs")),
        "max_output_bytes": _positive_int(config.get("maxOutputBytes")),
    }
