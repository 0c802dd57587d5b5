"""Crash, shutdown and multi-process behaviour, with real subprocesses and SIGKILL (D6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from smithers_core.engine.options import EngineOptions
from smithers_core.runtime import Runtime
from smithers_core.workflow.loader import load_workflow
from tests import stores
from tests.processes import SMITHERS, Child, spawn

pytestmark = pytest.mark.anyio

WORKFLOW = """
import time
from pathlib import Path
from pydantic import BaseModel
from smithers_core import Seq, Task, workflow

HERE = Path(__file__).parent

class Out(BaseModel):
    n: int

def mark(name):
    with open(HERE / "marks.log", "a") as fh:
        fh.write(name + "\\n")

def a(t):
    mark("a")
    return Out(n=1)

def b(t):
    mark(f"b{t.attempt}")
    if t.attempt == 1:
        (HERE / "b-started").write_text("1")
        deadline = time.time() + 60
        while time.time() < deadline and not t.cancelled:
            time.sleep(0.02)
    return Out(n=2)

def c(t):
    mark("c")
    return Out(n=3)

@workflow("crashy")
def crashy(ctx):
    return Seq(Task("a", a, output=Out), Task("b", b, output=Out), Task("c", c, output=Out))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}
    env["SMITHERS_TIMER_TICK_MS"] = "50"
    env["SMITHERS_CANCEL_POLL_MS"] = "50"
    return env


def _wait_file(path: Path, child: Child, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        child.check_running()
        if time.monotonic() > deadline:
            raise child.fail(f"{path.name} did not appear")
        time.sleep(0.02)


def _events(db: Path, run_id: str) -> list[dict[str, object]]:
    rows = stores.rows(
        db, "SELECT seq, payload_json FROM _smithers_events WHERE run_id = ? ORDER BY seq", run_id
    )
    assert [r[0] for r in rows] == list(range(len(rows))), "seq must be contiguous from 0"
    return [json.loads(r[1]) for r in rows]


def _start_up(tmp_path: Path) -> AbstractContextManager[Child]:
    (tmp_path / "wf.py").write_text(WORKFLOW)
    args = [*SMITHERS, "up", "wf.py", "--run-id", "r1", "--quiet", "--db", stores.url("runs.db")]
    return spawn(args, cwd=tmp_path, env=_env())


async def _finish_in_new_process(tmp_path: Path) -> None:
    wf = load_workflow(tmp_path / "wf.py")
    opts = EngineOptions.from_env(timer_tick_ms=20, cancel_poll_ms=20, sweep_ms=100)
    async with Runtime(
        stores.url("runs.db"), base_dir=tmp_path, resolver=lambda row: wf, options=opts
    ) as rt:
        # no resume call: the supervisor's start-up sweep claims the orphaned run by itself
        import anyio

        with anyio.fail_after(20):
            while (rt.db.run_row("r1") or {}).get("status") != "finished":
                await rt.hub.wait("r1", 0.2)


async def test_kill_9_mid_task_then_resume_without_waiting_for_staleness(tmp_path: Path) -> None:
    with _start_up(tmp_path) as up:
        _wait_file(tmp_path / "b-started", up)
        assert up.stop(signal.SIGKILL, timeout=10) == -signal.SIGKILL
    started = time.monotonic()
    await _finish_in_new_process(tmp_path)
    # dead owner detected on this host: no 30 s stale threshold to wait out
    assert time.monotonic() - started < 10
    assert (tmp_path / "marks.log").read_text().split() == ["a", "b1", "b2", "c"]
    events = _events(tmp_path / "runs.db", "r1")
    kinds = [(e["type"], e.get("nodeId"), e.get("attempt")) for e in events]
    assert ("NodeCancelled", "b", 1) in kinds
    cancelled = next(e for e in events if e["type"] == "NodeCancelled")
    assert cancelled["reason"] == "abandoned"
    assert ("NodeStarted", "b", 2) in kinds
    assert [k for k in kinds if k[0] == "NodeFinished"] == [
        ("NodeFinished", "a", 1),
        ("NodeFinished", "b", 2),
        ("NodeFinished", "c", 1),
    ]
    assert [e["type"] for e in events].count("RunStarted") == 2
    assert events[-1]["type"] == "RunFinished"


async def test_sigterm_suspends_and_a_new_process_resumes(tmp_path: Path) -> None:
    with _start_up(tmp_path) as up:
        _wait_file(tmp_path / "b-started", up)
        assert up.stop(signal.SIGTERM, timeout=20) == 130
    ((status, owner, hb),) = stores.rows(
        tmp_path / "runs.db",
        "SELECT status, runtime_owner_id, heartbeat_at_ms FROM _smithers_runs WHERE run_id='r1'",
    )
    assert (status, owner, hb) == ("running", None, None)
    events = _events(tmp_path / "runs.db", "r1")
    assert "RunCancelled" not in [e["type"] for e in events]
    shutdown = [e for e in events if e["type"] == "NodeCancelled"]
    assert [(e["nodeId"], e["reason"]) for e in shutdown] == [("b", "shutdown")]
    await _finish_in_new_process(tmp_path)
    assert (tmp_path / "marks.log").read_text().split() == ["a", "b1", "b2", "c"]
    assert _events(tmp_path / "runs.db", "r1")[-1]["type"] == "RunFinished"


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from smithers_core.store import open_store
    store = open_store(sys.argv[3], base_dir=Path(sys.argv[1]))
    futures = [store.submit(lambda tx, i=i: tx.emit("shared", "NodeOutput", text=str(i)))
               for i in range(int(sys.argv[2]))]
    for f in futures:
        f.result()
    store.close()
    """
)


def test_two_processes_appending_to_one_file_keep_seq_contiguous(tmp_path: Path) -> None:
    stores.open_store(tmp_path, "shared.db").close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), "300", stores.url("shared.db")],
            env=_env(),
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=60) == 0
    events = _events(tmp_path / "shared.db", "shared")
    assert len(events) == 600
    texts = sorted(int(str(e["text"])) for e in events)
    assert texts == sorted(list(range(300)) * 2)
