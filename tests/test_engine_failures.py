"""Failures: retries and backoff, continue_on_fail, render and validation errors, timeouts,
heartbeats and task logs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from smithers_core.errors import SmithersError
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Approval, Loop, Par, Seq, Task
from tests.engine_helpers import Harness, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class Num(BaseModel):
    n: int


class Boom(Exception):
    pass


# -- retries ----------------------------------------------------------------------------------


async def test_fails_once_then_succeeds_with_retry(tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky(t: Any) -> Num:
        calls.append(t.attempt)
        if t.attempt == 1:
            raise Boom("first try fails")
        return Num(n=t.attempt)

    @workflow("retry1")
    def retry1(ctx: Any) -> Any:
        return Task("flaky", flaky, output=Num, retries=1, backoff_ms=20)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(retry1)
        assert status == "finished"
        assert calls == [1, 2]
        assert h.types(rid) == [
            "RunStarted",
            "NodePending",
            "FrameCommitted",
            "NodeStarted",
            "NodeFailed",
            "NodeRetrying",
            "NodeStarted",
            "NodeFinished",
            "RunFinished",
        ]
        failed = h.find(rid, "NodeFailed")[0]
        assert failed["attempt"] == 1
        assert failed["error"]["name"] == "Boom"
        assert failed["error"]["message"] == "first try fails"
        assert h.find(rid, "NodeRetrying")[0]["attempt"] == 2
        assert [e["attempt"] for e in h.find(rid, "NodeStarted")] == [1, 2]
        assert h.find(rid, "NodeFinished")[0]["attempt"] == 2
        attempts = h.attempts(rid, "flaky")
        assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "failed"), (2, "finished")]
        # the backoff was respected: attempt 2 started >= 20 ms after attempt 1 finished
        assert attempts[1]["startedAtMs"] - attempts[0]["finishedAtMs"] >= 20
        assert h.output(rid, "flaky") == {"n": 2}
        assert h.run(rid)["summary"] == {"finished": 1}


async def test_retries_exhausted_fails_run_with_task_error(tmp_path: Path) -> None:
    calls: list[int] = []

    def always(t: Any) -> Num:
        calls.append(t.attempt)
        raise SmithersError("DEPLOY_BROKEN", f"broken on attempt {t.attempt}", {"x": 1})

    @workflow("exhaust")
    def exhaust(ctx: Any) -> Any:
        return Seq(
            Task("bad", always, output=Num, retries=2, backoff="fixed", backoff_ms=5),
            Task("never", lambda t: Num(n=0), output=Num),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(exhaust)
        assert status == "failed"
        assert calls == [1, 2, 3]
        assert h.node_types(rid, "bad") == [
            "NodePending",
            "NodeStarted",
            "NodeFailed",
            "NodeRetrying",
            "NodeStarted",
            "NodeFailed",
            "NodeRetrying",
            "NodeStarted",
            "NodeFailed",
        ]
        assert h.node_types(rid, "never") == ["NodePending"]
        assert h.types(rid)[-1] == "RunFailed"
        err = h.error(rid)
        assert err["code"] == "DEPLOY_BROKEN"
        assert err["message"] == "broken on attempt 3"
        assert err["details"]["nodeId"] == "bad"
        assert err["details"]["x"] == 1
        assert h.find(rid, "RunFailed")[0]["error"] == err
        assert h.nodes(rid) == {"bad": "failed", "never": "pending"}
        run = h.run(rid)
        assert run["status"] == "failed" and run["runState"]["state"] == "failed"


async def test_retries_default_zero(tmp_path: Path) -> None:
    calls: list[int] = []

    def once(t: Any) -> Num:
        calls.append(t.attempt)
        raise ValueError("nope")

    @workflow("noretry")
    def noretry(ctx: Any) -> Any:
        return Task("once", once, output=Num)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(noretry)
        assert status == "failed"
        assert calls == [1]
        assert "NodeRetrying" not in h.types(rid)
        err = h.error(rid)
        assert err["code"] == "TASK_FAILED"
        assert err["name"] == "ValueError"
        assert err["message"] == "nope"


async def test_continue_on_fail_dependent_gets_none(tmp_path: Path) -> None:
    got: dict[str, Any] = {}

    def bad(t: Any) -> Num:
        raise Boom("x")

    def after(t: Any, prev: Num | None) -> Num:
        got["prev"] = prev
        return Num(n=-1 if prev is None else prev.n)

    @workflow("cof")
    def cof(ctx: Any) -> Any:
        return Seq(
            Task("bad", bad, output=Num, continue_on_fail=True),
            Task("next", after, output=Num, needs={"prev": "bad"}),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(cof)
        assert status == "finished"
        assert "prev" in got and got["prev"] is None
        assert h.nodes(rid) == {"bad": "failed", "next": "finished"}
        assert h.output(rid, "next") == {"n": -1}
        assert h.run(rid)["summary"] == {"failed": 1, "finished": 1}
        assert h.types(rid)[-1] == "RunFinished"


async def test_par_failure_lets_inflight_sibling_finish(tmp_path: Path) -> None:
    release = anyio.Event()
    started_c: list[bool] = []

    async def slow(t: Any) -> Num:
        with anyio.fail_after(3):
            await release.wait()
        return Num(n=1)

    async def bad(t: Any) -> Num:
        release.set()
        raise Boom("bad")

    def c(t: Any) -> Num:
        started_c.append(True)
        return Num(n=3)

    @workflow("parfail", max_concurrency=2)
    def parfail(ctx: Any) -> Any:
        return Par(Task("slow", slow, output=Num), Task("bad", bad), Task("c", c, output=Num))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(parfail)
        assert status == "failed"
        assert started_c == []
        assert h.nodes(rid) == {"slow": "finished", "bad": "failed", "c": "pending"}
        assert h.error(rid)["details"]["nodeId"] == "bad"


# -- validation and render errors ---------------------------------------------------------------


async def test_invalid_output_not_retried(tmp_path: Path) -> None:
    calls: list[int] = []

    def wrong(t: Any) -> dict[str, Any]:
        calls.append(t.attempt)
        return {"n": "not a number"}

    @workflow("badout")
    def badout(ctx: Any) -> Any:
        return Task("wrong", wrong, output=Num, retries=3, backoff_ms=1)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(badout)
        assert status == "failed"
        assert calls == [1]
        assert "NodeRetrying" not in h.types(rid)
        err = h.error(rid)
        assert err["code"] == "INVALID_OUTPUT"
        assert err["details"]["nodeId"] == "wrong"
        assert h.nodes(rid) == {"wrong": "failed"}
        assert not h.has_output(rid, "wrong")


async def test_invalid_input_at_launch_writes_nothing(tmp_path: Path) -> None:
    class In(BaseModel):
        count: int

    @workflow("typed", input=In)
    def typed(ctx: Any) -> Any:
        return Task("t", lambda t: Num(n=t.input.count), output=Num)

    async with Harness(tmp_path) as h:
        with pytest.raises(SmithersError) as info:
            await h.svc.launch(typed, {"count": "many"}, run_id="bad-input")
        assert info.value.code == "INVALID_INPUT"
        assert info.value.details and info.value.details["issues"]
        assert h.db.run_row("bad-input") is None
        assert h.db.list_events("bad-input") == []
        assert h.db.list_runs() == []
        with pytest.raises(SmithersError) as info2:
            await h.svc.launch(typed, None)
        assert info2.value.code == "INVALID_INPUT"
        assert h.db.list_runs() == []


def _two_a(ctx: Any) -> Any:
    return Seq(Task("a", lambda t: Num(n=1)), Par(Task("a", lambda t: Num(n=2))))


def _needs_unknown(ctx: Any) -> Any:
    return Task("a", lambda t, x: Num(n=1), needs={"x": "ghost"})


def _needs_later(ctx: Any) -> Any:
    return Seq(
        Task("a", lambda t, b: Num(n=1), output=Num, needs={"b": "b"}),
        Task("b", lambda t: Num(n=2), output=Num),
    )


def _param_not_in_needs(ctx: Any) -> Any:
    return Seq(Task("b", lambda t: Num(n=2), output=Num), Task("a", lambda t, b: Num(n=1)))


def _needs_gate(ctx: Any) -> Any:
    return Par(Approval("g"), Task("a", lambda t, g: Num(n=1), needs={"g": "g"}))


def _nested_loop(ctx: Any) -> Any:
    return Loop("outer", body=lambda i: Loop("inner", body=Task("x", lambda t: Num(n=i))))


def _build_raises(ctx: Any) -> Any:
    raise KeyError("no such thing")


def _select_without_options(ctx: Any) -> Any:
    return Approval("pick", mode="select")


def _missing_output(ctx: Any) -> Any:
    ctx.output("nothing-yet")
    return Task("a", lambda t: Num(n=1))


@pytest.mark.parametrize(
    ("build", "code", "detail"),
    [
        (_two_a, "DUPLICATE_ID", {"nodeId": "a"}),
        (_needs_unknown, "INVALID_NEEDS", {"nodeId": "a", "target": "ghost"}),
        (_needs_later, "INVALID_NEEDS", {"nodeId": "a", "target": "b"}),
        (_param_not_in_needs, "INVALID_NEEDS", {"nodeId": "a"}),
        (_needs_gate, "INVALID_NEEDS", {"nodeId": "a", "target": "g"}),
        (_nested_loop, "NESTED_LOOP_UNSUPPORTED", {"loopId": "inner", "parentLoopId": "outer"}),
        (_build_raises, "RENDER_FAILED", {"error": "KeyError"}),
        (_select_without_options, "INVALID_APPROVAL", {"nodeId": "pick"}),
        (_missing_output, "RENDER_FAILED", {"nodeId": "nothing-yet"}),
    ],
)
async def test_render_errors_fail_the_run(
    tmp_path: Path, build: Any, code: str, detail: dict[str, Any]
) -> None:
    wf = workflow(f"render-{code.lower()}")(build)
    async with Harness(tmp_path) as h:
        rid, status = await h.start(wf)
        assert status == "failed"
        err = h.error(rid)
        assert err["code"] == code
        for k, v in detail.items():
            assert err["details"][k] == v
        assert h.types(rid) == ["RunStarted", "RunFailed"]
        assert h.find(rid, "RunFailed")[0]["error"]["code"] == code
        run = h.run(rid)
        assert run["status"] == "failed"
        assert run["runtimeOwnerId"] is None and run["finishedAtMs"] is not None
        assert h.db.list_frames(rid) == []


async def test_render_error_after_progress_keeps_outputs(tmp_path: Path) -> None:
    @workflow("later-boom")
    def later_boom(ctx: Any) -> Any:
        if ctx.output_maybe("a") is not None:
            raise RuntimeError("second render explodes")
        return Task("a", lambda t: Num(n=1), output=Num)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(later_boom)
        assert status == "failed"
        assert h.error(rid)["code"] == "RENDER_FAILED"
        assert "second render explodes" in h.error(rid)["message"]
        assert h.output(rid, "a") == {"n": 1}


# -- timeouts and heartbeats ------------------------------------------------------------------


async def test_async_task_timeout(tmp_path: Path) -> None:
    async def sleepy(t: Any) -> Num:
        await anyio.sleep(5)
        return Num(n=1)

    @workflow("atimeout")
    def atimeout(ctx: Any) -> Any:
        return Task("sleepy", sleepy, output=Num, timeout_ms=50)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(atimeout)
        assert status == "failed"
        assert h.error(rid)["code"] == "TASK_TIMEOUT"
        assert h.find(rid, "NodeFailed")[0]["error"]["code"] == "TASK_TIMEOUT"
        assert h.attempts(rid, "sleepy")[0]["state"] == "failed"


async def test_sync_task_timeout_sets_cancelled(tmp_path: Path) -> None:
    saw_cancel = threading.Event()
    release = threading.Event()

    def busy(t: Any) -> Num:
        # a thread cannot be killed: it polls t.cancelled and returns when told
        while not t.cancelled:
            if release.wait(0.005):
                break
        if t.cancelled:
            saw_cancel.set()
        return Num(n=1)

    @workflow("stimeout")
    def stimeout(ctx: Any) -> Any:
        return Task("busy", busy, output=Num, timeout_ms=50)

    async with Harness(tmp_path) as h:
        try:
            rid, status = await h.start(stimeout)
            assert status == "failed"
            assert h.error(rid)["code"] == "TASK_TIMEOUT"
            await wait_for(saw_cancel.is_set, message="the sync task to see t.cancelled")
            assert not h.has_output(rid, "busy")
        finally:
            release.set()


async def test_timeout_is_retried(tmp_path: Path) -> None:
    async def maybe_slow(t: Any) -> Num:
        if t.attempt == 1:
            await anyio.sleep(5)
        return Num(n=t.attempt)

    @workflow("tretry")
    def tretry(ctx: Any) -> Any:
        return Task("m", maybe_slow, output=Num, timeout_ms=50, retries=1, backoff_ms=1)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(tretry)
        assert status == "finished"
        assert h.output(rid, "m") == {"n": 2}
        assert h.find(rid, "NodeFailed")[0]["error"]["code"] == "TASK_TIMEOUT"


async def test_heartbeat_timeout(tmp_path: Path) -> None:
    async def silent(t: Any) -> Num:
        t.heartbeat({"step": 1})
        await anyio.sleep(5)
        return Num(n=1)

    @workflow("hbtimeout")
    def hbtimeout(ctx: Any) -> Any:
        return Task("silent", silent, output=Num, heartbeat_timeout_ms=80)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(hbtimeout)
        assert status == "failed"
        assert h.node_types(rid, "silent") == [
            "NodePending",
            "NodeStarted",
            "TaskHeartbeat",
            "TaskHeartbeatTimeout",
            "NodeFailed",
        ]
        timeout_ev = h.find(rid, "TaskHeartbeatTimeout")[0]
        assert timeout_ev["attempt"] == 1 and timeout_ev["timeoutMs"] == 80
        assert isinstance(timeout_ev["lastHeartbeatAtMs"], int)
        assert h.error(rid)["code"] == "TASK_HEARTBEAT_TIMEOUT"
        assert h.find(rid, "NodeFailed")[0]["error"]["code"] == "TASK_HEARTBEAT_TIMEOUT"


async def test_heartbeats_keep_task_alive_and_are_throttled(tmp_path: Path) -> None:
    async def beating(t: Any) -> Num:
        for i in range(10):  # a burst: one write
            t.heartbeat({"i": i})
        await anyio.sleep(0.07)  # past the 50 ms throttle
        t.heartbeat({"i": 10})
        for _ in range(4):  # heartbeats every 40 ms keep an 80 ms watchdog quiet
            await anyio.sleep(0.04)
            t.heartbeat()
        return Num(n=1)

    @workflow("beats")
    def beats(ctx: Any) -> Any:
        return Task("beating", beating, output=Num, heartbeat_timeout_ms=80)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(beats)
        assert status == "finished"
        hbs = h.find(rid, "TaskHeartbeat")
        assert "TaskHeartbeatTimeout" not in h.types(rid)
        # 16 heartbeat calls, at most one write per 50 ms
        assert 2 <= len(hbs) <= 5
        assert hbs[0]["hasData"] is True and hbs[0]["dataSizeBytes"] == len('{"i":0}')
        assert "intervalMs" not in hbs[0]
        assert hbs[1]["hasData"] is True and hbs[1]["intervalMs"] >= 50
        attempt = h.attempts(rid, "beating")[0]
        assert attempt["heartbeatAtMs"] is not None
        assert attempt["heartbeatDataJson"] == '{"i":10}'


async def test_log_lines_become_node_output(tmp_path: Path) -> None:
    def chatty(t: Any) -> Num:
        t.log("hello")
        t.log("hello")  # identical lines are both kept
        t.log("oops", stream="stderr")
        return Num(n=1)

    @workflow("logs")
    def logs(ctx: Any) -> Any:
        return Task("chatty", chatty, output=Num)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(logs)
        assert status == "finished"
        outs = h.find(rid, "NodeOutput")
        assert [(o["text"], o["stream"]) for o in outs] == [
            ("hello", "stdout"),
            ("hello", "stdout"),
            ("oops", "stderr"),
        ]
        assert all(o["nodeId"] == "chatty" and o["attempt"] == 1 for o in outs)
        types = h.node_types(rid, "chatty")
        assert types.index("NodeStarted") < types.index("NodeOutput")
        assert types[-1] == "NodeFinished"


async def test_last_heartbeat_handed_to_next_attempt(tmp_path: Path) -> None:
    seen: list[Any] = []

    def checkpointed(t: Any) -> Num:
        seen.append(t.last_heartbeat)
        if t.attempt == 1:
            t.heartbeat({"done": 3})
            raise Boom("crash after checkpoint")
        return Num(n=t.last_heartbeat["done"])

    @workflow("ckpt")
    def ckpt(ctx: Any) -> Any:
        return Task("c", checkpointed, output=Num, retries=1, backoff_ms=1)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(ckpt)
        assert status == "finished"
        assert seen == [None, {"done": 3}]
        assert h.output(rid, "c") == {"n": 3}
