"""Cancel (live and parked runs) and unmounting a running node by a Python ``if``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from smithers_core.errors import SmithersError
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Approval, Par, Seq, Task, Timer, WaitSignal
from tests.engine_helpers import Harness, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class Num(BaseModel):
    n: int


async def test_cancel_while_running(tmp_path: Path) -> None:
    started = anyio.Event()
    cancelled: list[bool] = []

    async def long(t: Any) -> Num:
        started.set()
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise
        return Num(n=1)

    @workflow("cancel-live")
    def cancel_live(ctx: Any) -> Any:
        return Seq(
            Task("first", lambda t: Num(n=0), output=Num),
            Par(Task("long", long, output=Num), Timer("t", duration="1h")),
            Task("never", lambda t: Num(n=2), output=Num),
        )

    async with Harness(tmp_path) as h:
        rid = await h.launch(cancel_live)
        with anyio.fail_after(3):
            await started.wait()
        result = await h.svc.cancel(rid)
        assert result == {
            "runId": rid,
            "status": "cancelling",
            "won": True,
            "terminalStatus": None,
            "repaired": False,
        }
        assert await h.settle(rid) == "cancelled"
        assert cancelled == [True]
        run = h.run(rid)
        assert run["status"] == "cancelled"
        assert run["runtimeOwnerId"] is None and run["heartbeatAtMs"] is None
        assert run["finishedAtMs"] is not None
        assert run["runState"]["state"] == "cancelled"
        assert h.nodes(rid) == {
            "first": "finished",
            "long": "cancelled",
            "t": "cancelled",
            "never": "pending",
        }
        node_cancels = h.find(rid, "NodeCancelled")
        assert [(e["nodeId"], e["reason"]) for e in node_cancels] == [
            ("long", "aborted"),
            ("t", "run-cancelled"),
        ]
        assert node_cancels[0]["attempt"] == 1
        types = h.types(rid)
        assert types[-1] == "RunCancelled"
        assert types.count("RunCancelled") == 1
        assert "TimerCancelled" in types
        assert types.index("NodeCancelled") < types.index("RunCancelled")
        attempt = h.attempts(rid, "long")[0]
        assert attempt["state"] == "cancelled" and attempt["finishedAtMs"] is not None
        # cancelling again: the run is terminal
        with pytest.raises(SmithersError) as info:
            await h.svc.cancel(rid)
        assert info.value.code == "RUN_NOT_ACTIVE"


async def test_cancel_sync_task_sets_cancelled(tmp_path: Path) -> None:
    import threading

    in_thread = threading.Event()
    saw_cancel = threading.Event()

    def spin(t: Any) -> Num:
        in_thread.set()
        for _ in range(500):
            if t.cancelled:
                saw_cancel.set()
                break
            threading.Event().wait(0.005)
        return Num(n=1)

    @workflow("cancel-sync")
    def cancel_sync(ctx: Any) -> Any:
        return Task("spin", spin, output=Num)

    async with Harness(tmp_path) as h:
        rid = await h.launch(cancel_sync)
        await wait_for(in_thread.is_set)
        assert (await h.svc.cancel(rid))["status"] == "cancelling"
        assert await h.settle(rid) == "cancelled"
        await wait_for(saw_cancel.is_set)
        assert not h.has_output(rid, "spin")
        assert h.find(rid, "NodeCancelled")[0]["reason"] == "aborted"


@workflow("parked-approval")
def parked_approval(ctx: Any) -> Any:
    return Seq(Task("a", lambda t: Num(n=1), output=Num), Approval("gate"))


@workflow("parked-event")
def parked_event(ctx: Any) -> Any:
    return WaitSignal("w", output=Num)


@workflow("parked-timer")
def parked_timer(ctx: Any) -> Any:
    return Par(Timer("t", duration="1h"), Timer("u", duration="2h"))


@pytest.mark.parametrize(
    ("wf", "parked", "expected_nodes", "tail"),
    [
        (
            parked_approval,
            "waiting-approval",
            {"a": "finished", "gate": "cancelled"},
            ["NodeCancelled", "RunCancelled"],
        ),
        (parked_event, "waiting-event", {"w": "cancelled"}, ["NodeCancelled", "RunCancelled"]),
        (
            parked_timer,
            "waiting-timer",
            {"t": "cancelled", "u": "cancelled"},
            ["TimerCancelled", "NodeCancelled", "TimerCancelled", "NodeCancelled", "RunCancelled"],
        ),
    ],
)
async def test_cancel_parked(
    tmp_path: Path, wf: Any, parked: str, expected_nodes: dict[str, str], tail: list[str]
) -> None:
    async with Harness(tmp_path) as h:
        rid, status = await h.start(wf)
        assert status == parked
        before = len(h.events(rid))
        result = await h.svc.cancel(rid)
        assert result == {
            "runId": rid,
            "status": "cancelled",
            "won": True,
            "terminalStatus": "cancelled",
            "repaired": False,
        }
        # immediately, without a driver
        assert rid not in h.engine.active
        run = h.run(rid)
        assert run["status"] == "cancelled" and run["finishedAtMs"] is not None
        assert h.row(rid)["wake_at_ms"] is None
        assert h.nodes(rid) == expected_nodes
        assert h.types(rid)[before:] == tail
        assert all(e["reason"] == "run-cancelled" for e in h.find(rid, "NodeCancelled"))
        if parked == "waiting-timer":
            assert [e["timerId"] for e in h.find(rid, "TimerCancelled")] == ["t", "u"]
            assert {a["state"] for a in h.db.list_attempts(rid)} == {"cancelled"}
        # a cancelled run is not resumed and refuses decisions and signals
        assert (await h.svc.resume(rid))["status"] == "cancelled"
        with pytest.raises(SmithersError) as info:
            await h.svc.cancel(rid)
        assert info.value.code == "RUN_NOT_ACTIVE"
        with pytest.raises(SmithersError) as info:
            await h.svc.deliver_signal(rid, "w", {"n": 1})
        assert info.value.code == "RUN_NOT_ACTIVE"


async def test_cancel_finished_run_refused(tmp_path: Path) -> None:
    @workflow("done")
    def done(ctx: Any) -> Any:
        return Task("a", lambda t: Num(n=1), output=Num)

    async with Harness(tmp_path) as h:
        rid, status = await h.start(done)
        assert status == "finished"
        with pytest.raises(SmithersError) as info:
            await h.svc.cancel(rid)
        assert info.value.code == "RUN_NOT_ACTIVE"
        assert info.value.details == {"runId": rid, "status": "finished"}
        assert h.status(rid) == "finished"
        with pytest.raises(SmithersError) as info:
            await h.svc.cancel("no-such-run")
        assert info.value.code == "RUN_NOT_FOUND"


async def test_cancel_requested_by_another_process_is_polled(tmp_path: Path) -> None:
    """A cancel request written straight to the row (as another process would) is noticed."""
    started = anyio.Event()

    async def long(t: Any) -> Num:
        started.set()
        await anyio.sleep(30)
        return Num(n=1)

    @workflow("cancel-poll")
    def cancel_poll(ctx: Any) -> Any:
        return Task("long", long, output=Num)

    async with Harness(tmp_path) as h:
        rid = await h.launch(cancel_poll)
        with anyio.fail_after(3):
            await started.wait()
        assert h.store is not None
        await h.store.write(
            lambda tx: tx.execute(
                "UPDATE _smithers_runs SET cancel_requested_at_ms = ? WHERE run_id = ?",
                (tx.now, rid),
            )
        )
        assert await h.settle(rid) == "cancelled"
        assert h.find(rid, "NodeCancelled")[0]["reason"] == "aborted"
        assert h.types(rid)[-1] == "RunCancelled"


# -- unmount ------------------------------------------------------------------------------------


async def test_unmounted_running_node_is_cancelled(tmp_path: Path) -> None:
    slow_started = anyio.Event()
    slow_attempts: list[int] = []

    async def slow(t: Any) -> Num:
        slow_attempts.append(t.attempt)
        slow_started.set()
        await anyio.sleep(30)
        return Num(n=0)

    async def flag(t: Any) -> Num:
        with anyio.fail_after(3):
            await slow_started.wait()
        return Num(n=1)

    @workflow("unmount")
    def unmount(ctx: Any) -> Any:
        flagged = ctx.output_maybe("flag") is not None
        return Par(
            Task("flag", flag, output=Num),
            None if flagged else Task("slow", slow, output=Num, retries=0),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(unmount)
        assert status == "finished"
        assert slow_attempts == [1]
        cancels = h.find(rid, "NodeCancelled")
        assert [(e["nodeId"], e["reason"], e["attempt"]) for e in cancels] == [
            ("slow", "unmounted", 1)
        ]
        attempt = h.attempts(rid, "slow")[0]
        assert attempt["state"] == "cancelled"
        assert "NodeFailed" not in h.types(rid)
        assert h.types(rid)[-1] == "RunFinished"
        assert h.nodes(rid) == {"flag": "finished", "slow": "cancelled"}
        assert not h.has_output(rid, "slow")
        frames = h.db.list_frames(rid)
        assert len(frames) == 2


async def test_remounted_node_runs_again_without_counting_unmount(tmp_path: Path) -> None:
    gate = anyio.Event()
    runs: list[int] = []

    async def worker(t: Any) -> Num:
        runs.append(t.attempt)
        if t.attempt == 1:
            gate.set()
            await anyio.sleep(30)
        return Num(n=t.attempt)

    async def toggle(t: Any) -> Num:
        with anyio.fail_after(3):
            await gate.wait()
        return Num(n=1)

    @workflow("remount")
    def remount(ctx: Any) -> Any:
        toggled = ctx.output_maybe("toggle") is not None
        after = ctx.output_maybe("after") is not None
        return Seq(
            Par(
                Task("toggle", toggle, output=Num),
                None if toggled and not after else Task("w", worker, output=Num),
            ),
            Task("after", lambda t: Num(n=9), output=Num) if toggled else None,
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(remount)
        assert status == "finished", h.error(rid)
        # attempt 1 was unmounted; retries=0, yet attempt 2 runs when w is mounted again
        assert runs == [1, 2]
        assert h.output(rid, "w") == {"n": 2}
        assert [a["state"] for a in h.attempts(rid, "w")] == ["cancelled", "finished"]
