"""One pass over a render plan: what is reachable, which tasks start, what waits, what loops.

A :class:`Walker` reads the run's snapshot and adds to one cycle's
:class:`~smithers_core.engine.steps.Step`: task starts (within the run's and each parallel's
concurrency cap, after backoff) and loop iterations; reachable approvals, signal waits and
timers go to :class:`~smithers_core.engine.waiting.WaitingLeaves`. It decides only: every write
is a change the driver commits.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from smithers_core import jsonutil
from smithers_core.engine.render import Key, PLeaf, PLoop, PNode, PPar, PSeq, RenderPlan
from smithers_core.engine.steps import (
    StartSpec,
    Step,
    backoff_delay,
    model_name,
    render_predicate,
)
from smithers_core.engine.waiting import WaitingLeaves
from smithers_core.errors import SmithersError
from smithers_core.store import loops, nodes
from smithers_core.store.base import Tx
from smithers_core.store.events import node_event
from smithers_core.store.snapshot import RunState
from smithers_core.workflow.context import Ctx
from smithers_core.workflow.nodes import Approval, Task, Timer, WaitSignal


class Walker:
    """One pass over the plan tree: what is reachable, what to start, what waits."""

    def __init__(
        self,
        plan: RenderPlan,
        st: RunState,
        step: Step,
        now: int,
        ctx: Ctx,
        *,
        run_id: str,
        workflow_name: str,
        inflight: Container[Key],
        running: int,
        max_concurrency: int,
        backoff_cap_ms: int,
    ) -> None:
        self.plan = plan
        self.st = st
        self.step = step
        self.now = now
        self.ctx = ctx
        self.run_id = run_id
        self.inflight = inflight
        self.running = running
        self.cap = max_concurrency
        self.backoff_cap_ms = backoff_cap_ms
        self.par_stack: list[list[int]] = []  # [in_flight_count, cap]
        self.waiting = WaitingLeaves(st, step, now, ctx, run_id=run_id, workflow_name=workflow_name)

    def walk_plan(self) -> bool:
        """Walk the whole tree, then match signals to the waits found; True when the tree
        is done."""
        done = self.walk(self.plan.root)
        self.waiting.resolve_waits()
        return done

    def status(self, p: PLeaf) -> str:
        """``done`` (finished, skipped, or failed with continue_on_fail), ``fatal`` or
        ``active``."""
        state = self.st.node_state(p.key)
        if state in ("finished", "skipped"):
            return "done"
        if state == "failed":
            return "done" if p.leaf.continue_on_fail else "fatal"
        return "active"

    def walk(self, node: PNode | None) -> bool:
        """Visit ``node``'s subtree; True when all of it is done."""
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
            return 1 if node.key in self.inflight else 0
        if isinstance(node, PSeq | PPar):
            return sum(self._count_inflight(c) for c in node.children)
        if isinstance(node, PLoop):
            return self._count_inflight(node.child) if node.child is not None else 0
        return 0

    def deps_ready(self, p: PLeaf) -> bool:
        """True when every node ``p`` needs or runs after is done."""
        for target in (*p.leaf.needs.values(), *p.leaf.after):
            tkey = self.plan.ids[target]
            if self.status(self.plan.leaves[tkey]) != "done":
                return False
        return True

    def leaf(self, p: PLeaf) -> bool:
        """Visit one leaf: True when it is done; otherwise start, ask, wait or fail it."""
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
            self.waiting.approval(p, leaf)
        elif isinstance(leaf, WaitSignal):
            self.waiting.wait(p, leaf)
        elif isinstance(leaf, Timer):
            self.waiting.timer(p, leaf)
        return False

    # -- tasks ------------------------------------------------------------------------------
    def task(self, p: PLeaf, leaf: Task) -> None:
        """Start the task's next attempt when its backoff passed and the caps allow."""
        key = p.key
        if key in self.inflight:
            return
        state = self.st.node_state(key)
        if state not in ("pending", "cancelled"):
            return
        failures = self.st.failed_attempts(key)
        if failures:
            last = self.st.last_attempt(key)
            finished = int(last["finished_at_ms"] or 0) if last else 0
            due = finished + backoff_delay(leaf, failures, self.backoff_cap_ms)
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
            "outputTable": model_name(leaf.output),
            "retries": leaf.retries,
            "timeoutMs": leaf.timeout_ms,
            "heartbeatTimeoutMs": leaf.heartbeat_timeout_ms,
        }

        def change(tx: Tx) -> None:
            nodes.insert_attempt(
                tx, run_id, key, attempt_no, "in-progress", started_at_ms=tx.now, meta=meta
            )
            nodes.set_node(tx, run_id, key[0], key[1], "in-progress", last_attempt=attempt_no)
            tx.emit(run_id, "NodeStarted", **node_event(key, attempt=attempt_no))

        self.step.changes.append(change)

    def dep_value(self, target: str) -> Any:
        """The output of node ``target`` as its model (None until it finished)."""
        tkey = self.plan.ids[target]
        if self.st.node_state(tkey) != "finished" or tkey not in self.st.outputs:
            return None
        model = self.plan.leaves[tkey].leaf.output_model
        value = self.st.outputs[tkey]
        if model is None or value is None:
            return value
        return model.model_validate(value)

    # -- loops ------------------------------------------------------------------------------
    def loop_iteration_done(self, ploop: PLoop) -> None:
        """The loop body finished: stop (``until`` holds or the cap is reached) or go on."""
        loop = ploop.loop
        until = loop.until
        finished = (
            render_predicate(until, self.ctx, f"Loop {loop.id!r} until")
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
            loops.set_loop(tx, run_id, loop_id, new_iteration, done)

        self.step.changes.append(change)
