"""The loop that executes one run: render -> frame -> schedule -> execute -> persist.

A :class:`RunDriver` owns one run while it is ``running`` in this process. Each cycle reads the
run's persisted state, renders the workflow, and computes one transaction: new node rows,
the frame (when its hash changed), approval requests and decisions, signal consumption,
timers, loop progress and task starts. Tasks then run concurrently; each attempt commits its
own outcome and wakes the driver. When nothing can run, the driver parks the run
(``waiting-*``), finishes it, or fails it, and returns.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ValidationError

from smithers_core import jsonutil
from smithers_core.clock import now_ms
from smithers_core.engine.render import (
    Key,
    PLeaf,
    PLoop,
    PNode,
    PPar,
    PSeq,
    RenderPlan,
    call_render_code,
    render,
)
from smithers_core.engine.state import RunState, load_run_state
from smithers_core.engine.transitions import (
    cancel_attempt,
    cancel_waiting_nodes,
    error_dict,
    finish_run,
    node_event,
    set_node,
    write_output,
)
from smithers_core.errors import SmithersError
from smithers_core.store.sqlite import Tx
from smithers_core.workflow.context import Ctx, TaskContext
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.durations import iso_from_ms
from smithers_core.workflow.models import ApprovalDecision, Ranking, RunAuth, Selection
from smithers_core.workflow.nodes import Approval, Task, Timer, WaitSignal

if TYPE_CHECKING:
    from smithers_core.engine.engine import Engine

log = logging.getLogger("smithers.engine")

Change = Callable[[Tx], None]


@dataclass(slots=True)
class Inflight:
    key: Key
    attempt: int
    scope: anyio.CancelScope
    tctx: TaskContext
    reason: str | None = None


@dataclass(slots=True)
class StartSpec:
    pleaf: PLeaf
    attempt: int
    deps: dict[str, Any]
    last_heartbeat: Any


@dataclass(slots=True)
class Step:
    changes: list[Change] = field(default_factory=list)
    starts: list[StartSpec] = field(default_factory=list)
    wake_at: int | None = None
    fatal: list[Key] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)
    done: bool = False

    def wake(self, at: int) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)


INLINE_STATE_ROWS = 64


def _apply_all(changes: list[Change], tx: Tx) -> None:
    for change in changes:
        change(tx)


def backoff_delay(task: Task, failures: int, cap_ms: int) -> int:
    if failures <= 0:
        return 0
    base = task.backoff_ms
    if task.backoff == "fixed":
        delay = base
    elif task.backoff == "linear":
        delay = base * failures
    else:
        delay = base * (2 ** min(failures - 1, 30))
    return int(min(delay, cap_ms))


def _render_predicate(fn: Callable[[Ctx], Any], ctx: Ctx, what: str) -> bool:
    """Evaluate render-time user code (a loop's ``until``, an auto-approve ``condition``)."""
    return bool(call_render_code(fn, ctx, what))


def _model_name(model: type[BaseModel] | None) -> str:
    return model.__name__ if model is not None else ""


def _dump_output(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return value


class RunDriver:
    """Executes one run until it parks, finishes, fails, is cancelled or is suspended."""

    def __init__(
        self,
        engine: Engine,
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
        self.engine = engine
        self.store = engine.store
        self.run_id = run_id
        self.workflow = workflow
        self.input = input_value
        self.auth = auth
        self.allow_network = allow_network
        self.tool_timeout_ms = tool_timeout_ms
        self.max_output_bytes = max_output_bytes
        # a run's config may lower or raise the workflow's cap (server config.maxConcurrency,
        # launchRun options.maxConcurrency)
        self.max_concurrency = max_concurrency or workflow.max_concurrency
        self.inflight: dict[Key, Inflight] = {}
        self._state_rows = 0  # node + attempt rows at the last read (inline or threaded read)
        self._wake = anyio.Event()
        self.cancel_requested = False
        self.shutdown_requested = False
        self.lost = False
        self.done = anyio.Event()
        self.final_status: str | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        # bumped whenever an attempt settles (leaves ``inflight``); see ``_loop``
        self._settled_attempts = 0

    # -- signals from the engine -----------------------------------------------------------
    def poke(self) -> None:
        self._wake.set()

    def request_cancel(self) -> None:
        self.cancel_requested = True
        self.poke()

    def request_shutdown(self) -> None:
        self.shutdown_requested = True
        self.poke()

    def mark_lost(self) -> None:
        self.lost = True
        self.poke()

    # -- main loop ----------------------------------------------------------------------------
    async def run(self) -> None:
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
            self.engine._driver_done(self)

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
            settled = self._settled_attempts
            st = await self._read_state()
            if settled != self._settled_attempts:
                # An attempt settled while the snapshot was read: the snapshot may predate its
                # outcome while ``inflight`` no longer lists it (the node would look stuck).
                continue
            if st is None:
                self.lost = True
                continue
            run = st.run
            if run["runtime_owner_id"] != self.engine.owner_id or run["status"] != "running":
                self.lost = True
                continue
            if run["cancel_requested_at_ms"] is not None:
                self.cancel_requested = True
                continue
            try:
                step = self._plan(st)
            except SmithersError as exc:
                await self._stop_inflight("aborted")
                await self._fail(error_dict(exc))
                return
            if step.changes or step.starts:
                starts = step.starts
                await self.store.write(functools.partial(_apply_all, step.changes))
                assert self._tg is not None
                for spec in starts:
                    self._launch_attempt(spec)
                if starts and len(step.changes) == len(starts):
                    # only task starts were written: nothing else can change until a task
                    # settles or something external arrives, so wait instead of re-reading
                    await self._sleep(step.wake_at)
                continue
            if self.inflight:
                await self._sleep(step.wake_at)
                continue
            if step.fatal:
                await self._fail(self._failure_error(st, step.fatal))
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
        under load); a large one in a worker thread so the loop is never blocked for long."""
        if self._state_rows <= INLINE_STATE_ROWS:
            st = self.store.read(lambda c: load_run_state(c, self.run_id))
        else:
            st = await self.store.aread(lambda c: load_run_state(c, self.run_id))
        if st is not None:
            self._state_rows = len(st.nodes) + sum(len(a) for a in st.attempts.values())
        return st

    async def _sleep(self, wake_at: int | None) -> None:
        timeout = math.inf if wake_at is None else max(0.0, (wake_at - now_ms()) / 1000)
        with anyio.move_on_after(timeout):
            await self._wake.wait()

    # -- planning -------------------------------------------------------------------------
    def _plan(self, st: RunState) -> Step:
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
        self._unmount(plan)
        self._unmount_waiting(plan, st, step)
        self._mount(plan, st, step)
        self._mount_loops(plan, st, step)
        if plan.frame_hash != st.last_frame_hash:
            self._frame(plan, st, step)
        if step.changes:
            return step  # commit mounts and the frame first, then schedule (upstream order)
        walker = _Walker(self, plan, st, step, now, ctx)
        step.done = walker.walk(plan.root) if plan.root is not None else True
        walker.resolve_waits()
        if step.fatal:
            # Q17: start nothing new (no attempt rows, requests, waits or timers either);
            # in-flight siblings finish, then the run fails.
            step.starts.clear()
            step.changes.clear()
        return step

    def _unmount(self, plan: RenderPlan) -> None:
        for key, infl in list(self.inflight.items()):
            if key not in plan.leaves and infl.reason is None:
                self._cancel_attempt(infl, "unmounted")

    def _unmount_waiting(self, plan: RenderPlan, st: RunState, step: Step) -> None:
        """Withdraw approvals, waits and timers that left the tree (``reason: unmounted``).

        Without this a finished run would keep a ``requested`` approval (listed as pending)
        and nodes counted as ``waiting-*``. A node mounted again is asked or started anew.
        """
        gone = [
            key
            for key, node in st.nodes.items()
            if key not in plan.leaves
            and node["state"] in ("waiting-approval", "waiting-event", "waiting-timer")
        ]
        if not gone:
            return
        run_id = self.run_id

        def change(tx: Tx) -> None:
            for key in sorted(gone):
                where = (run_id, key[0], key[1])
                tx.execute(
                    "DELETE FROM _smithers_approvals WHERE run_id = ? AND node_id = ?"
                    " AND iteration = ? AND status = 'requested'",
                    where,
                )
                attempt: int | None = None
                for a in tx.all(
                    "SELECT attempt, state FROM _smithers_attempts WHERE run_id = ?"
                    " AND node_id = ? AND iteration = ?"
                    " AND state IN ('waiting-event', 'waiting-timer')",
                    where,
                ):
                    attempt = int(a["attempt"])
                    cancel_attempt(tx, run_id, key, attempt, "unmounted")
                    if a["state"] == "waiting-timer":
                        tx.emit(run_id, "TimerCancelled", timerId=key[0], **node_event(key))
                set_node(tx, run_id, key[0], key[1], "cancelled")
                fields: dict[str, Any] = {"reason": "unmounted"}
                if attempt is not None:
                    fields["attempt"] = attempt
                tx.emit(run_id, "NodeCancelled", **node_event(key, **fields))

        step.changes.append(change)

    def _mount(self, plan: RenderPlan, st: RunState, step: Step) -> None:
        new = [p for key, p in plan.leaves.items() if key not in st.nodes]
        if not new:
            return
        new.sort(key=lambda p: p.ordinal)
        run_id = self.run_id

        def change(tx: Tx) -> None:
            for p in new:
                leaf = p.leaf
                skip = isinstance(leaf, Task) and bool(leaf.skip_if)
                set_node(
                    tx,
                    run_id,
                    p.key[0],
                    p.key[1],
                    "skipped" if skip else "pending",
                    output_table=_model_name(leaf.output_model),
                    label=leaf.label,
                )
                if skip:
                    tx.emit(run_id, "NodeSkipped", **node_event(p.key))
                else:
                    tx.emit(run_id, "NodePending", **node_event(p.key))

        step.changes.append(change)

    def _mount_loops(self, plan: RenderPlan, st: RunState, step: Step) -> None:
        """Record iteration 0 of newly mounted loops, so ``ctx.iteration_count(loop)`` counts
        the started iteration (1, not 0) while it runs and when ``until`` is evaluated."""
        new = [loop_id for loop_id in plan.loops if loop_id not in st.loops]
        if not new:
            return
        run_id = self.run_id

        def change(tx: Tx) -> None:
            for loop_id in new:
                tx.execute(
                    "INSERT INTO _smithers_ralph (run_id, ralph_id, iteration, done,"
                    " updated_at_ms) VALUES (?, ?, 0, 0, ?)"
                    " ON CONFLICT(run_id, ralph_id) DO NOTHING",
                    (run_id, loop_id, tx.now),
                )

        step.changes.append(change)

    def _frame(self, plan: RenderPlan, st: RunState, step: Step) -> None:
        run_id = self.run_id
        name = self.workflow.name

        def change(tx: Tx) -> None:
            row = tx.one(
                "SELECT COALESCE(MAX(frame_no), 0) FROM _smithers_frames WHERE run_id = ?",
                (run_id,),
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
                    plan.frame_json,
                    plan.frame_hash,
                    jsonutil.dumps(plan.mounted),
                    jsonutil.dumps(plan.task_index),
                ),
            )
            tx.execute(
                "UPDATE _smithers_runs SET workflow_name = ? WHERE run_id = ?", (name, run_id)
            )
            tx.emit(run_id, "FrameCommitted", frameNo=frame_no, xmlHash=plan.frame_hash)

        step.changes.append(change)

    def _failure_error(self, st: RunState, fatal: list[Key]) -> dict[str, Any]:
        errors = []
        for key in fatal:
            attempt = st.last_attempt(key)
            err = (
                jsonutil.loads(attempt["error_json"]) if attempt and attempt["error_json"] else None
            )
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
            "details": {
                "nodes": [{"nodeId": k[0], "iteration": k[1], "error": e} for k, e in errors]
            },
        }

    # -- run outcomes ---------------------------------------------------------------------
    def _owned(self, tx: Tx) -> bool:
        row = tx.one(
            "SELECT runtime_owner_id, status FROM _smithers_runs WHERE run_id = ?", (self.run_id,)
        )
        return row is not None and row[0] == self.engine.owner_id and row[1] == "running"

    async def _finish(self) -> None:
        def change(tx: Tx) -> bool:
            if not self._owned(tx):
                return False
            finish_run(tx, self.run_id, "finished")
            return True

        if await self.store.write(change):
            self.final_status = "finished"

    async def _fail(self, error: dict[str, Any]) -> None:
        def change(tx: Tx) -> bool:
            if not self._owned(tx):
                return False
            cancel_waiting_nodes(tx, self.run_id, "run-failed")
            finish_run(tx, self.run_id, "failed", error)
            return True

        if await self.store.write(change):
            self.final_status = "failed"

    async def _park(self, status: str, wake_at: int | None, inbox_seq: int) -> bool:
        def change(tx: Tx) -> bool:
            cur = tx.execute(
                "UPDATE _smithers_runs SET status = ?, heartbeat_at_ms = NULL,"
                " runtime_owner_id = NULL, wake_at_ms = ?, cancel_requested_at_ms = NULL"
                " WHERE run_id = ? AND runtime_owner_id = ? AND status = 'running'"
                " AND inbox_seq = ? AND cancel_requested_at_ms IS NULL",
                (status, wake_at, self.run_id, self.engine.owner_id, inbox_seq),
            )
            if cur.rowcount != 1:
                return False
            tx.emit(self.run_id, "RunStatusChanged", status=status)
            return True

        if await self.store.write(change):
            self.final_status = status
            return True
        return False

    async def _cancel(self) -> None:
        await self._stop_inflight("aborted")

        def change(tx: Tx) -> bool:
            if not self._owned(tx):
                return False
            cancel_waiting_nodes(tx, self.run_id, "run-cancelled")
            finish_run(tx, self.run_id, "cancelled")
            return True

        if await self.store.write(change):
            self.final_status = "cancelled"

    async def _suspend(self) -> None:
        await self._stop_inflight("shutdown")

        def change(tx: Tx) -> None:
            tx.execute(
                "UPDATE _smithers_runs SET runtime_owner_id = NULL, heartbeat_at_ms = NULL"
                " WHERE run_id = ? AND runtime_owner_id = ? AND status = 'running'",
                (self.run_id, self.engine.owner_id),
            )

        await self.store.write(change)
        self.final_status = "suspended"

    async def _stop_inflight(self, reason: str) -> None:
        for infl in list(self.inflight.values()):
            self._cancel_attempt(infl, reason)
        grace = self.engine.options.cancel_grace_ms / 1000
        with anyio.move_on_after(grace):
            while self.inflight:
                self._wake = anyio.Event()
                await self._wake.wait()

    # -- attempts -------------------------------------------------------------------------
    def _cancel_attempt(self, infl: Inflight, reason: str) -> None:
        infl.reason = reason
        infl.tctx.mark_cancelled()
        infl.scope.cancel()

    def _launch_attempt(self, spec: StartSpec) -> None:
        leaf = spec.pleaf.leaf
        assert isinstance(leaf, Task) and self._tg is not None
        key = spec.pleaf.key
        hb = _HeartbeatSink(self, key, spec.attempt)
        tctx = TaskContext(
            input=self.input,
            run_id=self.run_id,
            node_id=key[0],
            iteration=key[1],
            attempt=spec.attempt,
            auth=self.auth,
            last_heartbeat=spec.last_heartbeat,
            allow_network=self.allow_network,
            tool_timeout_ms=self.tool_timeout_ms,
            max_output_bytes=self.max_output_bytes,
            on_heartbeat=hb.heartbeat,
            on_log=hb.log,
            root_dir=self.engine.root_dir,
        )
        infl = Inflight(key, spec.attempt, anyio.CancelScope(), tctx)
        self.inflight[key] = infl
        self._tg.start_soon(self._attempt, spec, infl, hb)

    async def _attempt(self, spec: StartSpec, infl: Inflight, hb: _HeartbeatSink) -> None:
        leaf = spec.pleaf.leaf
        assert isinstance(leaf, Task)
        outcome: tuple[str, Any] = ("cancel", None)
        timed_out = {"heartbeat": False}
        try:
            with infl.scope:
                try:
                    timeout = leaf.timeout_ms / 1000 if leaf.timeout_ms else None
                    with anyio.fail_after(timeout):
                        result: dict[str, Any] = {}
                        async with anyio.create_task_group() as inner:
                            if leaf.heartbeat_timeout_ms:
                                inner.start_soon(self._watchdog, leaf, infl, hb, inner, timed_out)
                            try:
                                result["value"] = await self._call(leaf, infl.tctx, spec.deps)
                            except Exception as exc:  # raised here, it would become a group
                                result["error"] = exc
                            inner.cancel_scope.cancel()
                    if timed_out["heartbeat"]:
                        raise SmithersError(
                            "TASK_HEARTBEAT_TIMEOUT",
                            f"Task {leaf.id!r} sent no heartbeat for"
                            f" {leaf.heartbeat_timeout_ms} ms",
                        )
                    if "error" in result:
                        raise result["error"]
                    outcome = ("ok", self._validate(leaf, result["value"]))
                except TimeoutError:
                    infl.tctx.mark_cancelled()
                    outcome = (
                        "fail",
                        SmithersError(
                            "TASK_TIMEOUT", f"Task {leaf.id!r} timed out after {leaf.timeout_ms} ms"
                        ),
                    )
                except Exception as exc:
                    outcome = ("fail", exc)
            if infl.scope.cancelled_caught or infl.reason is not None:
                outcome = ("cancel", infl.reason or "aborted")
            with anyio.CancelScope(shield=True):
                await self._record_outcome(spec, infl, outcome)
        finally:
            self.inflight.pop(infl.key, None)
            self._settled_attempts += 1
            self.poke()

    async def _watchdog(
        self,
        leaf: Task,
        infl: Inflight,
        hb: _HeartbeatSink,
        inner: anyio.abc.TaskGroup,
        flag: dict[str, bool],
    ) -> None:
        limit = int(leaf.heartbeat_timeout_ms or 0)
        while True:
            due = hb.last_beat_ms + limit
            now = now_ms()
            if now >= due:
                break
            await anyio.sleep((due - now) / 1000)
        flag["heartbeat"] = True
        infl.tctx.mark_cancelled()
        key, attempt, last = infl.key, infl.attempt, hb.last_beat_ms

        def change(tx: Tx) -> None:
            tx.emit(
                self.run_id,
                "TaskHeartbeatTimeout",
                **node_event(key, attempt=attempt, lastHeartbeatAtMs=last, timeoutMs=limit),
            )

        await self.store.write(change)
        inner.cancel_scope.cancel()

    async def _call(self, leaf: Task, tctx: TaskContext, deps: dict[str, Any]) -> Any:
        if leaf.fn is None:
            return leaf.value
        fn = leaf.fn
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004
        ):
            return await fn(tctx, **deps)
        value = await anyio.to_thread.run_sync(
            functools.partial(fn, tctx, **deps), abandon_on_cancel=True
        )
        if inspect.isawaitable(value):
            value = await value
        return value

    def _validate(self, leaf: Task, value: Any) -> Any:
        model = leaf.output
        if model is None:
            try:
                jsonutil.dumps(_dump_output(value))
            except (TypeError, ValueError) as exc:
                raise SmithersError(
                    "INVALID_OUTPUT",
                    f"Task {leaf.id!r} returned a value that is not JSON: {exc}",
                    {"failureRetryable": False},
                ) from exc
            return _dump_output(value)
        if isinstance(value, model):
            return value.model_dump(mode="json", by_alias=True)
        try:
            data = (
                value.model_dump(mode="json", by_alias=True)
                if isinstance(value, BaseModel)
                else value
            )
            return model.model_validate(data).model_dump(mode="json", by_alias=True)
        except ValidationError as exc:
            raise SmithersError(
                "INVALID_OUTPUT",
                f"Output of task {leaf.id!r} does not match {model.__name__}",
                {
                    "failureRetryable": False,
                    "issues": exc.errors(include_url=False, include_context=False),
                },
            ) from exc

    async def _record_outcome(
        self, spec: StartSpec, infl: Inflight, outcome: tuple[str, Any]
    ) -> None:
        kind, value = outcome
        if kind == "cancel" and value == "lost":
            return
        leaf = spec.pleaf.leaf
        assert isinstance(leaf, Task)
        key, attempt, run_id = spec.pleaf.key, spec.attempt, self.run_id
        owner = self.engine.owner_id
        retries = leaf.retries
        model = leaf.output

        def change(tx: Tx) -> None:
            row = tx.one(
                "SELECT state FROM _smithers_attempts WHERE run_id = ? AND node_id = ?"
                " AND iteration = ? AND attempt = ?",
                (run_id, key[0], key[1], attempt),
            )
            owned = tx.one(
                "SELECT 1 FROM _smithers_runs WHERE run_id = ? AND runtime_owner_id = ?",
                (run_id, owner),
            )
            if row is None or row[0] != "in-progress" or owned is None:
                return
            where = (run_id, key[0], key[1], attempt)
            if kind == "ok":
                write_output(tx, run_id, key, model, value)
                tx.execute(
                    "UPDATE _smithers_attempts SET state = 'finished', finished_at_ms = ?"
                    " WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
                    (tx.now, *where),
                )
                set_node(tx, run_id, key[0], key[1], "finished", last_attempt=attempt)
                tx.emit(run_id, "NodeFinished", **node_event(key, attempt=attempt))
            elif kind == "fail":
                err = error_dict(value)
                tx.execute(
                    "UPDATE _smithers_attempts SET state = 'failed', finished_at_ms = ?,"
                    " error_json = ? WHERE run_id = ? AND node_id = ? AND iteration = ?"
                    " AND attempt = ?",
                    (tx.now, jsonutil.dumps(err), *where),
                )
                failed = tx.one(
                    "SELECT COUNT(*) FROM _smithers_attempts WHERE run_id = ? AND node_id = ?"
                    " AND iteration = ? AND state = 'failed'",
                    (run_id, key[0], key[1]),
                )
                n_failed = int(failed[0]) if failed is not None else 1
                details = err.get("details") or {}
                retryable = details.get("failureRetryable", True) is not False
                retry = retryable and n_failed < retries + 1
                set_node(tx, run_id, key[0], key[1], "pending" if retry else "failed")
                tx.emit(run_id, "NodeFailed", **node_event(key, attempt=attempt, error=err))
                if retry:
                    tx.emit(run_id, "NodeRetrying", **node_event(key, attempt=attempt + 1))
            else:
                reason = str(value)
                cancel_attempt(tx, run_id, key, attempt, reason)
                # shutdown hands the node back (D6); aborted and unmounted attempts are
                # cancelled (a remounted node still starts again, not counted as a failure)
                state = "pending" if reason == "shutdown" else "cancelled"
                set_node(tx, run_id, key[0], key[1], state)
                tx.emit(run_id, "NodeCancelled", **node_event(key, attempt=attempt, reason=reason))

        try:
            await self.store.write(change)
        except Exception:
            log.exception("run %s: could not record the outcome of %s", self.run_id, key)


class _HeartbeatSink:
    """Receives ``heartbeat()`` and ``log()`` calls from a task (any thread)."""

    def __init__(self, driver: RunDriver, key: Key, attempt: int) -> None:
        self.driver = driver
        self.key = key
        self.attempt = attempt
        self.last_beat_ms = now_ms()
        self.last_write_ms = 0

    def heartbeat(self, data: Any = None) -> None:
        opts = self.driver.engine.options
        encoded = None
        if data is not None:
            try:
                encoded = jsonutil.dumps(_dump_output(data))
            except (TypeError, ValueError) as exc:
                raise SmithersError(
                    "INVALID_HEARTBEAT",
                    f"Heartbeat data must be JSON: {exc}",
                    {"failureRetryable": False},
                ) from exc
            if len(encoded.encode()) > opts.task_heartbeat_max_bytes:
                raise SmithersError(
                    "INVALID_HEARTBEAT",
                    f"Heartbeat data is larger than {opts.task_heartbeat_max_bytes} bytes",
                    {"failureRetryable": False},
                )
        now = now_ms()
        self.last_beat_ms = now
        if now - self.last_write_ms < opts.task_heartbeat_throttle_ms and self.last_write_ms:
            return
        interval = now - self.last_write_ms if self.last_write_ms else None
        self.last_write_ms = now
        run_id, key, attempt = self.driver.run_id, self.key, self.attempt
        size = len(encoded.encode()) if encoded is not None else 0

        def change(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE _smithers_attempts SET heartbeat_at_ms = ?,"
                " heartbeat_data_json = COALESCE(?, heartbeat_data_json)"
                " WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?"
                " AND state = 'in-progress'",
                (tx.now, encoded, run_id, key[0], key[1], attempt),
            )
            if cur.rowcount:
                fields: dict[str, Any] = {
                    "attempt": attempt,
                    "hasData": encoded is not None,
                    "dataSizeBytes": size,
                }
                if interval is not None:
                    fields["intervalMs"] = interval
                tx.emit(run_id, "TaskHeartbeat", **node_event(key, **fields))

        self.driver.store.submit(change)

    def log(self, text: str, stream: str) -> None:
        run_id, key, attempt = self.driver.run_id, self.key, self.attempt

        def change(tx: Tx) -> None:
            tx.emit(
                run_id, "NodeOutput", **node_event(key, attempt=attempt, text=text, stream=stream)
            )

        self.driver.store.submit(change)


class _Walker:
    """One pass over the plan tree: what is reachable, what to start, what waits."""

    def __init__(
        self, driver: RunDriver, plan: RenderPlan, st: RunState, step: Step, now: int, ctx: Ctx
    ) -> None:
        self.driver = driver
        self.plan = plan
        self.st = st
        self.step = step
        self.now = now
        self.ctx = ctx
        self.run_id = driver.run_id
        self.running = sum(1 for k in driver.inflight)
        self.cap = driver.max_concurrency
        self.taken_signals: set[int] = set()
        self.par_stack: list[list[int]] = []  # [in_flight_count, cap]
        # waits with a started attempt: (attempt start, tree position, leaf, node, attempt row)
        self.waits: list[tuple[int, int, PLeaf, WaitSignal, dict[str, Any]]] = []

    # terminal: finished, skipped, or failed with continue_on_fail
    def status(self, p: PLeaf) -> str:
        state = self.st.node_state(p.key)
        if state in ("finished", "skipped"):
            return "done"
        if state == "failed":
            return "done" if p.leaf.continue_on_fail else "fatal"
        return "active"

    def walk(self, node: PNode | None) -> bool:
        if node is None:
            return True
        if isinstance(node, PLeaf):
            return self.leaf(node)
        if isinstance(node, PSeq):
            return all(self.walk(child) for child in node.children)
        if isinstance(node, PPar):
            entry = [self._count_inflight(node), node.max_concurrency or 0]
            self.par_stack.append(entry)
            try:
                results = [self.walk(child) for child in node.children]
            finally:
                self.par_stack.pop()
            return all(results)
        if isinstance(node, PLoop):
            if node.done:
                return True
            body_done = self.walk(node.child)
            if body_done:
                self.loop_iteration_done(node)
            return False
        raise AssertionError(node)

    def _count_inflight(self, node: PNode) -> int:
        if isinstance(node, PLeaf):
            return 1 if node.key in self.driver.inflight else 0
        if isinstance(node, PSeq | PPar):
            return sum(self._count_inflight(c) for c in node.children)
        if isinstance(node, PLoop):
            return self._count_inflight(node.child) if node.child is not None else 0
        return 0

    def deps_ready(self, p: PLeaf) -> bool:
        for target in (*p.leaf.needs.values(), *p.leaf.after):
            tkey = self.plan.ids[target]
            if self.status(self.plan.leaves[tkey]) != "done":
                return False
        return True

    def leaf(self, p: PLeaf) -> bool:
        status = self.status(p)
        if status == "done":
            return True
        if status == "fatal":
            self.step.fatal.append(p.key)
            return False
        if not self.deps_ready(p):
            return False
        leaf = p.leaf
        if isinstance(leaf, Task):
            self.task(p, leaf)
        elif isinstance(leaf, Approval):
            self.approval(p, leaf)
        elif isinstance(leaf, WaitSignal):
            self.wait(p, leaf)
        elif isinstance(leaf, Timer):
            self.timer(p, leaf)
        return False

    # -- tasks ------------------------------------------------------------------------------
    def task(self, p: PLeaf, leaf: Task) -> None:
        key = p.key
        if key in self.driver.inflight:
            return
        state = self.st.node_state(key)
        if state not in ("pending", "cancelled"):
            return
        failures = self.st.failed_attempts(key)
        if failures:
            last = self.st.last_attempt(key)
            finished = int(last["finished_at_ms"] or 0) if last else 0
            due = finished + backoff_delay(
                leaf, failures, self.driver.engine.options.backoff_cap_ms
            )
            if due > self.now:
                self.step.wake(due)
                return
        if self.running >= self.cap:
            return
        for entry in self.par_stack:
            if entry[1] and entry[0] >= entry[1]:
                return
        for entry in self.par_stack:
            entry[0] += 1
        self.running += 1
        attempts = self.st.attempts.get(key, [])
        attempt_no = (attempts[-1]["attempt"] if attempts else 0) + 1
        last_hb = None
        for a in reversed(attempts):
            if a.get("heartbeat_data_json"):
                last_hb = jsonutil.loads(a["heartbeat_data_json"])
                break
        deps = {param: self.dep_value(target) for param, target in leaf.needs.items()}
        spec = StartSpec(p, attempt_no, deps, last_hb)
        self.step.starts.append(spec)
        run_id = self.run_id
        meta = {
            "kind": leaf.task_kind,
            "label": leaf.label,
            "outputTable": _model_name(leaf.output),
            "retries": leaf.retries,
            "timeoutMs": leaf.timeout_ms,
            "heartbeatTimeoutMs": leaf.heartbeat_timeout_ms,
        }

        def change(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO _smithers_attempts (run_id, node_id, iteration, attempt, state,"
                " started_at_ms, meta_json) VALUES (?, ?, ?, ?, 'in-progress', ?, ?)",
                (run_id, key[0], key[1], attempt_no, tx.now, jsonutil.dumps(meta)),
            )
            set_node(tx, run_id, key[0], key[1], "in-progress", last_attempt=attempt_no)
            tx.emit(run_id, "NodeStarted", **node_event(key, attempt=attempt_no))

        self.step.changes.append(change)

    def dep_value(self, target: str) -> Any:
        tkey = self.plan.ids[target]
        if self.st.node_state(tkey) != "finished" or tkey not in self.st.outputs:
            return None
        model = self.plan.leaves[tkey].leaf.output_model
        value = self.st.outputs[tkey]
        if model is None or value is None:
            return value
        return model.model_validate(value)

    # -- approvals --------------------------------------------------------------------------
    def approval(self, p: PLeaf, leaf: Approval) -> None:
        key = p.key
        row = self.st.approvals.get(key)
        run_id = self.run_id
        if row is None:
            self.request_approval(p, leaf)
            return
        if row["status"] == "requested":
            self.step.waiting.add("approval")
            return
        approved = row["status"] == "approved"
        decision = jsonutil.loads(row["decision_json"]) or {}
        note = row["note"]
        decided_by = row["decided_by"]
        decided_at = iso_from_ms(row["decided_at_ms"])
        output: Any = None
        outcome = "finished"
        err: dict[str, Any] | None = None
        if approved:
            if leaf.mode == "approve":
                output = ApprovalDecision(
                    approved=True, note=note, decidedBy=decided_by, decidedAt=decided_at
                )
            elif leaf.mode == "select":
                output = Selection(
                    selected=decision.get("selected"), notes=decision.get("notes", note)
                )
            elif leaf.mode == "rank":
                output = Ranking(
                    ranked=list(decision.get("ranked") or []), notes=decision.get("notes", note)
                )
        elif leaf.on_deny == "fail":
            outcome = "failed"
            err = {
                "name": "SmithersError",
                "code": "APPROVAL_DENIED",
                "message": f"Approval {leaf.id!r} was denied",
                "details": {"note": note, "decidedBy": decided_by},
            }
        elif leaf.on_deny == "skip":
            outcome = "skipped"
        elif leaf.mode == "approve":
            output = ApprovalDecision(
                approved=False, note=note, decidedBy=decided_by, decidedAt=decided_at
            )
        elif leaf.mode == "select":
            output = Selection(selected=None, notes=decision.get("notes", note))
        elif leaf.mode == "rank":
            output = Ranking(ranked=[], notes=decision.get("notes", note))
        model = leaf.output_model

        def change(tx: Tx) -> None:
            if outcome == "skipped":
                set_node(tx, run_id, key[0], key[1], "skipped")
                tx.emit(run_id, "NodeSkipped", **node_event(key))
                return
            last = tx.one(
                "SELECT COALESCE(MAX(attempt), 0) FROM _smithers_attempts WHERE run_id = ?"
                " AND node_id = ? AND iteration = ?",
                (run_id, key[0], key[1]),
            )
            attempt = int(last[0]) + 1 if last is not None else 1
            tx.execute(
                "INSERT INTO _smithers_attempts (run_id, node_id, iteration, attempt, state,"
                " started_at_ms, finished_at_ms, error_json, meta_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    key[0],
                    key[1],
                    attempt,
                    outcome,
                    tx.now,
                    tx.now,
                    jsonutil.dumps(err) if err else None,
                    jsonutil.dumps({"kind": "approval", "approvalMode": leaf.wire_mode}),
                ),
            )
            tx.emit(run_id, "NodeStarted", **node_event(key, attempt=attempt))
            if output is not None:
                write_output(tx, run_id, key, model, _dump_output(output))
            set_node(tx, run_id, key[0], key[1], outcome, last_attempt=attempt)
            if outcome == "failed":
                tx.emit(run_id, "NodeFailed", **node_event(key, attempt=attempt, error=err))
            else:
                tx.emit(run_id, "NodeFinished", **node_event(key, attempt=attempt))

        self.step.changes.append(change)

    def request_approval(self, p: PLeaf, leaf: Approval) -> None:
        key, run_id = p.key, self.run_id
        auto = self.auto_approve(leaf)
        workflow_name = self.driver.workflow.name
        request = {
            "mode": leaf.wire_mode,
            "waitAsync": False,
            "title": leaf.title,
            "summary": leaf.summary,
            "options": [o.to_wire() for o in leaf.options],
            "allowedScopes": list(leaf.allowed_scopes),
            "allowedUsers": list(leaf.allowed_users),
            "autoApprove": (
                {"after": leaf.auto_approve.after} if leaf.auto_approve is not None else None
            ),
        }
        after = leaf.auto_approve.after if leaf.auto_approve is not None else None
        first_option = leaf.options[0].key if leaf.options else None
        all_options = [o.key for o in leaf.options]

        def change(tx: Tx) -> None:
            approve_now = auto
            if auto and after is not None and after > 0:
                rows = tx.all(
                    "SELECT a.status FROM _smithers_approvals a JOIN _smithers_runs r"
                    " ON r.run_id = a.run_id WHERE r.workflow_name = ? AND a.node_id = ?"
                    " AND a.run_id != ? AND a.status IN ('approved', 'denied')"
                    " AND a.auto_approved = 0 ORDER BY a.decided_at_ms DESC LIMIT ?",
                    (workflow_name, key[0], run_id, after),
                )
                approve_now = len(rows) == after and all(r[0] == "approved" for r in rows)
            if approve_now:
                decision: dict[str, Any] | None = None
                if leaf.mode == "select":
                    decision = {"selected": first_option}
                elif leaf.mode == "rank":
                    decision = {"ranked": all_options}
                tx.execute(
                    "INSERT INTO _smithers_approvals (run_id, node_id, iteration, status,"
                    " requested_at_ms, decided_at_ms, note, decided_by, request_json,"
                    " decision_json, auto_approved) VALUES (?, ?, ?, 'approved', ?, ?,"
                    " 'Auto-approved', 'smithers:auto', ?, ?, 1)",
                    (
                        run_id,
                        key[0],
                        key[1],
                        tx.now,
                        tx.now,
                        jsonutil.dumps(request),
                        jsonutil.dumps(decision) if decision is not None else None,
                    ),
                )
                tx.emit(run_id, "ApprovalAutoApproved", **node_event(key))
                return
            tx.execute(
                "INSERT INTO _smithers_approvals (run_id, node_id, iteration, status,"
                " requested_at_ms, request_json) VALUES (?, ?, ?, 'requested', ?, ?)",
                (run_id, key[0], key[1], tx.now, jsonutil.dumps(request)),
            )
            set_node(tx, run_id, key[0], key[1], "waiting-approval")
            tx.emit(run_id, "ApprovalRequested", **node_event(key))
            tx.emit(run_id, "NodeWaitingApproval", **node_event(key))

        self.step.changes.append(change)

    def auto_approve(self, leaf: Approval) -> bool:
        auto = leaf.auto_approve
        if auto is None:
            return False
        cond = auto.condition
        if cond is not None:
            met = (
                _render_predicate(cond, self.ctx, f"Approval {leaf.id!r} auto_approve condition")
                if callable(cond)
                else bool(cond)
            )
            if not met:
                return False
        return True

    # -- signals ------------------------------------------------------------------------------
    def wait(self, p: PLeaf, leaf: WaitSignal) -> None:
        key, run_id = p.key, self.run_id
        attempt = self.st.last_attempt(key)
        if attempt is None or attempt["state"] not in ("waiting-event",):
            started = self.now
            meta = {
                "kind": "wait-for-event",
                "waitForEvent": {
                    "signalName": leaf.signal,
                    "correlationId": leaf.correlation_id,
                    "onTimeout": leaf.on_timeout,
                    "timeoutMs": leaf.timeout_ms,
                    "waitAsync": False,
                    "startedAtMs": started,
                    "resolvedSignalSeq": None,
                    "receivedAtMs": None,
                    "timedOutAtMs": None,
                },
            }
            number = (attempt["attempt"] + 1) if attempt is not None else 1

            def start(tx: Tx) -> None:
                tx.execute(
                    "INSERT INTO _smithers_attempts (run_id, node_id, iteration, attempt, state,"
                    " started_at_ms, meta_json) VALUES (?, ?, ?, ?, 'waiting-event', ?, ?)",
                    (run_id, key[0], key[1], number, started, jsonutil.dumps(meta)),
                )
                set_node(tx, run_id, key[0], key[1], "waiting-event", last_attempt=number)

            self.step.changes.append(start)
            return
        wait_meta: dict[str, Any] = attempt["meta"].get("waitForEvent") or {}
        started_at = int(wait_meta.get("startedAtMs") or attempt["started_at_ms"])
        self.waits.append((started_at, p.ordinal, p, leaf, attempt))

    def resolve_waits(self) -> None:
        """Match buffered signals to the waits found by the walk (D4): the wait whose attempt
        started first (then the lower tree position) takes the lowest matching seq."""
        for _, _, p, leaf, attempt in sorted(self.waits, key=lambda w: (w[0], w[1])):
            self.resolve_wait(p, leaf, attempt)

    def resolve_wait(self, p: PLeaf, leaf: WaitSignal, attempt: dict[str, Any]) -> None:
        key = p.key
        meta = attempt["meta"].get("waitForEvent") or {}
        number = int(attempt["attempt"])
        model = leaf.output
        timeout = meta.get("timeoutMs")
        due: int | None = None
        if timeout is not None:
            due = int(meta.get("startedAtMs") or attempt["started_at_ms"]) + int(timeout)
        for sig in self.st.signals:
            if sig["seq"] in self.taken_signals:
                continue
            if sig["signal_name"] != leaf.signal or sig["correlation_id"] != leaf.correlation_id:
                continue
            if due is not None and int(sig["received_at_ms"]) >= due:
                continue  # arrived after the wait timed out (the run had not noticed yet)
            self.taken_signals.add(sig["seq"])
            payload = jsonutil.loads(sig["payload_json"])
            try:
                value = (
                    model.model_validate(payload).model_dump(mode="json", by_alias=True)
                    if model
                    else payload
                )
            except ValidationError as exc:
                self.reject_signal(sig, exc)
                continue
            self.consume_signal(key, number, attempt["meta"], sig, value, model)
            return
        if due is not None:
            if due <= self.now:
                self.time_out_wait(key, number, leaf)
                return
            self.step.wake(due)
        self.step.waiting.add("event")

    def reject_signal(self, sig: dict[str, Any], exc: ValidationError) -> None:
        run_id, seq = self.run_id, sig["seq"]
        error = {
            "code": "INVALID_INPUT",
            "message": "Signal payload does not match the wait's output model",
            "issues": exc.errors(include_url=False, include_context=False),
        }

        def change(tx: Tx) -> None:
            tx.execute(
                "UPDATE _smithers_signals SET rejected_at_ms = ?, rejection_json = ?"
                " WHERE run_id = ? AND seq = ?",
                (tx.now, jsonutil.dumps(error), run_id, seq),
            )
            tx.emit(
                run_id,
                "SignalRejected",
                signalName=sig["signal_name"],
                correlationId=sig["correlation_id"],
                seq=seq,
                error=error,
            )

        self.step.changes.append(change)

    def consume_signal(
        self,
        key: Key,
        attempt: int,
        meta: dict[str, Any],
        sig: dict[str, Any],
        value: Any,
        model: type[BaseModel] | None,
    ) -> None:
        run_id = self.run_id
        new_meta = dict(meta)
        wait_meta = dict(new_meta.get("waitForEvent") or {})
        wait_meta["resolvedSignalSeq"] = sig["seq"]
        wait_meta["receivedAtMs"] = sig["received_at_ms"]
        new_meta["waitForEvent"] = wait_meta

        def change(tx: Tx) -> None:
            tx.execute(
                "UPDATE _smithers_signals SET consumed_node_id = ?, consumed_iteration = ?,"
                " consumed_at_ms = ? WHERE run_id = ? AND seq = ?",
                (key[0], key[1], tx.now, run_id, sig["seq"]),
            )
            write_output(tx, run_id, key, model, value)
            tx.execute(
                "UPDATE _smithers_attempts SET state = 'finished', finished_at_ms = ?,"
                " meta_json = ? WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
                (tx.now, jsonutil.dumps(new_meta), run_id, key[0], key[1], attempt),
            )
            set_node(tx, run_id, key[0], key[1], "finished", last_attempt=attempt)
            tx.emit(run_id, "NodeFinished", **node_event(key, attempt=attempt))

        self.step.changes.append(change)

    def time_out_wait(self, key: Key, attempt: int, leaf: WaitSignal) -> None:
        run_id = self.run_id
        skip = leaf.on_timeout == "skip"
        err = {
            "name": "SmithersError",
            "code": "TASK_TIMEOUT",
            "message": f"Signal {leaf.signal!r} did not arrive within {leaf.timeout_ms} ms",
        }

        def change(tx: Tx) -> None:
            tx.execute(
                "UPDATE _smithers_attempts SET state = ?, finished_at_ms = ?, error_json = ?"
                " WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
                (
                    "skipped" if skip else "failed",
                    tx.now,
                    None if skip else jsonutil.dumps(err),
                    run_id,
                    key[0],
                    key[1],
                    attempt,
                ),
            )
            set_node(tx, run_id, key[0], key[1], "skipped" if skip else "failed")
            if skip:
                tx.emit(run_id, "NodeSkipped", **node_event(key))
            else:
                tx.emit(run_id, "NodeFailed", **node_event(key, attempt=attempt, error=err))

        self.step.changes.append(change)

    # -- timers -------------------------------------------------------------------------------
    def timer(self, p: PLeaf, leaf: Timer) -> None:
        key, run_id = p.key, self.run_id
        attempt = self.st.last_attempt(key)
        if attempt is None or attempt["state"] != "waiting-timer":
            if leaf.until_ms is not None:
                fires, kind = leaf.until_ms, "absolute"
            else:
                fires, kind = self.now + int(leaf.duration_ms or 0), "duration"
            number = (attempt["attempt"] + 1) if attempt is not None else 1
            meta = {"kind": "timer", "timer": {"firesAtMs": fires, "timerType": kind}}

            def create(tx: Tx) -> None:
                tx.execute(
                    "INSERT INTO _smithers_attempts (run_id, node_id, iteration, attempt, state,"
                    " started_at_ms, meta_json) VALUES (?, ?, ?, ?, 'waiting-timer', ?, ?)",
                    (run_id, key[0], key[1], number, tx.now, jsonutil.dumps(meta)),
                )
                set_node(tx, run_id, key[0], key[1], "waiting-timer", last_attempt=number)
                tx.emit(
                    run_id,
                    "TimerCreated",
                    timerId=key[0],
                    firesAtMs=fires,
                    timerType=kind,
                    **node_event(key),
                )
                tx.emit(run_id, "NodeWaitingTimer", **node_event(key, firesAtMs=fires))

            self.step.changes.append(create)
            return
        fires = int((attempt["meta"].get("timer") or {}).get("firesAtMs") or 0)
        number = int(attempt["attempt"])
        if fires > self.now:
            self.step.wake(fires)
            self.step.waiting.add("timer")
            return

        def fire(tx: Tx) -> None:
            tx.execute(
                "UPDATE _smithers_attempts SET state = 'finished', finished_at_ms = ?"
                " WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
                (tx.now, run_id, key[0], key[1], number),
            )
            set_node(tx, run_id, key[0], key[1], "finished", last_attempt=number)
            tx.emit(
                run_id,
                "TimerFired",
                timerId=key[0],
                firesAtMs=fires,
                firedAtMs=tx.now,
                delayMs=max(0, tx.now - fires),
                **node_event(key),
            )
            tx.emit(run_id, "NodeFinished", **node_event(key, attempt=number))

        self.step.changes.append(fire)

    # -- loops ------------------------------------------------------------------------------
    def loop_iteration_done(self, ploop: PLoop) -> None:
        loop = ploop.loop
        until = loop.until
        finished = (
            _render_predicate(until, self.ctx, f"Loop {loop.id!r} until")
            if callable(until)
            else bool(until)
        )
        run_id, loop_id, iteration = self.run_id, loop.id, ploop.iteration
        if finished:
            new_iteration, done = iteration, True
        elif iteration + 1 >= loop.max_iterations:
            if loop.on_max == "fail":
                raise SmithersError(
                    "RALPH_MAX_REACHED",
                    f"Loop {loop_id!r} reached max_iterations={loop.max_iterations}",
                    {"loopId": loop_id, "maxIterations": loop.max_iterations},
                )
            new_iteration, done = iteration, True
        else:
            new_iteration, done = iteration + 1, False

        def change(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO _smithers_ralph (run_id, ralph_id, iteration, done, updated_at_ms)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(run_id, ralph_id) DO UPDATE SET"
                " iteration = excluded.iteration, done = excluded.done,"
                " updated_at_ms = excluded.updated_at_ms",
                (run_id, loop_id, new_iteration, 1 if done else 0, tx.now),
            )

        self.step.changes.append(change)
