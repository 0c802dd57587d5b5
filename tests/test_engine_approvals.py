"""Approvals: the D4 decision matrix, select/rank validation, decision errors, allowed users
and scopes, auto-approval, and the resume after the last decision (D6, D7 Q2)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from smithers_core.auth import Identity
from smithers_core.errors import SmithersError
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.models import ApprovalDecision, Ranking, Selection
from smithers_core.workflow.nodes import Approval, AutoApprove, Par, Seq, Task
from tests.engine_helpers import Harness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

OPTIONS = ["blue", {"key": "green", "label": "Green", "summary": "the safe one"}, "red"]


class Seen(BaseModel):
    value: Any = None


def _approval_workflow(mode: str, on_deny: str, *, continue_on_fail: bool = False) -> Any:
    seen: dict[str, Any] = {}

    def after(t: Any, **deps: Any) -> Seen:
        seen.update(deps)
        return Seen(value=None)

    needs = {} if mode == "gate" else {"decision": "ask"}

    @workflow(f"appr-{mode}-{on_deny}-{continue_on_fail}")
    def wf(ctx: Any) -> Any:
        return Seq(
            Approval(
                "ask",
                title="Ship?",
                summary="prod",
                mode=mode,  # type: ignore[arg-type]
                options=OPTIONS if mode in ("select", "rank") else (),
                on_deny=on_deny,  # type: ignore[arg-type]
                continue_on_fail=continue_on_fail,
            ),
            Task("after", after, output=Seen, needs=needs),
        )

    return wf, seen


APPROVE_DECISIONS: dict[str, Any] = {
    "gate": None,
    "approve": None,
    "select": {"selected": "green"},
    "rank": {"ranked": ["red", "blue"]},
}


@pytest.mark.parametrize("mode", ["gate", "approve", "select", "rank"])
async def test_approved(tmp_path: Path, mode: str) -> None:
    wf, seen = _approval_workflow(mode, "fail")
    async with Harness(tmp_path) as h:
        rid, status = await h.start(wf)
        assert status == "waiting-approval"
        assert h.types(rid)[-3:] == ["ApprovalRequested", "NodeWaitingApproval", "RunStatusChanged"]
        assert h.find(rid, "RunStatusChanged")[0]["status"] == "waiting-approval"
        assert h.nodes(rid) == {"ask": "waiting-approval", "after": "pending"}
        run = h.run(rid)
        assert run["status"] == "waiting-approval"
        assert run["runtimeOwnerId"] is None and run["heartbeatAtMs"] is None
        assert run["runState"]["state"] == "waiting-approval"
        assert run["runState"]["blocked"]["kind"] == "approval"
        assert run["runState"]["blocked"]["nodeId"] == "ask"
        pending = h.db.pending_approvals(rid)
        assert len(pending) == 1 and pending[0]["node_id"] == "ask"

        result = await h.svc.decide_approval(
            rid,
            "ask",
            approved=True,
            note="lgtm",
            decided_by="alice",
            decision=APPROVE_DECISIONS[mode],
        )
        assert result == {"runId": rid, "nodeId": "ask", "iteration": 0, "approved": True}
        assert await h.settle(rid) == "finished"
        assert h.nodes(rid) == {"ask": "finished", "after": "finished"}
        row = h.db.approval(rid, "ask")
        assert row is not None and row["status"] == "approved"
        assert row["decided_by"] == "alice" and row["note"] == "lgtm"
        assert row["requested_at_ms"] is not None and row["decided_at_ms"] is not None
        output = h.output(rid, "ask")
        if mode == "gate":
            assert not h.has_output(rid, "ask")
            assert seen == {}
        elif mode == "approve":
            assert output["approved"] is True and output["note"] == "lgtm"
            assert output["decidedBy"] == "alice"
            assert datetime.fromisoformat(output["decidedAt"].replace("Z", "+00:00"))
            assert output["decidedAt"].endswith("Z")
            assert isinstance(seen["decision"], ApprovalDecision)
            assert seen["decision"].decided_by == "alice"
        elif mode == "select":
            assert output == {"selected": "green", "notes": "lgtm"}
            assert seen["decision"] == Selection(selected="green", notes="lgtm")
        else:
            assert output == {"ranked": ["red", "blue"], "notes": "lgtm"}
            assert seen["decision"] == Ranking(ranked=["red", "blue"], notes="lgtm")
        assert h.node_types(rid, "ask") == [
            "NodePending",
            "ApprovalRequested",
            "NodeWaitingApproval",
            "ApprovalGranted",
            "NodeStarted",
            "NodeFinished",
        ]
        types = h.types(rid)
        assert types.count("RunStarted") == 2
        assert types.index("ApprovalGranted") < len(types) - 1 - types[::-1].index("RunStarted")


@pytest.mark.parametrize("mode", ["gate", "approve", "select", "rank"])
async def test_denied_on_deny_fail(tmp_path: Path, mode: str) -> None:
    wf, seen = _approval_workflow(mode, "fail")
    async with Harness(tmp_path) as h:
        rid, status = await h.start(wf)
        assert status == "waiting-approval"
        await h.svc.decide_approval(rid, "ask", approved=False, note="no", decided_by="bob")
        assert await h.settle(rid) == "failed"
        assert h.nodes(rid) == {"ask": "failed", "after": "pending"}
        err = h.error(rid)
        assert err["code"] == "APPROVAL_DENIED"
        assert err["details"]["nodeId"] == "ask"
        assert err["details"]["note"] == "no" and err["details"]["decidedBy"] == "bob"
        assert not h.has_output(rid, "ask")
        assert seen == {}
        assert h.node_types(rid, "ask")[-3:] == ["ApprovalDenied", "NodeStarted", "NodeFailed"]
        assert h.types(rid)[-1] == "RunFailed"


async def test_denied_gate_with_continue_on_fail_keeps_run_going(tmp_path: Path) -> None:
    wf, _ = _approval_workflow("gate", "fail", continue_on_fail=True)
    async with Harness(tmp_path) as h:
        rid, _status = await h.start(wf)
        await h.svc.decide_approval(rid, "ask", approved=False)
        assert await h.settle(rid) == "finished"
        assert h.nodes(rid) == {"ask": "failed", "after": "finished"}


@pytest.mark.parametrize("mode", ["gate", "approve", "select", "rank"])
async def test_denied_on_deny_skip(tmp_path: Path, mode: str) -> None:
    wf, seen = _approval_workflow(mode, "skip")
    async with Harness(tmp_path) as h:
        rid, _ = await h.start(wf)
        await h.svc.decide_approval(rid, "ask", approved=False)
        assert await h.settle(rid) == "finished"
        assert h.nodes(rid) == {"ask": "skipped", "after": "finished"}
        assert not h.has_output(rid, "ask")
        if mode != "gate":
            assert "decision" in seen and seen["decision"] is None
        assert h.node_types(rid, "ask")[-2:] == ["ApprovalDenied", "NodeSkipped"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("gate", None),
        ("approve", {"approved": False, "note": "meh", "decidedBy": "carol"}),
        ("select", {"selected": None, "notes": "meh"}),
        ("rank", {"ranked": [], "notes": "meh"}),
    ],
)
async def test_denied_on_deny_continue(tmp_path: Path, mode: str, expected: Any) -> None:
    wf, seen = _approval_workflow(mode, "continue")
    async with Harness(tmp_path) as h:
        rid, _ = await h.start(wf)
        await h.svc.decide_approval(rid, "ask", approved=False, note="meh", decided_by="carol")
        assert await h.settle(rid) == "finished"
        assert h.nodes(rid) == {"ask": "finished", "after": "finished"}
        if expected is None:
            assert not h.has_output(rid, "ask")
        else:
            output = h.output(rid, "ask")
            for k, v in expected.items():
                assert output[k] == v
            assert seen["decision"] is not None
        assert h.node_types(rid, "ask")[-3:] == ["ApprovalDenied", "NodeStarted", "NodeFinished"]


async def test_request_json_and_frame_props(tmp_path: Path) -> None:
    @workflow("reqjson")
    def reqjson(ctx: Any) -> Any:
        return Approval(
            "pick",
            title="Pick a colour",
            summary="any",
            mode="select",
            options=OPTIONS,
            allowed_scopes=["approval:submit"],
            allowed_users=["u1"],
            auto_approve=AutoApprove(after=3, condition=False),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(reqjson)
        assert status == "waiting-approval"
        row = h.db.approval(rid, "pick")
        assert row is not None
        from smithers_core import jsonutil

        assert jsonutil.loads(row["request_json"]) == {
            "mode": "select",
            "waitAsync": False,
            "title": "Pick a colour",
            "summary": "any",
            "options": [
                {"key": "blue", "label": "blue"},
                {"key": "green", "label": "Green", "summary": "the safe one"},
                {"key": "red", "label": "red"},
            ],
            "allowedScopes": ["approval:submit"],
            "allowedUsers": ["u1"],
            "autoApprove": {"after": 3},
        }
        frame = jsonutil.loads(h.db.get_frame(rid)["xmlJson"])  # type: ignore[index]
        assert frame["children"][0]["props"] == {
            "approvalMode": "select",
            "id": "pick",
            "iteration": "0",
            "label": "Pick a colour",
            "needsApproval": "true",
        }


# -- decision validation ------------------------------------------------------------------------


async def test_select_validation(tmp_path: Path) -> None:
    wf, _ = _approval_workflow("select", "fail")
    async with Harness(tmp_path) as h:
        rid, _ = await h.start(wf)
        before = h.types(rid)
        for bad in (None, {}, {"selected": "purple"}, {"selected": 1}, "green"):
            with pytest.raises(SmithersError) as info:
                await h.svc.decide_approval(rid, "ask", approved=True, decision=bad)
            assert info.value.code == "INVALID_INPUT", bad
        # nothing changed
        assert h.types(rid) == before
        assert h.status(rid) == "waiting-approval"
        assert h.db.approval(rid, "ask")["status"] == "requested"  # type: ignore[index]
        assert h.nodes(rid)["ask"] == "waiting-approval"
        await h.svc.decide_approval(rid, "ask", approved=True, decision={"selected": "red"})
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "ask") == {"selected": "red", "notes": None}


async def test_rank_validation(tmp_path: Path) -> None:
    wf, _ = _approval_workflow("rank", "fail")
    async with Harness(tmp_path) as h:
        rid, _ = await h.start(wf)
        before = h.types(rid)
        for bad in (
            None,
            {"ranked": []},
            {"ranked": ["blue", "purple"]},
            {"ranked": ["blue", "blue"]},
            {"ranked": "blue"},
        ):
            with pytest.raises(SmithersError) as info:
                await h.svc.decide_approval(rid, "ask", approved=True, decision=bad)
            assert info.value.code == "INVALID_INPUT", bad
        assert h.types(rid) == before
        assert h.status(rid) == "waiting-approval"
        # a subset of the option keys, in the decider's order
        await h.svc.decide_approval(rid, "ask", approved=True, decision={"ranked": ["green"]})
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "ask")["ranked"] == ["green"]


async def test_already_decided_and_not_waiting(tmp_path: Path) -> None:
    @workflow("twogates")
    def twogates(ctx: Any) -> Any:
        return Seq(Task("first", lambda t: Seen(value=1), output=Seen), Approval("g1"))

    async with Harness(tmp_path) as h:
        rid, _ = await h.start(twogates)
        for node, iteration in (("first", 0), ("nope", 0), ("g1", 1)):
            with pytest.raises(SmithersError) as info:
                await h.svc.decide_approval(rid, node, approved=True, iteration=iteration)
            assert info.value.code == "NODE_NOT_WAITING"
        await h.svc.decide_approval(rid, "g1", approved=True)
        with pytest.raises(SmithersError) as info:
            await h.svc.decide_approval(rid, "g1", approved=False)
        assert info.value.code == "ALREADY_DECIDED"
        assert await h.settle(rid) == "finished"
        with pytest.raises(SmithersError) as info:
            await h.svc.decide_approval(rid, "g1", approved=True)
        assert info.value.code == "ALREADY_DECIDED"
        assert h.find(rid, "ApprovalGranted") and not h.find(rid, "ApprovalDenied")
        with pytest.raises(SmithersError) as info:
            await h.svc.decide_approval("no-such-run", "g1", approved=True)
        assert info.value.code == "RUN_NOT_FOUND"


# -- who may decide -----------------------------------------------------------------------------


async def test_allowed_users(tmp_path: Path) -> None:
    @workflow("users")
    def users(ctx: Any) -> Any:
        return Approval("ask", mode="approve", allowed_users=["alice", "dave"])

    async with Harness(tmp_path) as h:
        rid, _ = await h.start(users)
        attempts: list[dict[str, Any]] = [
            {},  # no identity at all
            {"decided_by": "alice"},  # decided_by alone never satisfies
            {"identity": Identity(user_id="bob"), "decided_by": "alice"},
            {"identity": Identity(user_id=None, scopes=("*",))},
        ]
        for kw in attempts:
            with pytest.raises(SmithersError) as info:
                await h.svc.decide_approval(rid, "ask", approved=True, **kw)
            assert info.value.code == "FORBIDDEN", kw
        assert h.status(rid) == "waiting-approval"
        assert h.db.approval(rid, "ask")["status"] == "requested"  # type: ignore[index]
        await h.svc.decide_approval(rid, "ask", approved=True, identity=Identity(user_id="dave"))
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "ask")["decidedBy"] == "dave"


async def test_allowed_scopes(tmp_path: Path) -> None:
    @workflow("scoped")
    def scoped(ctx: Any) -> Any:
        return Par(
            Approval("known", allowed_scopes=["approval:submit"]),
            Approval("custom", allowed_scopes=["deploy:ship"]),
        )

    async with Harness(tmp_path) as h:
        rid, _ = await h.start(scoped)
        reader = Identity(user_id="r", scopes=("run:read", "execute"))
        for node in ("known", "custom"):
            with pytest.raises(SmithersError) as info:
                await h.svc.decide_approval(rid, node, approved=True, identity=reader)
            assert info.value.code == "FORBIDDEN"
        # the legacy "approve" level implies approval:submit, but never an unknown scope
        legacy = Identity(user_id="l", scopes=("approve",))
        await h.svc.decide_approval(rid, "known", approved=True, identity=legacy)
        with pytest.raises(SmithersError) as info:
            await h.svc.decide_approval(rid, "custom", approved=True, identity=legacy)
        assert info.value.code == "FORBIDDEN"
        # still parked on the other approval: not resumable yet
        assert h.status(rid) == "waiting-approval"
        await h.svc.decide_approval(
            rid, "custom", approved=True, identity=Identity(user_id="s", scopes=("deploy:ship",))
        )
        assert await h.settle(rid) == "finished"


async def test_no_identity_counts_as_operator_for_scopes(tmp_path: Path) -> None:
    @workflow("scoped-op")
    def scoped_op(ctx: Any) -> Any:
        return Approval("known", allowed_scopes=["approval:submit"])

    async with Harness(tmp_path) as h:
        rid, _ = await h.start(scoped_op)
        await h.svc.decide_approval(rid, "known", approved=True)
        assert await h.settle(rid) == "finished"


# -- auto-approval ------------------------------------------------------------------------------


async def test_auto_approve_immediately(tmp_path: Path) -> None:
    @workflow("auto0")
    def auto0(ctx: Any) -> Any:
        return Seq(
            Approval("a", mode="select", options=OPTIONS, auto_approve=AutoApprove()),
            Approval("b", mode="rank", options=OPTIONS, auto_approve=AutoApprove(after=0)),
            Approval("c", auto_approve=AutoApprove(condition=lambda ctx: False)),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(auto0)
        assert status == "waiting-approval"
        assert h.node_types(rid, "a") == [
            "NodePending",
            "ApprovalAutoApproved",
            "NodeStarted",
            "NodeFinished",
        ]
        assert h.output(rid, "a") == {"selected": "blue", "notes": "Auto-approved"}
        assert h.output(rid, "b")["ranked"] == ["blue", "green", "red"]
        row = h.db.approval(rid, "a")
        assert row is not None and row["auto_approved"] == 1
        assert row["decided_by"] == "smithers:auto" and row["status"] == "approved"
        # the condition is false: asked normally
        assert h.nodes(rid)["c"] == "waiting-approval"
        assert "ApprovalRequested" not in h.node_types(rid, "a")


async def test_auto_approve_after_previous_manual_decisions(tmp_path: Path) -> None:
    @workflow("autoN")
    def auto_n(ctx: Any) -> Any:
        return Approval("ship", mode="approve", auto_approve=AutoApprove(after=2))

    @workflow("other")
    def other(ctx: Any) -> Any:
        return Approval("ship", mode="approve")

    async with Harness(tmp_path) as h:

        async def manual(wf: Any, approved: bool) -> str:
            rid, status = await h.start(wf)
            assert status == "waiting-approval"
            assert not h.find(rid, "ApprovalAutoApproved")
            await h.svc.decide_approval(rid, "ship", approved=approved)
            assert await h.settle(rid) in ("finished", "failed")
            return rid

        await manual(auto_n, True)
        await manual(auto_n, False)  # a denial breaks the streak
        await manual(auto_n, True)
        await manual(other, True)  # decisions of other workflows do not count
        # now two approvals in a row are needed: only one so far
        await manual(auto_n, True)
        rid, status = await h.start(auto_n)
        assert status == "finished"
        assert h.find(rid, "ApprovalAutoApproved")
        assert h.output(rid, "ship")["approved"] is True
        assert h.output(rid, "ship")["decidedBy"] == "smithers:auto"
        # auto decisions do not count as manual ones, so the streak is still the same two
        rid2, status2 = await h.start(auto_n)
        assert status2 == "finished" and h.find(rid2, "ApprovalAutoApproved")


# -- the run after a decision -------------------------------------------------------------------


async def test_last_decision_sets_running_and_resumes_at_once(tmp_path: Path) -> None:
    @workflow("two-approvals")
    def two(ctx: Any) -> Any:
        return Seq(Par(Approval("x"), Approval("y")), Task("z", lambda t: Seen(value=1)))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(two)
        assert status == "waiting-approval"
        await h.svc.decide_approval(rid, "x", approved=True)
        row = h.row(rid)
        assert row["status"] == "waiting-approval"  # another approval is still requested
        assert rid not in h.engine.active
        await h.svc.decide_approval(rid, "y", approved=True)
        row = h.row(rid)
        # checked before yielding to the loop: the resume has not run yet
        assert row["status"] == "running"
        assert row["runtime_owner_id"] is None and row["heartbeat_at_ms"] is None
        assert await h.settle(rid) == "finished"
        assert h.nodes(rid) == {"x": "finished", "y": "finished", "z": "finished"}
        types = h.types(rid)
        i_granted = [i for i, t in enumerate(types) if t == "ApprovalGranted"]
        assert len(i_granted) == 2
        assert types[i_granted[1] + 1] == "RunStarted"


async def test_auto_approve_condition_that_raises_fails_as_render_error(tmp_path: Path) -> None:
    def cond(ctx: Any) -> bool:
        return bool(ctx.output("missing"))

    @workflow("cond-raise")
    def cond_raise(ctx: Any) -> Any:
        return Approval("a", auto_approve=AutoApprove(condition=cond))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(cond_raise)
        assert status == "failed"
        assert h.error(rid)["code"] == "RENDER_FAILED"
