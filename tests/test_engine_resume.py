"""Shutdown suspends (D6) and another engine picks the run up; resume after a workflow edit
(D4); the stale-run sweep; resuming is idempotent."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from smithers_core.errors import SmithersError
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.loader import load_workflow
from smithers_core.workflow.nodes import Approval, Seq, Task
from tests.engine_helpers import Harness, open_store, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class Num(BaseModel):
    n: int


async def test_shutdown_suspends_and_new_engine_finishes(tmp_path: Path) -> None:
    executions: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    b_started = anyio.Event()

    def a(t: Any) -> Num:
        executions["a"].append(t.attempt)
        return Num(n=1)

    async def b(t: Any, prev: Num) -> Num:
        executions["b"].append(t.attempt)
        if t.attempt == 1:
            b_started.set()
            await anyio.sleep(30)  # interrupted by the shutdown
        return Num(n=prev.n + 1)

    def c(t: Any) -> Num:
        executions["c"].append(t.attempt)
        return Num(n=3)

    @workflow("suspend")
    def suspend(ctx: Any) -> Any:
        return Seq(
            Task("a", a, output=Num),
            Task("b", b, output=Num, needs={"prev": "a"}),
            Task("c", c, output=Num),
        )

    store = open_store(tmp_path)
    try:
        async with Harness(tmp_path, suspend, store=store) as h1:
            rid = await h1.launch(suspend)
            with anyio.fail_after(3):
                await b_started.wait()
        # the engine has exited: the run is suspended, not cancelled
        assert h1.settled[rid] == ["suspended"]
        row = h1.row(rid)
        assert row["status"] == "running"
        assert row["runtime_owner_id"] is None and row["heartbeat_at_ms"] is None
        types = h1.types(rid)
        assert "RunCancelled" not in types and "RunFailed" not in types
        assert types[-1] == "NodeCancelled"
        cancelled = h1.find(rid, "NodeCancelled")
        assert [(e["nodeId"], e["reason"], e["attempt"]) for e in cancelled] == [
            ("b", "shutdown", 1)
        ]
        assert h1.nodes(rid) == {"a": "finished", "b": "pending", "c": "pending"}
        n_before = len(types)

        # a new engine on the same store: its start-up sweep claims and finishes the run
        async with Harness(tmp_path, suspend, store=store) as h2:
            assert await h2.settle(rid) == "finished"
            assert executions == {"a": [1], "b": [1, 2], "c": [1]}
            assert h2.output(rid, "b") == {"n": 2}
            assert [(x["attempt"], x["state"]) for x in h2.attempts(rid, "b")] == [
                (1, "cancelled"),
                (2, "finished"),
            ]
            resumed = h2.types(rid)[n_before:]
            assert resumed[0] == "RunStarted"
            assert "FrameCommitted" not in resumed  # same tree: no new frame
            assert resumed[-1] == "RunFinished"
            assert [(e["nodeId"], e["attempt"]) for e in h2.find(rid, "NodeStarted")] == [
                ("a", 1),
                ("b", 1),
                ("b", 2),
                ("c", 1),
            ]
            assert h2.run(rid)["summary"] == {"finished": 3}
    finally:
        store.close()


async def test_shutdown_with_parked_run_leaves_it_parked(tmp_path: Path) -> None:
    @workflow("parked-shutdown")
    def parked(ctx: Any) -> Any:
        return Approval("gate")

    store = open_store(tmp_path)
    try:
        async with Harness(tmp_path, parked, store=store) as h1:
            rid, status = await h1.start(parked)
            assert status == "waiting-approval"
        async with Harness(tmp_path, parked, store=store) as h2:
            # the sweep ignores parked runs
            await h2.engine.sweep()
            assert rid not in h2.engine.active
            assert h2.status(rid) == "waiting-approval"
            await h2.svc.decide_approval(rid, "gate", approved=True)
            assert await h2.settle(rid) == "finished"
    finally:
        store.close()


async def test_stale_owner_is_swept(tmp_path: Path) -> None:
    """A run owned by a process that stopped heart-beating is claimed after ``stale_after_ms``;
    its in-progress attempt becomes ``cancelled`` (reason ``abandoned``), not counted."""
    seen: list[int] = []

    def work(t: Any) -> Num:
        seen.append(t.attempt)
        return Num(n=t.attempt)

    @workflow("stale")
    def stale(ctx: Any) -> Any:
        return Task("w", work, output=Num)

    async with Harness(tmp_path, stale, stale_after_ms=100) as h:
        assert h.store is not None
        rid = "stale-run"

        def fake_crashed_owner(tx: Any) -> None:
            old = tx.now - 10_000
            tx.execute(
                "INSERT INTO _smithers_runs (run_id, workflow_name, status, created_at_ms,"
                " started_at_ms, heartbeat_at_ms, runtime_owner_id, config_json)"
                " VALUES (?, 'stale', 'running', ?, ?, ?, 'pid:999999:x@elsewhere', '{}')",
                (rid, old, old, old),
            )
            tx.execute(
                "INSERT INTO _smithers_input (run_id, payload_json) VALUES (?, '{}')", (rid,)
            )
            tx.emit(rid, "RunStarted")
            tx.execute(
                "INSERT INTO _smithers_nodes (run_id, node_id, iteration, state, last_attempt,"
                " updated_at_ms, output_table) VALUES (?, 'w', 0, 'in-progress', 1, ?, 'Num')",
                (rid, old),
            )
            tx.execute(
                "INSERT INTO _smithers_attempts (run_id, node_id, iteration, attempt, state,"
                " started_at_ms) VALUES (?, 'w', 0, 1, 'in-progress', ?)",
                (rid, old),
            )

        await h.store.write(fake_crashed_owner)
        assert await h.settle(rid) == "finished"
        assert seen == [2]
        assert [(a["attempt"], a["state"]) for a in h.attempts(rid, "w")] == [
            (1, "cancelled"),
            (2, "finished"),
        ]
        abandoned = h.find(rid, "NodeCancelled")
        assert [(e["nodeId"], e["reason"]) for e in abandoned] == [("w", "abandoned")]
        assert h.types(rid)[1:3] == ["NodeCancelled", "RunStarted"]


async def test_resume_is_idempotent(tmp_path: Path) -> None:
    @workflow("idem")
    def idem(ctx: Any) -> Any:
        return Seq(Approval("gate"), Task("x", lambda t: Num(n=1), output=Num))

    async with Harness(tmp_path) as h:
        rid, status = await h.start(idem)
        assert status == "waiting-approval"
        # resuming a parked run re-parks it (nothing decided): one RunStarted more, no new work
        assert (await h.svc.resume(rid))["status"] == "running"
        assert await h.settle(rid) == "waiting-approval"
        await h.svc.decide_approval(rid, "gate", approved=True)
        assert await h.settle(rid) == "finished"
        n = len(h.events(rid))
        assert (await h.svc.resume(rid)) == {"runId": rid, "status": "finished"}
        assert len(h.events(rid)) == n
        with pytest.raises(SmithersError) as info:
            await h.svc.resume("nope")
        assert info.value.code == "RUN_NOT_FOUND"


# -- resume after an edit -----------------------------------------------------------------------

WORKFLOW_V1 = """
from pydantic import BaseModel
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Approval, Seq, Task


class Out(BaseModel):
    value: str


COUNTS = {"a": 0}


def first(t):
    COUNTS["a"] += 1
    return Out(value="a-v1")


@workflow("edited")
def edited(ctx):
    return Seq(
        Task("a", first, output=Out),
        Approval("gate"),
        Task("b", lambda t: Out(value="b-%s"), output=Out),
    )
"""


def _write(path: Path, version: str) -> None:
    path.write_text(textwrap.dedent(WORKFLOW_V1 % version))


async def test_resume_after_edit_emits_workflow_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "wf_edit.py"
    _write(path, "v1")
    wf1 = load_workflow(path)
    assert wf1.source_path == str(path.resolve())

    async with Harness(tmp_path, use_registry=False) as h:
        rid, status = await h.start(wf1)
        assert status == "waiting-approval"
        hash1 = h.row(rid)["workflow_hash"]
        assert hash1 == wf1.source_hash
        assert h.row(rid)["workflow_path"] == str(path.resolve())

        _write(path, "v2")  # change something
        wf2 = load_workflow(path)
        assert wf2.source_hash != hash1
        # decide, then resume explicitly with the edited workflow (this host's resolver cannot)
        await h.svc.decide_approval(rid, "gate", approved=True)
        n = len(h.events(rid))
        result = await h.engine.resume(rid, wf2)
        assert result["status"] == "running" and result["resumed"] is True
        assert await h.settle(rid) == "finished"
        tail = h.events(rid)[n:]
        assert [e["type"] for e in tail[:2]] == ["WorkflowReloaded", "RunStarted"]
        assert tail[0]["previousHash"] == hash1 and tail[0]["hash"] == wf2.source_hash
        assert h.row(rid)["workflow_hash"] == wf2.source_hash
        # completed nodes keep their outputs; the edited node ran with the new code
        assert h.output(rid, "a") == {"value": "a-v1"}
        assert h.output(rid, "b") == {"value": "b-v2"}
        assert [(e["nodeId"], e["attempt"]) for e in h.find(rid, "NodeStarted")] == [
            ("a", 1),
            ("gate", 1),
            ("b", 1),
        ]


async def test_resume_with_broken_file_leaves_run_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "wf_broken.py"
    _write(path, "v1")
    wf1 = load_workflow(path)

    def resolver(row: dict[str, Any]) -> Any:
        return load_workflow(row["workflow_path"])

    async with Harness(tmp_path, resolver=resolver) as h:
        rid, status = await h.start(wf1)
        assert status == "waiting-approval"
        path.write_text("def broken(:\n    pass\n")
        with pytest.raises(SmithersError) as info:
            load_workflow(path)
        assert info.value.code == "WORKFLOW_LOAD_FAILED"

        before_events = h.events(rid)
        before_row = h.row(rid)
        # a resume that loads the file through the resolver fails the same way
        with pytest.raises(SmithersError) as info:
            await h.engine.resume(rid)
        assert info.value.code == "WORKFLOW_LOAD_FAILED"
        assert h.events(rid) == before_events
        assert h.row(rid) == before_row
        assert rid not in h.engine.active

        # fixing the file lets a later resume proceed
        _write(path, "v3")
        await h.svc.decide_approval(rid, "gate", approved=True)
        assert await h.settle(rid) == "finished"
        assert h.output(rid, "b") == {"value": "b-v3"}
        assert h.find(rid, "WorkflowReloaded")


async def test_unknown_workflow_is_left_for_another_host(tmp_path: Path) -> None:
    @workflow("elsewhere")
    def elsewhere(ctx: Any) -> Any:
        return Approval("gate")

    async with Harness(tmp_path, use_registry=False) as h:
        rid = await h.launch(elsewhere)
        assert await h.settle(rid) == "waiting-approval"
        await h.svc.decide_approval(rid, "gate", approved=True)
        # this host cannot load the workflow: the run waits, status running, unowned
        await wait_for(lambda: h.engine._resuming == set())
        await h.engine.sweep()
        assert rid not in h.engine.active
        row = h.row(rid)
        assert row["status"] == "running" and row["runtime_owner_id"] is None
        with pytest.raises(SmithersError) as info:
            await h.engine.resume(rid)
        assert info.value.code == "WORKFLOW_NOT_FOUND"
