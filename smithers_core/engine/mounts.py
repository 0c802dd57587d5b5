"""The changes that follow a render's shape: nodes that left the tree, nodes and loops new to
it, and a new frame when the tree changed.

The driver commits these first, in this order and before anything is scheduled (upstream's
order), so a cycle's walk always sees every mounted node and the current frame. When they only
mount pending nodes (:func:`pending_mounts`), the same cycle's walk follows them in the same
transaction.
"""

from __future__ import annotations

from typing import Any

from smithers_core.engine.render import Key, PLeaf, RenderPlan
from smithers_core.engine.steps import Change, model_name
from smithers_core.store import approvals, frames, loops, nodes
from smithers_core.store.base import Tx
from smithers_core.store.events import node_event
from smithers_core.store.snapshot import RunState
from smithers_core.workflow.nodes import Task

WAITING_NODE = ("waiting-approval", "waiting-event", "waiting-timer")


def mount_changes(
    plan: RenderPlan, st: RunState, *, run_id: str, workflow_name: str
) -> list[Change]:
    """What the render changed in the tree, as changes to commit (none when nothing did)."""
    changes: list[Change] = []
    gone = [
        key
        for key, node in st.nodes.items()
        if key not in plan.leaves and node["state"] in WAITING_NODE
    ]
    if gone:
        changes.append(unmount_waiting(run_id, sorted(gone)))
    new = [p for key, p in plan.leaves.items() if key not in st.nodes]
    if new:
        changes.append(mount(run_id, sorted(new, key=lambda p: p.ordinal)))
    new_loops = [loop_id for loop_id in plan.loops if loop_id not in st.loops]
    if new_loops:
        changes.append(start_loops(run_id, new_loops))
    if plan.frame_hash != st.last_frame_hash:
        changes.append(commit_frame(run_id, workflow_name, plan))
    return changes


def pending_mounts(plan: RenderPlan, st: RunState) -> list[Key] | None:
    """The keys :func:`mount_changes` mounts when all it does is mount ``pending`` nodes (and
    commit the frame): nothing unmounted, no new loop, no skipped task. None otherwise."""
    if any(k not in plan.leaves and n["state"] in WAITING_NODE for k, n in st.nodes.items()):
        return None
    if any(loop_id not in st.loops for loop_id in plan.loops):
        return None
    new = [key for key, p in plan.leaves.items() if key not in st.nodes]
    for key in new:
        leaf = plan.leaves[key].leaf
        if isinstance(leaf, Task) and leaf.skip_if:
            return None
    return new


def unmount_waiting(run_id: str, gone: list[Key]) -> Change:
    """Withdraw approvals, waits and timers that left the tree (``reason: unmounted``).

    Without this a finished run would keep a ``requested`` approval (listed as pending)
    and nodes counted as ``waiting-*``. A node mounted again is asked or started anew.
    """

    def change(tx: Tx) -> None:
        open_attempts: dict[Key, list[Any]] = {}
        for a in nodes.attempts_in_states(tx.conn, run_id, ("waiting-event", "waiting-timer")):
            open_attempts.setdefault((a["node_id"], a["iteration"]), []).append(a)
        for key in gone:
            approvals.withdraw_request(tx, run_id, key)
            attempt: int | None = None
            for a in open_attempts.get(key, ()):
                attempt = int(a["attempt"])
                nodes.cancel_attempt(tx, run_id, key, attempt, "unmounted")
                if a["state"] == "waiting-timer":
                    tx.emit(run_id, "TimerCancelled", timerId=key[0], **node_event(key))
            nodes.set_node(tx, run_id, key[0], key[1], "cancelled")
            fields: dict[str, Any] = {"reason": "unmounted"}
            if attempt is not None:
                fields["attempt"] = attempt
            tx.emit(run_id, "NodeCancelled", **node_event(key, **fields))

    return change


def mount(run_id: str, new: list[PLeaf]) -> Change:
    """Insert the rows of nodes new to the tree, in tree order: ``pending``, or ``skipped``
    for a task whose ``skip_if`` holds."""

    def change(tx: Tx) -> None:
        for p in new:
            leaf = p.leaf
            skip = isinstance(leaf, Task) and bool(leaf.skip_if)
            nodes.set_node(
                tx,
                run_id,
                p.key[0],
                p.key[1],
                "skipped" if skip else "pending",
                output_table=model_name(leaf.output_model),
                label=leaf.label,
            )
            tx.emit(run_id, "NodeSkipped" if skip else "NodePending", **node_event(p.key))

    return change


def start_loops(run_id: str, loop_ids: list[str]) -> Change:
    """Record iteration 0 of newly mounted loops, so ``ctx.iteration_count(loop)`` counts
    the started iteration (1, not 0) while it runs and when ``until`` is evaluated."""

    def change(tx: Tx) -> None:
        loops.start_loops(tx, run_id, loop_ids)

    return change


def commit_frame(run_id: str, workflow_name: str, plan: RenderPlan) -> Change:
    """Store the render as the run's next frame (``FrameCommitted``)."""

    def change(tx: Tx) -> None:
        frames.commit_frame(
            tx,
            run_id,
            workflow_name=workflow_name,
            frame_json=plan.frame_json,
            frame_hash=plan.frame_hash,
            mounted_task_ids=plan.mounted,
            task_index=plan.task_index,
        )

    return change
