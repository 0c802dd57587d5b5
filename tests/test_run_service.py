"""RunService operations the hosts share: rerun, listing, run shapes (D7 Q10, Q11)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from smithers_core import Task, workflow
from smithers_core.errors import SmithersError
from tests.engine_helpers import Harness

pytestmark = pytest.mark.anyio


class In(BaseModel):
    n: int = 1
    label: str = "x"


class Out(BaseModel):
    doubled: int


@workflow("double", input=In)
def double(ctx):  # type: ignore[no-untyped-def]
    return Task("d", lambda t: Out(doubled=t.input.n * 2), output=Out)


async def test_rerun_uses_the_stored_validated_input(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        first, status = await h.start(double, {"n": 21})
        assert status == "finished"
        result = await h.svc.rerun(first, double, new_run_id="again")
        assert result == {"runId": "again", "status": "running"}
        assert await h.settle("again") == "finished"
        assert h.output("again", "d") == {"doubled": 42}
        assert h.svc.db.input_of("again") == {"n": 21, "label": "x"}
        with pytest.raises(SmithersError) as err:
            await h.svc.rerun("nope", double)
        assert err.value.code == "RUN_NOT_FOUND"


async def test_list_runs_newest_first_with_exact_status_filter(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        ids = []
        for i in range(3):
            rid, _ = await h.start(double, {"n": i})
            ids.append(rid)
        runs = await h.svc.list_runs(limit=2)
        assert [r["runId"] for r in runs] == [ids[2], ids[1]]
        assert await h.svc.list_runs(status="running") == []
        assert len(await h.svc.list_runs(status="finished")) == 3


async def test_get_run_shape(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        rid, _ = await h.start(double, {"n": 2})
        run = await h.svc.get_run(rid)
        assert set(run) >= {
            "runId",
            "parentRunId",
            "workflowName",
            "workflowPath",
            "workflowHash",
            "status",
            "createdAtMs",
            "startedAtMs",
            "finishedAtMs",
            "heartbeatAtMs",
            "runtimeOwnerId",
            "cancelRequestedAtMs",
            "errorJson",
            "configJson",
            "summary",
            "runState",
        }
        assert run["summary"] == {"finished": 1}
        assert run["runState"]["state"] == "succeeded"
        assert run["runState"]["computedAt"].endswith("Z")
        with pytest.raises(SmithersError) as err:
            await h.svc.get_run("missing")
        assert err.value.code == "RUN_NOT_FOUND"


async def test_run_config_max_concurrency_caps_parallel_tasks(tmp_path: Path) -> None:
    import anyio

    from smithers_core import Par

    state = {"now": 0, "peak": 0}

    async def work(t):  # type: ignore[no-untyped-def]
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await anyio.sleep(0.02)
        state["now"] -= 1
        return Out(doubled=0)

    @workflow("fan")
    def fan(ctx):  # type: ignore[no-untyped-def]
        return Par(*[Task(f"t{i}", work, output=Out) for i in range(4)])

    async with Harness(tmp_path, fan) as h:
        _, status = await h.start(fan, {}, config={"maxConcurrency": 1})
        assert status == "finished" and state["peak"] == 1
        state["peak"] = 0
        _, status = await h.start(fan, {})
        assert status == "finished" and state["peak"] == 4  # the workflow default (4)


def test_run_auth_for_each_trigger() -> None:
    from smithers_core.auth import Identity
    from smithers_core.workflow.models import RunAuth

    rpc = RunAuth.for_trigger("rpc", Identity(role="admin", scopes=("run:read",), user_id="u"))
    assert (rpc.triggered_by, rpc.role, rpc.scopes) == ("u", "admin", ["run:read"])
    anon = RunAuth.for_trigger("rpc", Identity(role="operator", scopes=("*",)))
    assert anon.triggered_by == "gateway"
    for kind, who, role in [
        ("server", "server", "operator"),
        ("cli", "cli", "operator"),
        ("cron", "cron:gateway", "system"),
        ("timer", "timer:gateway", "system"),
        ("webhook:gh", "webhook:gh", "system"),
    ]:
        auth = RunAuth.for_trigger(kind)
        assert (auth.triggered_by, auth.role) == (who, role)
        assert auth.model_dump(by_alias=True)["createdAt"].endswith("Z")
