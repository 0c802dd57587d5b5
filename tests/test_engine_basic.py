"""Engine basics: the happy path, frames, sync/async tasks, needs/after and concurrency."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Par, Seq, Task
from tests.engine_helpers import Harness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class Num(BaseModel):
    n: int


class Text(BaseModel):
    text: str


class In(BaseModel):
    start: int = 1


def test_options_are_small() -> None:
    from tests.engine_helpers import engine_options

    opts = engine_options()
    assert opts.timer_tick_ms == 20 and opts.cancel_poll_ms == 20


async def test_happy_path_events_frames_outputs(tmp_path: Path) -> None:
    @workflow("happy", input=In)
    def happy(ctx: Any) -> Any:
        return Seq(
            Task("a", lambda t: Num(n=t.input.start + 1), output=Num),
            Task("b", lambda t, a: Num(n=a.n * 10), output=Num, needs={"a": "a"}),
            Task("c", lambda t: Text(text="done"), output=Text, after=["b"]),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(happy, {"start": 4})
        assert status == "finished", h.error(rid)
        assert h.types(rid) == [
            "RunStarted",
            "NodePending",
            "NodePending",
            "NodePending",
            "FrameCommitted",
            "NodeStarted",
            "NodeFinished",
            "NodeStarted",
            "NodeFinished",
            "NodeStarted",
            "NodeFinished",
            "RunFinished",
        ]
        events = h.events(rid)
        assert [e["nodeId"] for e in events if e["type"] == "NodePending"] == ["a", "b", "c"]
        assert [(e["nodeId"], e["attempt"]) for e in events if e["type"] == "NodeStarted"] == [
            ("a", 1),
            ("b", 1),
            ("c", 1),
        ]
        run = h.run(rid)
        assert run["status"] == "finished"
        assert run["workflowName"] == "happy"
        assert run["summary"] == {"finished": 3}
        assert run["finishedAtMs"] is not None
        assert run["runtimeOwnerId"] is None and run["heartbeatAtMs"] is None
        assert run["errorJson"] is None
        assert run["runState"]["state"] == "succeeded"
        assert h.output(rid, "a") == {"n": 5}
        assert h.output(rid, "b") == {"n": 50}
        assert h.output(rid, "c") == {"text": "done"}
        assert h.db.input_of(rid) == {"start": 4}

        frames = h.db.list_frames(rid)
        assert [f["frameNo"] for f in frames] == [1]
        frame = frames[0]
        committed = h.find(rid, "FrameCommitted")[0]
        assert committed["frameNo"] == 1 and committed["xmlHash"] == frame["xmlHash"]
        assert hashlib.sha256(frame["xmlJson"].encode()).hexdigest() == frame["xmlHash"]
        tree = json.loads(frame["xmlJson"])
        # canonical: sorted keys, compact separators
        assert frame["xmlJson"] == json.dumps(
            tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        assert tree["kind"] == "element"
        assert tree["tag"] == "smithers:workflow"
        assert tree["props"] == {"name": "happy"}
        seq = tree["children"][0]
        assert seq["tag"] == "smithers:sequence"
        tasks = seq["children"]
        assert [t["tag"] for t in tasks] == ["smithers:task"] * 3
        assert tasks[0]["props"] == {
            "id": "a",
            "iteration": "0",
            "kind": "compute",
            "output": "Num",
        }
        assert all(list(t["props"]) == sorted(t["props"]) for t in tasks)
        assert json.loads(frame["mountedTaskIdsJson"]) == ["a::0", "b::0", "c::0"]
        assert json.loads(frame["taskIndexJson"]) == [
            {"nodeId": "a", "ordinal": 0, "iteration": 0},
            {"nodeId": "b", "ordinal": 1, "iteration": 0},
            {"nodeId": "c", "ordinal": 2, "iteration": 0},
        ]


async def test_frame_committed_only_when_tree_changes(tmp_path: Path) -> None:
    @workflow("grow")
    def grow(ctx: Any) -> Any:
        first = ctx.output_maybe("a", Num)
        return Seq(
            Task("a", lambda t: Num(n=1), output=Num),
            Task("b", lambda t: Num(n=2), output=Num) if first is not None else None,
            Task("c", lambda t: Num(n=3), output=Num),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(grow)
        assert status == "finished"
        assert h.types(rid) == [
            "RunStarted",
            "NodePending",
            "NodePending",
            "FrameCommitted",
            "NodeStarted",
            "NodeFinished",
            "NodePending",
            "FrameCommitted",
            "NodeStarted",
            "NodeFinished",
            "NodeStarted",
            "NodeFinished",
            "RunFinished",
        ]
        frames = sorted(h.db.list_frames(rid), key=lambda f: f["frameNo"])
        assert [f["frameNo"] for f in frames] == [1, 2]
        assert frames[0]["xmlHash"] != frames[1]["xmlHash"]
        assert json.loads(frames[1]["mountedTaskIdsJson"]) == ["a::0", "b::0", "c::0"]
        assert [e["frameNo"] for e in h.find(rid, "FrameCommitted")] == [1, 2]


async def test_static_value_task_and_empty_workflow(tmp_path: Path) -> None:
    @workflow("static")
    def static(ctx: Any) -> Any:
        return Task("v", value=Num(n=7), output=Num)

    @workflow("empty")
    def empty(ctx: Any) -> Any:
        return None

    async with Harness(tmp_path) as h:
        rid, status = await h.start(static)
        assert status == "finished"
        assert h.output(rid, "v") == {"n": 7}
        frame = json.loads(h.db.get_frame(rid)["xmlJson"])  # type: ignore[index]
        assert frame["children"][0]["props"]["kind"] == "static"

        rid2, status2 = await h.start(empty)
        assert status2 == "finished"
        assert h.types(rid2) == ["RunStarted", "FrameCommitted", "RunFinished"]


async def test_sync_task_runs_in_worker_thread_async_in_loop(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    loop_thread = threading.get_ident()

    def sync_fn(t: Any) -> Num:
        seen["sync_thread"] = threading.get_ident()
        return Num(n=1)

    async def async_fn(t: Any, s: Num) -> Num:
        seen["async_thread"] = threading.get_ident()
        seen["dep"] = s
        await anyio.sleep(0)
        return Num(n=s.n + 1)

    @workflow("threads")
    def threads(ctx: Any) -> Any:
        return Seq(
            Task("s", sync_fn, output=Num),
            Task("a", async_fn, output=Num, needs={"s": "s"}),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(threads)
        assert status == "finished"
        assert seen["sync_thread"] != loop_thread
        assert seen["async_thread"] == loop_thread
        assert isinstance(seen["dep"], Num) and seen["dep"].n == 1
        assert h.output(rid, "a") == {"n": 2}


async def test_needs_injects_validated_model_after_only_orders(tmp_path: Path) -> None:
    order: list[str] = []
    received: dict[str, Any] = {}

    async def first(t: Any) -> dict[str, Any]:
        await anyio.sleep(0.05)
        order.append("first")
        return {"n": "41"}  # coerced by the model

    def second(t: Any) -> Num:
        order.append("second")
        return Num(n=0)

    def third(t: Any, x: Num, y: Num | None = None) -> Text:
        order.append("third")
        received["x"] = x
        received["y"] = y
        return Text(text=str(x.n))

    @workflow("deps")
    def deps(ctx: Any) -> Any:
        return Par(
            Task("first", first, output=Num),
            Task("second", second, output=Num, after=["first"]),
            Task("third", third, output=Text, needs={"x": "first"}, after=["second"]),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(deps)
        assert status == "finished"
        assert order == ["first", "second", "third"]
        assert isinstance(received["x"], Num) and received["x"].n == 41
        assert received["y"] is None
        assert h.output(rid, "first") == {"n": 41}
        assert h.output(rid, "third") == {"text": "41"}


async def test_par_runs_children_concurrently(tmp_path: Path) -> None:
    ev_a, ev_b = anyio.Event(), anyio.Event()

    async def a(t: Any) -> Num:
        ev_a.set()
        with anyio.fail_after(3):
            await ev_b.wait()
        return Num(n=1)

    async def b(t: Any) -> Num:
        ev_b.set()
        with anyio.fail_after(3):
            await ev_a.wait()
        return Num(n=2)

    @workflow("par")
    def par(ctx: Any) -> Any:
        return Par(Task("a", a, output=Num), Task("b", b, output=Num))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(par)
        assert status == "finished"
        types = h.types(rid)
        # both started before either finished
        assert types[: types.index("NodeFinished")].count("NodeStarted") == 2
        frame = json.loads(h.db.get_frame(rid)["xmlJson"])  # type: ignore[index]
        assert frame["children"][0]["tag"] == "smithers:parallel"


class _Gauge:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def work(self, t: Any) -> Num:
        self.now += 1
        self.peak = max(self.peak, self.now)
        await anyio.sleep(0.03)
        self.now -= 1
        return Num(n=1)


async def test_par_max_concurrency_serialises(tmp_path: Path) -> None:
    gauge = _Gauge()

    @workflow("par1")
    def par1(ctx: Any) -> Any:
        return Par(
            *(Task(f"t{i}", gauge.work, output=Num) for i in range(3)),
            max_concurrency=1,
            id="p",
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(par1)
        assert status == "finished"
        assert gauge.peak == 1
        assert h.run(rid)["summary"] == {"finished": 3}
        frame = json.loads(h.db.get_frame(rid)["xmlJson"])  # type: ignore[index]
        assert frame["children"][0]["props"] == {"id": "p", "maxConcurrency": "1"}


async def test_workflow_max_concurrency(tmp_path: Path) -> None:
    gauge = _Gauge()

    @workflow("wfcap", max_concurrency=2)
    def wfcap(ctx: Any) -> Any:
        return Par(*(Task(f"t{i}", gauge.work, output=Num) for i in range(5)))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(wfcap)
        assert status == "finished"
        assert gauge.peak == 2
        assert h.run(rid)["summary"] == {"finished": 5}
