"""Run-level tool limits: ``launchRun`` options ``toolTimeoutMs`` / ``maxOutputBytes`` are
stored in the run's config, reach every task context (also after a resume) and govern the
``bash`` tool: they are its defaults and cap the workflow's explicit values."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from smithers_core import Approval, Seq, Task, workflow
from smithers_core.tools import bash, bash_async
from tests.engine_helpers import Harness
from tests.gateway_helpers import make_gateway, running, ws_client

pytestmark = pytest.mark.timeout(20)


class Limits(BaseModel):
    timeout: int | None
    output: int | None


def _seen() -> Task:
    return Task(
        "seen",
        lambda t: Limits(timeout=t.tool_timeout_ms, output=t.max_output_bytes),
        output=Limits,
    )


@workflow("limits")
def limits(ctx):  # type: ignore[no-untyped-def]
    return _seen()


@workflow("gated_limits")
def gated_limits(ctx):  # type: ignore[no-untyped-def]
    return Seq(Approval("go"), _seen())


class Shell(BaseModel):
    stdout_len: int
    truncated: bool
    timed_out: bool
    duration_ms: int


async def _shell(t):  # type: ignore[no-untyped-def]
    # the workflow asks for a 20 s timeout and 1 MiB; the run's limits cap both
    out = await bash_async(
        "head -c 5000 /dev/zero | tr '\\0' y; sleep 10",
        timeout_ms=20_000,
        max_output_bytes=1 << 20,
        ctx=t,
    )
    return Shell(
        stdout_len=len(out.stdout),
        truncated=out.truncated,
        timed_out=out.timed_out,
        duration_ms=out.duration_ms,
    )


@workflow("shell")
def shell(ctx):  # type: ignore[no-untyped-def]
    return Task("sh", _shell, output=Shell)


def test_run_limits_are_defaults_and_caps() -> None:
    run = SimpleNamespace(allow_network=True, tool_timeout_ms=300, max_output_bytes=10)
    capped = bash("printf '%.0s-' $(seq 100); sleep 5", 5000, 1000, ctx=run)
    assert capped.timed_out and capped.duration_ms < 3000  # 300 ms, not the asked 5 s
    assert capped.stdout == "-" * 10 and capped.truncated  # 10 bytes, not the asked 1000
    lower = bash("printf abcdef", 5000, 3, ctx=run)  # an explicit value under the cap stays
    assert lower.stdout == "abc" and lower.exit_code == 0
    defaults = bash("printf '%.0s-' $(seq 100)", ctx=run)  # no explicit value: the run's
    assert defaults.stdout == "-" * 10
    unlimited = SimpleNamespace(allow_network=True, tool_timeout_ms=None, max_output_bytes=None)
    assert len(bash("printf '%.0s-' $(seq 100)", ctx=unlimited).stdout) == 100


@pytest.mark.anyio
async def test_run_config_reaches_task_context_and_survives_resume(tmp_path: Path) -> None:
    async with Harness(tmp_path, limits, gated_limits) as h:
        config = {"toolTimeoutMs": 1500, "maxOutputBytes": 64}
        rid, status = await h.start(limits, {}, config=config)
        assert status == "finished"
        assert h.output(rid, "seen") == {"timeout": 1500, "output": 64}
        plain, _ = await h.start(limits, {})
        assert h.output(plain, "seen") == {"timeout": None, "output": None}
        # a run parked on an approval resumes with a driver rebuilt from its stored config
        gated, status = await h.start(gated_limits, {}, config=config)
        assert status == "waiting-approval"
        await h.svc.decide_approval(gated, "go", approved=True)
        assert await h.settle(gated) == "finished"
        assert h.output(gated, "seen") == {"timeout": 1500, "output": 64}


@pytest.mark.anyio
async def test_launch_run_options_limit_the_bash_tool(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    gw.register("shell", shell)
    async with running(gw), ws_client(gw) as ws:
        await ws.connect()
        options: dict[str, Any] = {"toolTimeoutMs": 400, "maxOutputBytes": 100}
        res = await ws.request("launchRun", {"workflow": "shell", "options": options})
        run_id = res["payload"]["runId"]
        done = await ws.event("run.completed", timeout=15, runId=run_id)
        assert done["payload"]["status"] == "finished"
        row = gw.runtime.db.get_output(run_id, "sh")
        assert row["stdout_len"] == 100 and row["truncated"] is True
        assert row["timed_out"] is True and row["duration_ms"] < 5000
