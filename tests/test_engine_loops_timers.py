"""Timers (woken by the engine's own timer wheel) and loops (iterations, until, max)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from smithers_core.errors import SmithersError
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Approval, Loop, Par, Seq, Task, Timer
from tests.engine_helpers import Harness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class Num(BaseModel):
    n: int


# -- timers -------------------------------------------------------------------------------------


async def test_timer_parks_and_wheel_resumes(tmp_path: Path) -> None:
    @workflow("timer")
    def timer(ctx: Any) -> Any:
        return Seq(Timer("t", duration="100ms"), Task("after", lambda t: Num(n=1), output=Num))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(timer)
        assert status == "waiting-timer"
        assert h.types(rid) == [
            "RunStarted",
            "NodePending",
            "NodePending",
            "FrameCommitted",
            "TimerCreated",
            "NodeWaitingTimer",
            "RunStatusChanged",
        ]
        created = h.find(rid, "TimerCreated")[0]
        assert created["timerId"] == "t" and created["timerType"] == "duration"
        fires = created["firesAtMs"]
        assert h.find(rid, "NodeWaitingTimer")[0]["firesAtMs"] == fires
        assert h.find(rid, "RunStatusChanged")[0]["status"] == "waiting-timer"
        run = h.run(rid)
        assert run["status"] == "waiting-timer"
        assert run["runtimeOwnerId"] is None and run["heartbeatAtMs"] is None
        assert run["runState"]["blocked"]["kind"] == "timer"
        assert run["runState"]["blocked"]["nodeId"] == "t"
        assert h.row(rid)["wake_at_ms"] == fires
        assert h.nodes(rid) == {"t": "waiting-timer", "after": "pending"}
        frame = json.loads(h.db.get_frame(rid)["xmlJson"])  # type: ignore[index]
        assert frame["children"][0]["children"][0]["tag"] == "smithers:timer"
        assert frame["children"][0]["children"][0]["props"]["duration"] == "100ms"

        # no API call: the engine's timer wheel resumes it
        assert await h.settle(rid) == "finished"
        assert h.types(rid)[7:] == [
            "RunStarted",
            "TimerFired",
            "NodeFinished",
            "NodeStarted",
            "NodeFinished",
            "RunFinished",
        ]
        fired = h.find(rid, "TimerFired")[0]
        assert fired["timerId"] == "t" and fired["firesAtMs"] == fires
        assert fired["firedAtMs"] >= fires and fired["delayMs"] == fired["firedAtMs"] - fires
        assert h.nodes(rid) == {"t": "finished", "after": "finished"}
        assert h.attempts(rid, "t")[0]["state"] == "finished"
        assert h.row(rid)["wake_at_ms"] is None


async def test_timer_until_past_fires_immediately(tmp_path: Path) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)

    @workflow("timer-past")
    def timer_past(ctx: Any) -> Any:
        return Seq(Timer("t", until=past), Timer("t2", until="2000-01-01T00:00:00Z"))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(timer_past)
        assert status == "finished"
        assert "RunStatusChanged" not in h.types(rid)
        assert h.node_types(rid, "t") == [
            "NodePending",
            "TimerCreated",
            "NodeWaitingTimer",
            "TimerFired",
            "NodeFinished",
        ]
        assert h.find(rid, "TimerCreated", nodeId="t")[0]["timerType"] == "absolute"
        assert h.find(rid, "TimerCreated", nodeId="t")[0]["firesAtMs"] == int(
            past.timestamp() * 1000
        )


async def test_timer_timedelta_while_other_work_runs(tmp_path: Path) -> None:
    @workflow("timer-par")
    def timer_par(ctx: Any) -> Any:
        return Par(Timer("t", duration=timedelta(milliseconds=500)), Task("x", lambda t: Num(n=1)))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(timer_par)
        assert status == "waiting-timer"
        assert h.nodes(rid) == {"t": "waiting-timer", "x": "finished"}
        assert await h.settle(rid) == "finished"


async def test_invalid_timer_rejected() -> None:
    with pytest.raises(SmithersError) as info:
        Timer("t", duration="soon")
    assert info.value.code == "INVALID_INPUT"
    with pytest.raises(SmithersError):
        Timer("t")


# -- loops --------------------------------------------------------------------------------------


async def test_loop_until(tmp_path: Path) -> None:
    seen: list[tuple[int, Any]] = []

    def step(t: Any) -> Num:
        seen.append((t.iteration, t.node_id))
        return Num(n=(t.iteration + 1) * 10)

    renders: list[tuple[Any, int]] = []

    @workflow("loop-until")
    def loop_until(ctx: Any) -> Any:
        renders.append((ctx.latest("step", Num), ctx.iteration_count("l")))
        return Seq(
            Loop(
                "l",
                body=lambda i: Task("step", step, output=Num),
                until=lambda c: c.latest("step", Num).n >= 20,
                max_iterations=3,
            ),
            Task("after", lambda t, last: Num(n=last.n + 1), output=Num, needs={"last": "step"}),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(loop_until)
        assert status == "finished"
        assert seen == [(0, "step"), (1, "step")]
        assert h.output(rid, "step", 0) == {"n": 10}
        assert h.output(rid, "step", 1) == {"n": 20}
        assert not h.has_output(rid, "step", 2)
        assert h.output(rid, "after") == {"n": 21}
        assert h.nodes(rid) == {"step": "finished", ("step", 1): "finished", "after": "finished"}
        assert [(e["nodeId"], e["iteration"]) for e in h.find(rid, "NodeStarted")] == [
            ("step", 0),
            ("step", 1),
            ("after", 0),
        ]
        # the render context saw the loop progress
        assert (Num(n=20), 2) in renders
        assert renders[0] == (None, 0)
        frames = sorted(h.db.list_frames(rid), key=lambda f: f["frameNo"])
        tree = json.loads(frames[0]["xmlJson"])
        ralph = tree["children"][0]["children"][0]
        assert ralph["tag"] == "smithers:ralph"
        assert ralph["props"] == {"id": "l", "maxIterations": "3", "onMaxReached": "return-last"}
        assert ralph["children"][0]["props"]["iteration"] == "0"
        later = json.loads(frames[-1]["xmlJson"])["children"][0]["children"][0]
        assert later["children"][0]["props"]["iteration"] == "1"


async def test_loop_return_last_at_max(tmp_path: Path) -> None:
    @workflow("loop-max")
    def loop_max(ctx: Any) -> Any:
        return Seq(
            Loop("l", body=Task("s", lambda t: Num(n=t.iteration), output=Num), max_iterations=3),
            Task("count", lambda t: Num(n=-1), output=Num),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(loop_max)
        assert status == "finished"
        assert [h.output(rid, "s", i) for i in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert not h.has_output(rid, "s", 3)
        assert h.nodes(rid)["count"] == "finished"


async def test_loop_fail_at_max(tmp_path: Path) -> None:
    @workflow("loop-fail")
    def loop_fail(ctx: Any) -> Any:
        return Loop(
            "l",
            body=lambda i: Task("s", lambda t: Num(n=i), output=Num),
            until=lambda c: False,
            max_iterations=2,
            on_max="fail",
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(loop_fail)
        assert status == "failed"
        err = h.error(rid)
        assert err["code"] == "RALPH_MAX_REACHED"
        assert err["details"] == {"loopId": "l", "maxIterations": 2}
        assert [h.output(rid, "s", i) for i in range(2)] == [{"n": 0}, {"n": 1}]


async def test_loop_inner_needs_same_iteration(tmp_path: Path) -> None:
    got: list[tuple[int, int]] = []

    def use(t: Any, a: Num) -> Num:
        got.append((t.iteration, a.n))
        return Num(n=a.n)

    @workflow("loop-needs")
    def loop_needs(ctx: Any) -> Any:
        return Loop(
            "l",
            body=Seq(
                Task("a", lambda t: Num(n=100 + t.iteration), output=Num),
                Task("b", use, output=Num, needs={"a": "a"}),
            ),
            max_iterations=3,
        )

    async with Harness(tmp_path) as h:
        _rid, status = await h.start(loop_needs)
        assert status == "finished"
        assert got == [(0, 100), (1, 101), (2, 102)]


async def test_approvals_inside_loop_asked_each_iteration(tmp_path: Path) -> None:
    @workflow("loop-approval")
    def loop_approval(ctx: Any) -> Any:
        return Loop(
            "l",
            body=Seq(Approval("ok", mode="approve"), Task("work", lambda t: Num(n=t.iteration))),
            until=lambda c: c.iteration_count("l") >= 2,
            max_iterations=5,
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(loop_approval)
        assert status == "waiting-approval"
        assert [(a["node_id"], a["iteration"]) for a in h.db.pending_approvals(rid)] == [("ok", 0)]
        await h.svc.decide_approval(rid, "ok", approved=True, iteration=0)
        assert await h.settle(rid) == "waiting-approval"
        assert [(a["node_id"], a["iteration"]) for a in h.db.pending_approvals(rid)] == [("ok", 1)]
        with pytest.raises(SmithersError) as info:
            await h.svc.decide_approval(rid, "ok", approved=True, iteration=0)
        assert info.value.code == "ALREADY_DECIDED"
        await h.svc.decide_approval(rid, "ok", approved=False, iteration=1)
        assert await h.settle(rid) == "failed"
        assert h.error(rid)["code"] == "APPROVAL_DENIED"
        assert h.output(rid, "ok", 0)["approved"] is True
        assert h.nodes(rid) == {
            "ok": "finished",
            "work": "finished",
            ("ok", 1): "failed",
            ("work", 1): "pending",
        }
        assert len(h.find(rid, "ApprovalRequested")) == 2


async def test_loop_iteration_count_counts_started_iterations(tmp_path: Path) -> None:
    counts: list[int] = []

    def until(c: Any) -> bool:
        counts.append(c.iteration_count("l"))
        return bool(c.iteration_count("l") >= 1)

    @workflow("loop-count")
    def loop_count(ctx: Any) -> Any:
        return Loop("l", body=Task("s", lambda t: Num(n=t.iteration), output=Num), until=until)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(loop_count)
        assert status == "finished"
        # evaluated once, after iteration 0: one iteration had started
        assert counts == [1]
        assert h.has_output(rid, "s", 0) and not h.has_output(rid, "s", 1)


async def test_approval_outranks_timer_and_wheel_fires_timer_meanwhile(tmp_path: Path) -> None:
    @workflow("appr-timer")
    def appr_timer(ctx: Any) -> Any:
        return Par(Approval("gate"), Timer("t", duration="400ms"))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(appr_timer)
        assert status == "waiting-approval"  # precedence: approval > event > timer
        assert h.row(rid)["wake_at_ms"] is not None
        # the wheel resumes it when the timer is due; it fires and parks on the approval again
        assert await h.settle(rid) == "waiting-approval"
        assert h.nodes(rid) == {"gate": "waiting-approval", "t": "finished"}
        assert h.row(rid)["wake_at_ms"] is None
        await h.svc.decide_approval(rid, "gate", approved=True)
        assert await h.settle(rid) == "finished"


async def test_until_that_raises_fails_the_run_as_render_error(tmp_path: Path) -> None:
    def until(c: Any) -> bool:
        raise ValueError("bad until")

    @workflow("loop-raise")
    def loop_raise(ctx: Any) -> Any:
        return Loop("l", body=Task("s", lambda t: Num(n=1), output=Num), until=until)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(loop_raise)
        assert status == "failed"
        err = h.error(rid)
        assert err["code"] == "RENDER_FAILED"
        assert "bad until" in err["message"]
