"""Smaller engine behaviours: skip_if, ctx.auth across a resume, decisions and signals that
arrive while the run is still executing, unmounted approvals/waits/timers, bad heartbeats,
and ``Engine.wait_settled``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from smithers_core.errors import SmithersError
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.models import RunAuth
from smithers_core.workflow.nodes import Approval, Par, Seq, Task, Timer, WaitSignal
from tests.engine_helpers import Harness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class Num(BaseModel):
    n: int


async def test_wait_settled(tmp_path: Path) -> None:
    @workflow("ws")
    def ws(ctx: Any) -> Any:
        return Seq(Task("a", lambda t: Num(n=1), output=Num), Approval("gate"))

    async with Harness(tmp_path) as h:
        rid = await h.launch(ws)
        assert await h.engine.wait_settled(rid) == "waiting-approval"
        assert await h.engine.wait_settled(rid) is None  # nothing drives it now
        assert h.status(rid) == "waiting-approval"


async def test_skip_if(tmp_path: Path) -> None:
    ran: list[str] = []
    got: dict[str, Any] = {}

    def use(t: Any, s: Num | None) -> Num:
        got["s"] = s
        return Num(n=0)

    @workflow("skip")
    def skip(ctx: Any) -> Any:
        return Seq(
            Task("s", lambda t: ran.append("s") or Num(n=1), output=Num, skip_if=True),
            Task("u", use, output=Num, needs={"s": "s"}),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(skip)
        assert status == "finished"
        assert ran == []
        assert "s" in got and got["s"] is None
        assert h.nodes(rid) == {"s": "skipped", "u": "finished"}
        assert h.node_types(rid, "s") == ["NodeSkipped"]


async def test_auth_is_kept_across_resume(tmp_path: Path) -> None:
    seen: list[Any] = []

    def who(t: Any) -> Num:
        seen.append((t.auth.triggered_by, t.auth.role))
        return Num(n=1)

    @workflow("authd")
    def authd(ctx: Any) -> Any:
        seen.append(("render", ctx.auth.role if ctx.auth else None))
        return Seq(Approval("gate"), Task("who", who, output=Num))

    async with Harness(tmp_path) as h:
        rid, _ = await h.start(authd, auth=RunAuth.for_trigger("cron"))
        await h.svc.decide_approval(rid, "gate", approved=True)
        assert await h.settle(rid) == "finished"
        assert ("cron:gateway", "system") in seen
        assert all(s == ("render", "system") for s in seen if s[0] == "render")
        from smithers_core import jsonutil

        config = jsonutil.loads(h.row(rid)["config_json"])
        assert config["auth"]["triggeredBy"] == "cron:gateway"


async def test_decision_and_signal_while_running_do_not_park(tmp_path: Path) -> None:
    started = anyio.Event()
    release = anyio.Event()

    async def slow(t: Any) -> Num:
        started.set()
        with anyio.fail_after(3):
            await release.wait()
        return Num(n=1)

    @workflow("live-decide")
    def live(ctx: Any) -> Any:
        return Par(Task("slow", slow, output=Num), Approval("gate"), WaitSignal("w"))

    async with Harness(tmp_path) as h:
        rid = await h.launch(live)
        with anyio.fail_after(3):
            await started.wait()
        await h.svc.deliver_signal(rid, "w", {"any": "thing"})
        # the approval request is committed by the driver; wait for it, then decide
        from tests.engine_helpers import wait_for

        await wait_for(lambda: h.db.pending_approvals(rid))
        await h.svc.decide_approval(rid, "gate", approved=True)
        release.set()
        assert await h.settle(rid) == "finished"
        assert "RunStatusChanged" not in h.types(rid)
        assert h.types(rid).count("RunStarted") == 1
        assert h.output(rid, "w") == {"any": "thing"}


async def test_unmounted_approval_wait_and_timer_are_withdrawn(tmp_path: Path) -> None:
    async def slow(t: Any) -> Num:
        await anyio.sleep(0.05)
        return Num(n=1)

    @workflow("withdraw")
    def withdraw(ctx: Any) -> Any:
        done = ctx.output_maybe("x") is not None
        return Par(
            Task("x", slow, output=Num),
            None if done else Approval("gate"),
            None if done else WaitSignal("w"),
            None if done else Timer("t", duration="1h"),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(withdraw)
        assert status == "finished"
        assert h.nodes(rid) == {
            "x": "finished",
            "gate": "cancelled",
            "w": "cancelled",
            "t": "cancelled",
        }
        assert h.db.pending_approvals() == []
        cancels = h.find(rid, "NodeCancelled")
        assert sorted((e["nodeId"], e["reason"]) for e in cancels) == [
            ("gate", "unmounted"),
            ("t", "unmounted"),
            ("w", "unmounted"),
        ]
        assert [e["timerId"] for e in h.find(rid, "TimerCancelled")] == ["t"]
        assert {a["state"] for a in h.db.list_attempts(rid) if a["nodeId"] != "x"} == {"cancelled"}
        assert h.run(rid)["summary"] == {"cancelled": 3, "finished": 1}


async def test_remounted_approval_is_asked_again(tmp_path: Path) -> None:
    @workflow("reask")
    def reask(ctx: Any) -> Any:
        phase = ctx.output_maybe("p1") is not None
        back = ctx.output_maybe("p2") is not None
        return Seq(
            Par(Task("p1", _quick, output=Num), Approval("gate") if not phase or back else None),
            Task("p2", _quick, output=Num),
            Approval("gate2"),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(reask)
        # gate was requested, withdrawn when p1 finished, then asked again once p2 finished
        assert status == "waiting-approval"
        gate_types = h.node_types(rid, "gate")
        assert gate_types.count("ApprovalRequested") == 2
        assert "NodeCancelled" in gate_types
        assert {a["node_id"] for a in h.db.pending_approvals(rid)} == {"gate"}
        await h.svc.decide_approval(rid, "gate", approved=True)
        assert await h.settle(rid) == "waiting-approval"
        await h.svc.decide_approval(rid, "gate2", approved=True)
        assert await h.settle(rid) == "finished"


async def _quick(t: Any) -> Num:
    await anyio.sleep(0.02)
    return Num(n=1)


async def test_invalid_heartbeat_fails_without_retry(tmp_path: Path) -> None:
    calls: list[int] = []

    def bad_beat(t: Any) -> Num:
        calls.append(t.attempt)
        t.heartbeat({"not": object()})
        return Num(n=1)

    @workflow("badbeat")
    def badbeat(ctx: Any) -> Any:
        return Task("b", bad_beat, output=Num, retries=2, backoff_ms=1)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(badbeat)
        assert status == "failed"
        assert calls == [1]
        assert h.error(rid)["code"] == "INVALID_HEARTBEAT"


async def test_log_with_bad_stream_fails_task(tmp_path: Path) -> None:
    @workflow("badlog")
    def badlog(ctx: Any) -> Any:
        return Task("l", lambda t: t.log("x", stream="stdin"))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(badlog)
        assert status == "failed"
        assert h.error(rid)["code"] == "INVALID_INPUT"


async def test_launch_errors(tmp_path: Path) -> None:
    @workflow("dup")
    def dup(ctx: Any) -> Any:
        return Task("a", lambda t: Num(n=1), output=Num)

    async with Harness(tmp_path) as h:
        rid, _ = await h.start(dup, run_id="fixed-id")
        assert rid == "fixed-id"
        with pytest.raises(SmithersError) as info:
            await h.svc.launch(dup, run_id="fixed-id")
        assert info.value.code == "RUN_ALREADY_EXISTS"
        assert h.types("fixed-id").count("RunStarted") == 1
        with pytest.raises(SmithersError) as info:
            await h.svc.launch(dup, run_id="x" * 257)
        assert info.value.code == "INVALID_INPUT"
