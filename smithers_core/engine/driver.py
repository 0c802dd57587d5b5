"""The loop that executes one run: read state -> plan -> commit -> start attempts -> repeat.

A :class:`RunDriver` owns one run while it is ``running`` in this process. Each cycle reads the
run's persisted state, renders the workflow, and plans one transaction: first the changes that
follow the tree's shape (:mod:`~smithers_core.engine.mounts`), then what one pass of the
:class:`~smithers_core.engine.walker.Walker` decides. Attempts run concurrently
(:class:`~smithers_core.engine.attempts.Attempts`); each commits its own outcome and wakes the
driver. When nothing can run, the driver parks the run (``waiting-*``), finishes it, or fails
it, and returns. It knows its engine only as a :class:`~smithers_core.engine.host.RunHost`.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import anyio
import anyio.abc
from pydantic import BaseModel

from smithers_core import jsonutil
from smithers_core.clock import now_ms
from smithers_core.engine.attempts import Attempts
from smithers_core.engine.host import RunHost
from smithers_core.engine.mounts import mount_changes, pending_mounts
from smithers_core.engine.render import Key, render
from smithers_core.engine.steps import Step, apply_all
from smithers_core.engine.transitions import error_dict
from smithers_core.engine.walker import Walker
from smithers_core.errors import SmithersError
from smithers_core.store import nodes, runs
from smithers_core.store.base import Tx
from smithers_core.store.snapshot import RunState, load_run_state
from smithers_core.workflow.context import Ctx
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.models import RunAuth

log = logging.getLogger("smithers.engine")

# a run with at most this many node + attempt rows is read inline on the loop (D13)
INLINE_STATE_ROWS = 64


class RunDriver:
    """Executes one run until it parks, finishes, fails, is cancelled or is suspended."""

    def __init__(
        self,
        host: RunHost,
        run_id: str,
        workflow: Workflow,
        input_value: BaseModel,
        auth: RunAuth | None,
        *,
        allow_network: bool = False,
        max_concurrency: int | None = None,
        tool_timeout_ms: int | None = None,
        max_output_bytes: int | None = None,
    ) -> None:
        self.host = host
        self.store = host.store
        self.run_id = run_id
        self.workflow = workflow
        self.input = input_value
        self.auth = auth
        # a run's config may lower or raise the workflow's cap (server config.maxConcurrency,
        # launchRun options.maxConcurrency)
        self.max_concurrency = max_concurrency or workflow.max_concurrency
        self.attempts = Attempts(
            host,
            run_id,
            input_value,
            auth,
            allow_network=allow_network,
            tool_timeout_ms=tool_timeout_ms,
            max_output_bytes=max_output_bytes,
            on_settled=self.poke,
        )
        self._state_rows = 0  # node + attempt rows at the last read (inline or threaded read)
        self._wake = anyio.Event()
        self.cancel_requested = False
        self.shutdown_requested = False
        self.lost = False
        self.done = anyio.Event()
        self.final_status: str | None = None
        self.inbox_seq = -1  # the run's inbox_seq at the last state read
        self._tg: anyio.abc.TaskGroup | None = None

    # -- signals from the engine -----------------------------------------------------------
    def poke(self) -> None:
        """Wake the loop: something changed (an attempt settled, a decision, a signal)."""
        self._wake.set()

    def request_cancel(self) -> None:
        """Cancel the run at the next cycle."""
        self.cancel_requested = True
        self.poke()

    def request_shutdown(self) -> None:
        """Suspend the run (D6: hand it back, never cancel it) at the next cycle."""
        self.shutdown_requested = True
        self.poke()

    def mark_lost(self) -> None:
        """Another process owns the run now: stop without writing."""
        self.lost = True
        self.poke()

    # -- main loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Drive the run until it stops, then tell the host (exactly once)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    await self._loop()
                except Exception as exc:  # an engine bug must not leave the run half-written
                    log.exception("run %s: engine error", self.run_id)
                    await self._stop_inflight("aborted")
                    await self._fail(
                        {"name": type(exc).__name__, "code": "ENGINE_ERROR", "message": str(exc)}
                    )
        finally:
            self.done.set()
            self.host.run_settled(self)

    async def _loop(self) -> None:
        while True:
            if self.lost:
                await self._stop_inflight("lost")
                self.final_status = "lost"
                return
            if self.shutdown_requested:
                await self._suspend()
                return
            if self.cancel_requested:
                await self._cancel()
                return
            self._wake = anyio.Event()
            settled = self.attempts.settled
            st = await self._read_state()
            if settled != self.attempts.settled:
                # An attempt settled while the snapshot was read: the snapshot may predate its
                # outcome while ``inflight`` no longer lists it (the node would look stuck).
                continue
            if st is None:
                self.lost = True
                continue
            run = st.run
            self.inbox_seq = int(run["inbox_seq"])
            if run["runtime_owner_id"] != self.host.owner_id or run["status"] != "running":
                self.lost = True
                continue
            if run["cancel_requested_at_ms"] is not None:
                self.cancel_requested = True
                continue
            if run["pause_requested_at_ms"] is not None:
                # a pause request: start nothing new, let in-flight attempts finish (drain),
                # then park the run as ``paused``
                if self.attempts.inflight:
                    await self._sleep(None)
                    continue
                if await self._pause(int(run["inbox_seq"])):
                    return
                continue
            try:
                step = self._plan(st)
            except SmithersError as exc:
                await self._stop_inflight("aborted")
                await self._fail(error_dict(exc))
                return
            if step.changes or step.starts:
                starts = step.starts
                await self.store.write(functools.partial(apply_all, step.changes))
                assert self._tg is not None
                for spec in starts:
                    self.attempts.launch(self._tg, spec)
                if starts and len(step.changes) - step.mounted == len(starts):
                    # only task starts were written: nothing else can change until a task
                    # settles or something external arrives, so wait instead of re-reading
                    await self._sleep(step.wake_at)
                continue
            if self.attempts.inflight:
                await self._sleep(step.wake_at)
                continue
            if step.fatal:
                await self._fail(failure_error(st, step.fatal))
                return
            for status in ("waiting-approval", "waiting-event", "waiting-timer"):
                if status[len("waiting-") :] in step.waiting:
                    if await self._park(status, step.wake_at, int(run["inbox_seq"])):
                        return
                    break
            else:
                if step.done:
                    await self._finish()
                    return
                if step.wake_at is not None:
                    await self._sleep(step.wake_at)
                    continue
                await self._fail(
                    {
                        "name": "SmithersError",
                        "code": "SCHEDULER_STUCK",
                        "message": "Nothing can run, nothing is waiting, and the run is not done",
                    }
                )
                return

    async def _read_state(self) -> RunState | None:
        """The run's snapshot. A small run is read inline on the loop (D13: a few indexed
        point reads, ~60-150 us, cost less than a thread hop and the GIL convoy it causes
        under load); a large one, or any over a network store, in a worker thread so the loop
        is never blocked for long."""
        if self.store.inline_reads and self._state_rows <= INLINE_STATE_ROWS:
            st = self.store.read(lambda c: load_run_state(c, self.run_id))
        else:
            st = await self.store.aread(lambda c: load_run_state(c, self.run_id))
        if st is not None:
            self._state_rows = len(st.nodes) + sum(len(a) for a in st.attempts.values())
        return st

    async def _sleep(self, wake_at: int | None) -> None:
        if wake_at is None:  # the common case: no cancel scope to enter and leave
            await self._wake.wait()
            return
        with anyio.move_on_after(max(0.0, (wake_at - now_ms()) / 1000)):
            await self._wake.wait()

    # -- planning -------------------------------------------------------------------------
    def _plan(self, st: RunState) -> Step:
        """Render and plan one cycle: the tree-shape changes alone when there are any, else
        one walk's decisions (nothing new at all once a node failed for good)."""
        ctx = Ctx(
            input=self.input,
            run_id=self.run_id,
            auth=self.auth,
            outputs=st.outputs,
            loop_iterations={k: v.iteration + 1 for k, v in st.loops.items()},
        )
        plan = render(self.workflow, ctx, st.loops)
        step = Step()
        now = now_ms()
        inflight = self.attempts.inflight
        for key, infl in list(inflight.items()):
            if key not in plan.leaves and infl.reason is None:
                infl.cancel("unmounted")
        mounted = mount_changes(plan, st, run_id=self.run_id, workflow_name=self.workflow.name)
        if mounted:
            new = pending_mounts(plan, st)
            if new is None:
                step.changes = mounted
                return step  # commit mounts and the frame first, then schedule (upstream order)
            # Only new pending nodes (and the frame): the walk sees them pending in memory,
            # and its decisions commit after the mounts, in the same transaction (same
            # event order, one state read, render and commit fewer per run).
            for key in new:
                st.nodes[key] = {"state": "pending"}
        walker = Walker(
            plan,
            st,
            step,
            now,
            ctx,
            run_id=self.run_id,
            workflow_name=self.workflow.name,
            inflight=inflight,
            running=len(inflight),
            max_concurrency=self.max_concurrency,
            backoff_cap_ms=self.host.options.backoff_cap_ms,
        )
        step.done = walker.walk_plan()
        self.host.wait_models.remember(self.run_id, step.wait_models)
        if step.fatal:
            # Q17: start nothing new (no attempt rows, requests, waits or timers either);
            # in-flight siblings finish, then the run fails.
            step.starts.clear()
            step.changes.clear()
        if mounted:
            step.mounted = len(mounted)
            step.changes[:0] = mounted
        return step

    # -- run outcomes ---------------------------------------------------------------------
    def _owned(self, tx: Tx) -> bool:
        """True while this process still holds the run and it is ``running``."""
        return runs.run_owner(tx.conn, self.run_id) == (self.host.owner_id, "running")

    async def _finish(self) -> None:
        def change(tx: Tx) -> bool:
            if not self._owned(tx):
                return False
            runs.finish_run(tx, self.run_id, "finished")
            return True

        if await self.store.write(change):
            self.final_status = "finished"

    async def _fail(self, error: dict[str, Any]) -> None:
        def change(tx: Tx) -> bool:
            if not self._owned(tx):
                return False
            nodes.cancel_waiting_nodes(tx, self.run_id, "run-failed")
            runs.finish_run(tx, self.run_id, "failed", error)
            return True

        if await self.store.write(change):
            self.final_status = "failed"

    async def _park(self, status: str, wake_at: int | None, inbox_seq: int) -> bool:
        run_id, owner_id = self.run_id, self.host.owner_id
        parked: bool = await self.store.write(
            lambda tx: runs.park_run(tx, run_id, owner_id, status, wake_at, inbox_seq)
        )
        if parked:
            self.final_status = status
        return parked

    async def _pause(self, inbox_seq: int) -> bool:
        run_id, owner_id = self.run_id, self.host.owner_id
        paused: bool = await self.store.write(
            lambda tx: runs.pause_run(tx, run_id, owner_id, inbox_seq)
        )
        if paused:
            self.final_status = "paused"
        return paused

    async def _cancel(self) -> None:
        await self._stop_inflight("aborted")

        def change(tx: Tx) -> bool:
            if not self._owned(tx):
                return False
            nodes.cancel_waiting_nodes(tx, self.run_id, "run-cancelled")
            runs.finish_run(tx, self.run_id, "cancelled")
            return True

        if await self.store.write(change):
            self.final_status = "cancelled"

    async def _suspend(self) -> None:
        await self._stop_inflight("shutdown")
        run_id, owner_id = self.run_id, self.host.owner_id
        await self.store.write(lambda tx: runs.release_run(tx, run_id, owner_id))
        self.final_status = "suspended"

    async def _stop_inflight(self, reason: str) -> None:
        inflight = self.attempts.inflight
        for infl in list(inflight.values()):
            infl.cancel(reason)
        grace = self.host.options.cancel_grace_ms / 1000
        with anyio.move_on_after(grace):
            while inflight:
                self._wake = anyio.Event()
                await self._wake.wait()


def failure_error(st: RunState, fatal: list[Key]) -> dict[str, Any]:
    """The run's error when nodes failed for good: that node's error (with its id and
    iteration in ``details``), or ``TASK_FAILED`` listing each failed node."""
    errors = []
    for key in fatal:
        attempt = st.last_attempt(key)
        err = jsonutil.loads(attempt["error_json"]) if attempt and attempt["error_json"] else None
        errors.append((key, err))
    if len(errors) == 1:
        key, err = errors[0]
        base = dict(err or {"name": "SmithersError", "code": "TASK_FAILED", "message": ""})
        details = dict(base.get("details") or {})
        details.update({"nodeId": key[0], "iteration": key[1]})
        base["details"] = details
        if not base.get("message"):
            base["message"] = f"Task failed: {key[0]}"
        return base
    return {
        "name": "SmithersError",
        "code": "TASK_FAILED",
        "message": "Task(s) failed: " + ", ".join(k[0] for k, _ in errors),
        "details": {"nodes": [{"nodeId": k[0], "iteration": k[1], "error": e} for k, e in errors]},
    }
