"""The signal payload check finds a parked wait's model without a render (issue 14), and
falls back to rendering when this process does not know the wait (after a restart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from smithers_core.engine import signal_check
from smithers_core.engine.wait_models import WaitModels
from smithers_core.errors import SmithersError
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Par, Seq, Task, WaitSignal
from tests.engine_helpers import Harness, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class Ack(BaseModel):
    url: str


class Other(BaseModel):
    n: int


@workflow("wm-one")
def wm_one(ctx: Any) -> Any:
    return Seq(WaitSignal("ack", signal="go", output=Ack), Task("t", lambda t: Ack(url="x")))


@workflow("wm-two")
def wm_two(ctx: Any) -> Any:
    # two waits for one signal: the first in tree order (same start) takes it
    return Par(WaitSignal("first", signal="go", output=Other), WaitSignal("second", signal="go"))


def _no_render(*_a: Any, **_k: Any) -> Any:
    raise AssertionError("rendered the workflow to check a signal")


async def test_parked_wait_checked_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Harness(tmp_path) as h:
        rid, status = await h.start(wm_one)
        assert status == "waiting-event"
        assert h.engine.wait_models.lookup(rid, [("ack", 0)]) == {("ack", 0): (0, Ack)}
        # a render would raise, and the fallback swallows errors (no 400): a 400 here means
        # the model came from memory
        monkeypatch.setattr(signal_check, "_wait_model", _no_render)
        with pytest.raises(SmithersError) as info:
            await h.svc.deliver_signal(rid, "go", {"nope": 1})
        assert info.value.code == "INVALID_INPUT"
        assert info.value.details is not None
        assert (info.value.details["nodeId"], info.value.details["iteration"]) == ("ack", 0)
        assert h.db.list_signals(rid) == []
        await h.svc.deliver_signal(rid, "go", {"url": "ok"})
        assert await h.settle(rid) == "finished"
        assert len(h.engine.wait_models) == 0  # forgotten once the run stopped waiting


async def test_unknown_wait_falls_back_to_render(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        rid, _ = await h.start(wm_one)
        h.engine.wait_models.forget(rid)  # as after a restart: this process never parked it
        with pytest.raises(SmithersError) as info:
            await h.svc.deliver_signal(rid, "go", {"nope": 1})
        assert info.value.code == "INVALID_INPUT"
        assert h.db.list_signals(rid) == []


async def test_two_waits_first_in_tree_order_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Harness(tmp_path) as h:
        rid, status = await h.start(wm_two)
        assert status == "waiting-event"
        monkeypatch.setattr(signal_check, "_wait_model", _no_render)
        with pytest.raises(SmithersError) as info:
            await h.svc.deliver_signal(rid, "go", {"url": "not an n"})
        assert info.value.details is not None and info.value.details["nodeId"] == "first"
        await h.svc.deliver_signal(rid, "go", {"n": 1})
        await wait_for(lambda: h.db.list_signals(rid)[0]["consumedNodeId"] == "first")
        # 'second' still waits, and the next signal's check knows only it now
        await wait_for(lambda: h.engine.wait_models.lookup(rid, [("first", 0)]) is None)


def test_wait_models_bounded_and_all_or_nothing() -> None:
    wm = WaitModels(max_runs=2)
    wm.remember("a", {("w", 0): (0, Ack)})
    wm.remember("b", {("w", 0): (1, None)})
    assert wm.lookup("a", [("w", 0), ("x", 0)]) is None  # one unknown key: render instead
    wm.remember("c", {("w", 0): (0, Ack)})
    assert len(wm) == 2 and wm.lookup("a", [("w", 0)]) is None  # the oldest run went first
    assert wm.lookup("b", [("w", 0)]) == {("w", 0): (1, None)}
    wm.remember("b", {})
    assert wm.lookup("b", [("w", 0)]) is None
