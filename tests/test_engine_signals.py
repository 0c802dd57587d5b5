"""Signals and WaitSignal (D4): correlation, buffering, consumption, rejection, ordering between
waits, refusal for terminal runs, and wait timeouts resumed by the supervisor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from smithers_core import jsonutil
from smithers_core.errors import SmithersError
from smithers_core.store import runs, signals
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Approval, Par, Seq, Task, WaitSignal
from tests.engine_helpers import Harness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class Ack(BaseModel):
    url: str
    healthy: bool = True


class Echo(BaseModel):
    text: str


def _echo(t: Any, ack: Ack) -> Echo:
    return Echo(text=ack.url)


@workflow("sig-basic")
def sig_basic(ctx: Any) -> Any:
    return Seq(
        WaitSignal("deploy-ack", signal="deploy.completed", output=Ack),
        Task("echo", _echo, output=Echo, needs={"ack": "deploy-ack"}),
    )


@workflow("sig-corr", input=None)
def sig_corr(ctx: Any) -> Any:
    return Seq(
        WaitSignal("ack", signal="deploy.completed", output=Ack, correlation_id="v2"),
        Task("echo", _echo, output=Echo, needs={"ack": "ack"}),
    )


async def test_signal_without_correlation(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        rid, status = await h.start(sig_basic)
        assert status == "waiting-event"
        run = h.run(rid)
        assert run["runState"]["state"] == "waiting-event"
        assert run["runState"]["blocked"] == {
            "kind": "event",
            "nodeId": "deploy-ack",
            "correlationKey": "deploy.completed",
        }
        assert h.nodes(rid) == {"deploy-ack": "waiting-event", "echo": "pending"}
        attempt = h.attempts(rid, "deploy-ack")[0]
        assert attempt["state"] == "waiting-event"

        result = await h.svc.deliver_signal(
            rid, "deploy.completed", {"url": "https://x"}, received_by="ci"
        )
        assert result["seq"] == 0 and result["signalName"] == "deploy.completed"
        assert result["correlationId"] is None and isinstance(result["receivedAtMs"], int)
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "deploy-ack") == {"url": "https://x", "healthy": True}
        assert h.output(rid, "echo") == {"text": "https://x"}
        received = h.find(rid, "SignalReceived")
        assert len(received) == 1
        assert {k: received[0][k] for k in ("signalName", "correlationId", "seq")} == {
            "signalName": "deploy.completed",
            "correlationId": None,
            "seq": 0,
        }
        assert h.node_types(rid, "deploy-ack") == ["NodePending", "NodeFinished"]
        assert h.find(rid, "NodeFinished", nodeId="deploy-ack")[0]["attempt"] == 1
        sig = h.db.list_signals(rid)[0]
        assert sig["consumedNodeId"] == "deploy-ack"
        assert sig["consumedIteration"] == 0
        assert isinstance(sig["consumedAtMs"], int)
        assert sig["receivedBy"] == "ci"
        assert sig["rejectedAtMs"] is None


async def test_signal_with_correlation_and_wrong_correlation_ignored(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        rid, status = await h.start(sig_corr)
        assert status == "waiting-event"
        assert h.run(rid)["runState"]["blocked"]["correlationKey"] == "v2"
        n_events = len(h.events(rid))
        await h.svc.deliver_signal(rid, "deploy.completed", {"url": "wrong"}, correlation_id="v1")
        await h.svc.deliver_signal(rid, "deploy.completed", {"url": "none"})  # None != "v2"
        await h.svc.deliver_signal(rid, "other", {"url": "other"}, correlation_id="v2")
        # nothing resumes: no engine picks the run up and it stays parked
        assert rid not in h.engine.active
        assert h.status(rid) == "waiting-event"
        assert h.types(rid)[n_events:] == ["SignalReceived"] * 3
        assert h.nodes(rid)["ack"] == "waiting-event"

        await h.svc.deliver_signal(rid, "deploy.completed", {"url": "right"}, correlation_id="v2")
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "ack")["url"] == "right"
        signals = h.db.list_signals(rid)
        assert [s["consumedNodeId"] for s in signals] == [None, None, None, "ack"]
        assert [s["seq"] for s in signals] == [0, 1, 2, 3]


async def test_signal_before_the_wait_is_buffered(tmp_path: Path) -> None:
    @workflow("sig-early")
    def sig_early(ctx: Any) -> Any:
        return Seq(
            Approval("gate"),
            WaitSignal("go", output=Ack),
            Task("echo", _echo, output=Echo, needs={"ack": "go"}),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(sig_early)
        assert status == "waiting-approval"
        await h.svc.deliver_signal(rid, "go", {"url": "early"})
        assert h.status(rid) == "waiting-approval"  # not waiting for it yet: stays parked
        assert rid not in h.engine.active
        await h.svc.decide_approval(rid, "gate", approved=True)
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "echo") == {"text": "early"}
        assert h.db.list_signals(rid)[0]["consumedNodeId"] == "go"
        assert "RunStatusChanged" not in h.types(rid)[h.types(rid).index("ApprovalGranted") :]


async def test_invalid_payload_refused_at_once_then_good_payload_resolves(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        rid, _ = await h.start(sig_basic)
        # issue 13: the run waits for it, so the wait's model checks the payload at once
        with pytest.raises(SmithersError) as info:
            await h.svc.deliver_signal(rid, "deploy.completed", {"nope": 1})
        assert info.value.code == "INVALID_INPUT"
        assert info.value.details is not None and info.value.details["nodeId"] == "deploy-ack"
        assert [i["loc"] for i in info.value.details["issues"]] == [("url",)]
        assert h.db.list_signals(rid) == [] and h.find(rid, "SignalReceived") == []
        assert h.status(rid) == "waiting-event"

        await h.svc.deliver_signal(rid, "deploy.completed", {"url": "ok"})
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "deploy-ack")["url"] == "ok"
        assert [s["consumedNodeId"] for s in h.db.list_signals(rid)] == ["deploy-ack"]


async def test_buffered_invalid_payload_rejected_at_consumption(tmp_path: Path) -> None:
    release = anyio.Event()

    async def _hold(t: Any) -> Echo:
        await release.wait()
        return Echo(text="held")

    @workflow("sig-late")
    def sig_late(ctx: Any) -> Any:
        return Seq(
            Task("hold", _hold, output=Echo),
            WaitSignal("deploy-ack", signal="deploy.completed", output=Ack),
        )

    async with Harness(tmp_path) as h:
        rid = await h.launch(sig_late)
        # nothing waits yet: the signal is buffered, then refused when the wait consumes it
        await h.svc.deliver_signal(rid, "deploy.completed", {"nope": 1})
        release.set()
        assert await h.settle(rid) == "waiting-event"
        rejected = h.find(rid, "SignalRejected")
        assert len(rejected) == 1
        assert rejected[0]["signalName"] == "deploy.completed"
        assert rejected[0]["correlationId"] is None and rejected[0]["seq"] == 0
        assert rejected[0]["error"]["code"] == "INVALID_INPUT"
        assert h.nodes(rid)["deploy-ack"] == "waiting-event"
        sig = h.db.list_signals(rid)[0]
        assert sig["consumedNodeId"] is None and sig["rejectedAtMs"] is not None

        await h.svc.deliver_signal(rid, "deploy.completed", {"url": "ok"})
        assert await h.settle(rid) == "finished"
        assert [s["consumedNodeId"] for s in h.db.list_signals(rid)] == [None, "deploy-ack"]
        assert len(h.find(rid, "SignalRejected")) == 1


async def test_two_waits_first_started_takes_lowest_seq(tmp_path: Path) -> None:
    class N(BaseModel):
        n: int

    async def _pre(t: Any) -> N:
        await anyio.sleep(0.02)
        return N(n=0)

    @workflow("sig-two")
    def sig_two(ctx: Any) -> Any:
        # w2 starts first (w1 waits for "pre"), although w1 comes first in the tree
        return Par(
            Seq(Task("pre", _pre, output=N), WaitSignal("w1", signal="s", output=N)),
            WaitSignal("w2", signal="s", output=N),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(sig_two)
        assert status == "waiting-event"
        a1 = h.attempts(rid, "w1")[0]
        a2 = h.attempts(rid, "w2")[0]
        assert a2["startedAtMs"] < a1["startedAtMs"]
        await h.svc.deliver_signal(rid, "s", {"n": 1})
        assert await h.settle(rid) == "waiting-event"
        assert h.nodes(rid)["w2"] == "finished"
        assert h.nodes(rid)["w1"] == "waiting-event"
        assert h.output(rid, "w2") == {"n": 1}
        await h.svc.deliver_signal(rid, "s", {"n": 2})
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "w1") == {"n": 2}


async def test_two_waits_same_start_tree_order_and_seq_order(tmp_path: Path) -> None:
    class N(BaseModel):
        n: int

    @workflow("sig-two-same")
    def sig_two_same(ctx: Any) -> Any:
        return Par(WaitSignal("w1", signal="s", output=N), WaitSignal("w2", signal="s", output=N))

    async with Harness(tmp_path, supervise=False) as h:
        rid, status = await h.start(sig_two_same)
        assert status == "waiting-event"

        # both signals are stored before the run resumes (one transaction, as two deliveries
        # racing the resume would be), then the run is woken once
        def both(tx: Any) -> None:
            for n in (1, 2):
                signals.receive_signal(tx, rid, "s", None, jsonutil.dumps({"n": n}), "test")
            runs.bump_inbox(tx, rid)
            runs.reopen_run(tx, rid)

        await h.engine.store.write(both)
        h.engine.request_resume(rid)
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "w1") == {"n": 1}
        assert h.output(rid, "w2") == {"n": 2}


async def test_signal_to_terminal_run_refused(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        rid, _ = await h.start(sig_basic)
        await h.svc.deliver_signal(rid, "deploy.completed", {"url": "x"})
        assert await h.settle(rid) == "finished"
        n = len(h.events(rid))
        with pytest.raises(SmithersError) as info:
            await h.svc.deliver_signal(rid, "deploy.completed", {"url": "late"})
        assert info.value.code == "RUN_NOT_ACTIVE"
        assert len(h.events(rid)) == n
        assert len(h.db.list_signals(rid)) == 1
        with pytest.raises(SmithersError) as info:
            await h.svc.deliver_signal("missing", "x", {})
        assert info.value.code == "RUN_NOT_FOUND"
        for bad in ("", "   "):
            with pytest.raises(SmithersError) as info:
                await h.svc.deliver_signal(rid, bad, {})
            assert info.value.code == "INVALID_INPUT"


async def test_signal_to_cancelled_and_failed_runs_refused(tmp_path: Path) -> None:
    @workflow("sig-fail")
    def sig_fail(ctx: Any) -> Any:
        return Task("x", lambda t: 1 / 0)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(sig_fail)
        assert status == "failed"
        with pytest.raises(SmithersError) as info:
            await h.svc.deliver_signal(rid, "s")
        assert info.value.code == "RUN_NOT_ACTIVE"
        rid2, _ = await h.start(sig_basic)
        await h.svc.cancel(rid2)
        with pytest.raises(SmithersError) as info:
            await h.svc.deliver_signal(rid2, "deploy.completed", {"url": "x"})
        assert info.value.code == "RUN_NOT_ACTIVE"


async def test_wait_timeout_fail(tmp_path: Path) -> None:
    @workflow("sig-timeout-fail")
    def wf(ctx: Any) -> Any:
        return Seq(
            WaitSignal("w", output=Ack, timeout_ms=100, on_timeout="fail"),
            Task("after", lambda t: Echo(text="x"), output=Echo),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(wf)
        assert status == "waiting-event"
        row = h.row(rid)
        assert row["wake_at_ms"] is not None
        assert row["runtime_owner_id"] is None
        # the supervisor's timer wheel resumes it once the wait timed out
        assert await h.settle(rid) == "failed"
        err = h.error(rid)
        assert err["code"] == "TASK_TIMEOUT"
        assert err["details"]["nodeId"] == "w"
        assert h.nodes(rid) == {"w": "failed", "after": "pending"}
        assert h.node_types(rid, "w")[-1] == "NodeFailed"
        attempt = h.attempts(rid, "w")[0]
        assert attempt["state"] == "failed"
        assert attempt["finishedAtMs"] - attempt["startedAtMs"] >= 100
        # a late signal is refused
        with pytest.raises(SmithersError):
            await h.svc.deliver_signal(rid, "w", {"url": "late"})


async def test_wait_timeout_skip(tmp_path: Path) -> None:
    got: dict[str, Any] = {}

    def after(t: Any, ack: Ack | None) -> Echo:
        got["ack"] = ack
        return Echo(text="skipped" if ack is None else ack.url)

    @workflow("sig-timeout-skip")
    def wf(ctx: Any) -> Any:
        return Seq(
            WaitSignal("w", output=Ack, timeout_ms=500, on_timeout="skip"),
            Task("after", after, output=Echo, needs={"ack": "w"}),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(wf)
        assert status == "waiting-event"
        assert await h.settle(rid) == "finished"
        assert h.nodes(rid) == {"w": "skipped", "after": "finished"}
        assert "ack" in got and got["ack"] is None
        assert h.output(rid, "after") == {"text": "skipped"}
        assert h.node_types(rid, "w")[-1] == "NodeSkipped"
        assert h.attempts(rid, "w")[0]["state"] == "skipped"


async def test_signal_arriving_in_time_beats_timeout(tmp_path: Path) -> None:
    @workflow("sig-in-time")
    def wf(ctx: Any) -> Any:
        return WaitSignal("w", output=Ack, timeout_ms=2_000, on_timeout="fail")

    async with Harness(tmp_path) as h:
        rid, status = await h.start(wf)
        assert status == "waiting-event"
        await h.svc.deliver_signal(rid, "w", {"url": "fast"})
        assert await h.settle(rid) == "finished"
        assert h.row(rid)["wake_at_ms"] is None


async def test_signal_while_running_is_consumed_without_parking(tmp_path: Path) -> None:
    started = anyio.Event()
    release = anyio.Event()

    async def slow(t: Any) -> Echo:
        started.set()
        with anyio.fail_after(3):
            await release.wait()
        return Echo(text="done")

    @workflow("sig-live")
    def wf(ctx: Any) -> Any:
        return Par(Task("slow", slow, output=Echo), WaitSignal("w", output=Ack))

    async with Harness(tmp_path) as h:
        rid = await h.launch(wf)
        with anyio.fail_after(3):
            await started.wait()
        await h.svc.deliver_signal(rid, "w", {"url": "live"})
        release.set()
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "w") == {"url": "live", "healthy": True}
        assert "RunStatusChanged" not in h.types(rid)


async def test_signal_after_the_deadline_does_not_resolve_the_wait(tmp_path: Path) -> None:
    from smithers_core.clock import now_ms
    from tests.engine_helpers import wait_for

    @workflow("sig-late")
    def wf(ctx: Any) -> Any:
        return WaitSignal("w", output=Ack, timeout_ms=50, on_timeout="fail")

    # no supervisor: nothing resumes the run when the wait times out
    async with Harness(tmp_path, supervise=False) as h:
        rid, status = await h.start(wf)
        assert status == "waiting-event"
        due = h.row(rid)["wake_at_ms"]
        await wait_for(lambda: now_ms() > due)
        # the signal arrives late; its delivery resumes the run, which notices the timeout
        await h.svc.deliver_signal(rid, "w", {"url": "late"})
        assert await h.settle(rid) == "failed"
        assert h.error(rid)["code"] == "TASK_TIMEOUT"
        assert h.db.list_signals(rid)[0]["consumedNodeId"] is None
        assert not h.has_output(rid, "w")
