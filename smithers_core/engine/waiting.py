"""Leaves that wait on the world: approvals (a person), signal waits (a message), timers (the
clock).

The :class:`~smithers_core.engine.walker.Walker` hands each reachable approval, wait and timer
to :class:`WaitingLeaves`, which adds to the cycle's :class:`~smithers_core.engine.steps.Step`:
a request or the node's outcome, a wait or the signal it consumes, a timer or its firing, and
what the run is waiting for. Signals are matched only after the walk (:meth:`resolve_waits`),
so the oldest wait takes the oldest matching signal (D4).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from smithers_core import jsonutil
from smithers_core.engine.render import Key, PLeaf
from smithers_core.engine.steps import (
    Step,
    dump_output,
    model_name,
    render_predicate,
    schema_json,
)
from smithers_core.errors import validation_issues
from smithers_core.store import approvals, nodes, signals
from smithers_core.store.base import Tx
from smithers_core.store.events import node_event
from smithers_core.store.snapshot import RunState
from smithers_core.workflow.context import Ctx
from smithers_core.workflow.durations import iso_from_ms
from smithers_core.workflow.models import ApprovalDecision, Ranking, Selection
from smithers_core.workflow.nodes import Approval, Timer, WaitSignal


class WaitingLeaves:
    """The approvals, signal waits and timers of one cycle."""

    def __init__(
        self, st: RunState, step: Step, now: int, ctx: Ctx, *, run_id: str, workflow_name: str
    ) -> None:
        self.st = st
        self.step = step
        self.now = now
        self.ctx = ctx
        self.run_id = run_id
        self.workflow_name = workflow_name
        self.taken_signals: set[int] = set()
        # waits with a started attempt: (attempt start, tree position, leaf, node, attempt row)
        self.waits: list[tuple[int, int, PLeaf, WaitSignal, dict[str, Any]]] = []

    # -- approvals --------------------------------------------------------------------------
    def approval(self, p: PLeaf, leaf: Approval) -> None:
        """Ask for a decision, wait for it, or turn the decision into the node's outcome."""
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
        meta = {"kind": "approval", "approvalMode": leaf.wire_mode}

        def change(tx: Tx) -> None:
            if outcome == "skipped":
                nodes.set_node(tx, run_id, key[0], key[1], "skipped")
                tx.emit(run_id, "NodeSkipped", **node_event(key))
                return
            attempt = nodes.last_attempt_number(tx.conn, run_id, key) + 1
            nodes.insert_attempt(
                tx,
                run_id,
                key,
                attempt,
                outcome,
                started_at_ms=tx.now,
                finished_at_ms=tx.now,
                error=err,
                meta=meta,
            )
            tx.emit(run_id, "NodeStarted", **node_event(key, attempt=attempt))
            if output is not None:
                nodes.write_output(
                    tx,
                    run_id,
                    key,
                    dump_output(output),
                    output_table=model_name(model),
                    schema_json=schema_json(model),
                )
            nodes.set_node(tx, run_id, key[0], key[1], outcome, last_attempt=attempt)
            if outcome == "failed":
                tx.emit(run_id, "NodeFailed", **node_event(key, attempt=attempt, error=err))
            else:
                tx.emit(run_id, "NodeFinished", **node_event(key, attempt=attempt))

        self.step.changes.append(change)

    def request_approval(self, p: PLeaf, leaf: Approval) -> None:
        """Request a decision, or approve at once when the auto-approve rule holds."""
        key, run_id = p.key, self.run_id
        auto = self.auto_approve(leaf)
        workflow_name = self.workflow_name
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
                recent = approvals.recent_human_decisions(
                    tx.conn, workflow_name, key[0], run_id, after
                )
                approve_now = len(recent) == after and all(s == "approved" for s in recent)
            if approve_now:
                decision: dict[str, Any] | None = None
                if leaf.mode == "select":
                    decision = {"selected": first_option}
                elif leaf.mode == "rank":
                    decision = {"ranked": all_options}
                approvals.auto_approve(tx, run_id, key, request, decision)
                return
            approvals.request_approval(tx, run_id, key, request)
            nodes.set_node(tx, run_id, key[0], key[1], "waiting-approval")
            tx.emit(run_id, "NodeWaitingApproval", **node_event(key))

        self.step.changes.append(change)

    def auto_approve(self, leaf: Approval) -> bool:
        """True when the approval has an auto-approve rule whose condition holds."""
        auto = leaf.auto_approve
        if auto is None:
            return False
        cond = auto.condition
        if cond is not None:
            met = (
                render_predicate(cond, self.ctx, f"Approval {leaf.id!r} auto_approve condition")
                if callable(cond)
                else bool(cond)
            )
            if not met:
                return False
        return True

    # -- signals ------------------------------------------------------------------------------
    def wait(self, p: PLeaf, leaf: WaitSignal) -> None:
        """Start waiting for the signal, or queue the started wait for matching."""
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
                nodes.insert_attempt(
                    tx, run_id, key, number, "waiting-event", started_at_ms=started, meta=meta
                )
                nodes.set_node(tx, run_id, key[0], key[1], "waiting-event", last_attempt=number)

            self.step.changes.append(start)
            self.step.wait_models[key] = (p.ordinal, leaf.output)
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
        """Consume the first matching signal, time the wait out, or keep waiting."""
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
        self.step.wait_models[key] = (p.ordinal, model)

    def reject_signal(self, sig: dict[str, Any], exc: ValidationError) -> None:
        """Refuse a matching signal whose payload does not fit the wait's model."""
        run_id, seq = self.run_id, sig["seq"]
        name, correlation_id = sig["signal_name"], sig["correlation_id"]
        error = {
            "code": "INVALID_INPUT",
            "message": "Signal payload does not match the wait's output model",
            "issues": validation_issues(exc),
        }

        def change(tx: Tx) -> None:
            signals.reject_signal(tx, run_id, seq, name, correlation_id, error)

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
        """Finish the wait with the signal's payload as its output."""
        run_id, seq = self.run_id, sig["seq"]
        new_meta = dict(meta)
        wait_meta = dict(new_meta.get("waitForEvent") or {})
        wait_meta["resolvedSignalSeq"] = seq
        wait_meta["receivedAtMs"] = sig["received_at_ms"]
        new_meta["waitForEvent"] = wait_meta

        def change(tx: Tx) -> None:
            signals.consume_signal(tx, run_id, seq, key)
            nodes.finish_with_output(
                tx,
                run_id,
                key,
                attempt,
                value,
                output_table=model_name(model),
                schema_json=schema_json(model),
                meta=new_meta,
            )

        self.step.changes.append(change)

    def time_out_wait(self, key: Key, attempt: int, leaf: WaitSignal) -> None:
        """End a wait whose signal did not arrive in time: skipped or failed."""
        run_id = self.run_id
        skip = leaf.on_timeout == "skip"
        err = {
            "name": "SmithersError",
            "code": "TASK_TIMEOUT",
            "message": f"Signal {leaf.signal!r} did not arrive within {leaf.timeout_ms} ms",
        }

        def change(tx: Tx) -> None:
            if skip:
                nodes.settle_attempt(tx, run_id, key, attempt, "skipped")
                nodes.set_node(tx, run_id, key[0], key[1], "skipped")
                tx.emit(run_id, "NodeSkipped", **node_event(key))
            else:
                nodes.settle_attempt(tx, run_id, key, attempt, "failed", error=err)
                nodes.set_node(tx, run_id, key[0], key[1], "failed")
                tx.emit(run_id, "NodeFailed", **node_event(key, attempt=attempt, error=err))

        self.step.changes.append(change)

    # -- timers -------------------------------------------------------------------------------
    def timer(self, p: PLeaf, leaf: Timer) -> None:
        """Create the timer, keep waiting for it, or fire it."""
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
                nodes.insert_attempt(
                    tx, run_id, key, number, "waiting-timer", started_at_ms=tx.now, meta=meta
                )
                nodes.set_node(tx, run_id, key[0], key[1], "waiting-timer", last_attempt=number)
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
            nodes.settle_attempt(tx, run_id, key, number, "finished")
            nodes.set_node(tx, run_id, key[0], key[1], "finished", last_attempt=number)
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
