"""``smithers up`` and ``smithers runs ...`` as a user runs them: exit codes and output (D6)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.processes import SMITHERS, run, spawn

WF = """
import time
from pathlib import Path
from pydantic import BaseModel
from smithers_core import Approval, Seq, Task, WaitSignal, workflow

HERE = Path(__file__).parent

class Input(BaseModel):
    value: int = 1
    mode: str = "ok"

class Out(BaseModel):
    v: int

class Go(BaseModel):
    msg: str

def work(t):
    t.log("working on " + t.input.mode)
    if t.input.mode == "fail":
        raise RuntimeError("task exploded")
    if t.input.mode == "slow":
        (HERE / "slow-started").write_text("1")
        deadline = time.time() + 30
        while time.time() < deadline and not t.cancelled:
            time.sleep(0.02)
    return Out(v=t.input.value)

@workflow("cli", input=Input)
def cli(ctx):
    gated = ctx.input.mode == "gate"
    return Seq(
        Task("work", work, output=Out),
        Approval("ok", title="Proceed?") if gated else None,
        WaitSignal("go", output=Go, correlation_id="c1") if gated else None,
    )
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}
    env.update(SMITHERS_TIMER_TICK_MS="50", SMITHERS_CANCEL_POLL_MS="50")
    return env


def smithers(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run([*SMITHERS, *args], cwd=cwd, env=_env(), timeout=timeout)


def _setup(tmp_path: Path) -> Path:
    (tmp_path / "wf.py").write_text(WF)
    return tmp_path


def _status(tmp_path: Path, run_id: str) -> str | None:
    db = tmp_path / "smithers.db"
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT status FROM _smithers_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    except sqlite3.OperationalError:  # the process has not created the tables yet
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def test_finished_run_exits_0_with_progress(tmp_path: Path) -> None:
    cwd = _setup(tmp_path)
    out = smithers(cwd, "up", "wf.py", "--run-id", "r0", "--input", '{"value": 5}')
    assert out.returncode == 0, out.stderr
    assert "work started (attempt 1)" in out.stdout
    assert "work| working on ok" in out.stdout
    assert "run finished" in out.stdout
    assert _status(tmp_path, "r0") == "finished"


def test_input_from_a_file(tmp_path: Path) -> None:
    cwd = _setup(tmp_path)
    (tmp_path / "in.json").write_text('{"value": 9}')
    out = smithers(cwd, "up", "wf.py", "--run-id", "rf", "--input", "@in.json")
    assert out.returncode == 0, out.stderr


def test_failed_run_exits_1(tmp_path: Path) -> None:
    cwd = _setup(tmp_path)
    out = smithers(cwd, "up", "wf.py", "--run-id", "r1", "--input", '{"mode": "fail"}')
    assert out.returncode == 1
    assert "task exploded" in out.stdout
    assert _status(tmp_path, "r1") == "failed"


def test_invalid_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    cwd = _setup(tmp_path)
    out = smithers(cwd, "up", "wf.py", "--run-id", "r2", "--input", '{"value": "many"}')
    assert out.returncode == 2
    assert "INVALID_INPUT" in out.stderr
    assert _status(tmp_path, "r2") is None
    bad_json = smithers(cwd, "up", "wf.py", "--input", "{nope")
    assert bad_json.returncode == 2 and "INVALID_INPUT" in bad_json.stderr
    missing = smithers(cwd, "up", "nothere.py")
    assert missing.returncode == 2 and "WORKFLOW_NOT_FOUND" in missing.stderr


def test_parked_run_exits_3_with_the_deciding_command_then_continues(tmp_path: Path) -> None:
    cwd = _setup(tmp_path)
    out = smithers(cwd, "up", "wf.py", "--run-id", "r3", "--input", '{"mode": "gate"}')
    assert out.returncode == 3
    assert "Waiting for approval of 'ok': Proceed?" in out.stdout
    assert "smithers runs approve r3 ok" in out.stdout
    assert _status(tmp_path, "r3") == "waiting-approval"
    approve = smithers(cwd, "runs", "approve", "r3", "ok", "--note", "fine")
    assert approve.returncode == 0, approve.stderr
    assert json.loads(approve.stdout) == {
        "runId": "r3",
        "nodeId": "ok",
        "iteration": 0,
        "approved": True,
    }
    again = smithers(cwd, "runs", "approve", "r3", "ok")
    assert again.returncode == 1 and "ALREADY_DECIDED" in again.stderr
    resumed = smithers(cwd, "runs", "resume", "r3")
    assert resumed.returncode == 3
    assert "Waiting for signal 'go'" in resumed.stdout
    assert "--correlation-id c1" in resumed.stdout
    sig = smithers(
        cwd, "runs", "signal", "r3", "go", "--data", '{"msg": "hi"}', "--correlation-id", "c1"
    )
    assert sig.returncode == 0, sig.stderr
    assert json.loads(sig.stdout)["seq"] == 0
    done = smithers(cwd, "up", "wf.py", "--run-id", "r3", "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    show = smithers(cwd, "runs", "show", "r3")
    run = json.loads(show.stdout)
    assert run["status"] == "finished" and run["summary"] == {"finished": 3}
    # what each node produced, first written first (the gate approval produces nothing)
    assert run["outputs"] == [
        {"nodeId": "work", "iteration": 0, "outputTable": "Out", "row": {"v": 1}},
        {"nodeId": "go", "iteration": 0, "outputTable": "Go", "row": {"msg": "hi"}},
    ]


def test_wait_stays_until_another_process_decides(tmp_path: Path) -> None:
    cwd = _setup(tmp_path)
    args = [*SMITHERS, "up", "wf.py", "--run-id", "r5", "--wait", "--input", '{"mode": "gate"}']
    with spawn(args, cwd=cwd, env=_env()) as up:
        deadline = time.monotonic() + 20
        while _status(tmp_path, "r5") != "waiting-approval":
            up.check_running()
            assert time.monotonic() < deadline, up.fail("never waited for the approval")
            time.sleep(0.05)
        assert smithers(cwd, "runs", "approve", "r5", "ok").returncode == 0
        deadline = time.monotonic() + 20
        while _status(tmp_path, "r5") != "waiting-event":
            up.check_running()
            assert time.monotonic() < deadline, up.fail("never waited for the signal")
            time.sleep(0.05)
        sig = smithers(
            cwd, "runs", "signal", "r5", "go", "--data", '{"msg": "x"}', "--correlation-id", "c1"
        )
        assert sig.returncode == 0
        up.expect_exit(0, timeout=20)
    assert _status(tmp_path, "r5") == "finished"


def test_cancel_from_another_process_exits_4(tmp_path: Path) -> None:
    cwd = _setup(tmp_path)
    args = [*SMITHERS, "up", "wf.py", "--run-id", "r4", "--input", '{"mode": "slow"}']
    with spawn(args, cwd=cwd, env=_env()) as up:
        deadline = time.monotonic() + 20
        while not (tmp_path / "slow-started").exists():
            up.check_running()
            assert time.monotonic() < deadline, up.fail("the slow task never started")
            time.sleep(0.02)
        cancel = smithers(cwd, "runs", "cancel", "r4")
        assert cancel.returncode == 0, cancel.stderr
        assert json.loads(cancel.stdout) == {
            "runId": "r4",
            "status": "cancelling",
            "won": True,
            "terminalStatus": None,
            "repaired": False,
        }
        up.expect_exit(4, timeout=20)
    assert _status(tmp_path, "r4") == "cancelled"
    conn = sqlite3.connect(f"file:{tmp_path / 'smithers.db'}?mode=ro", uri=True)
    try:
        source, pid, request_id = conn.execute(
            "SELECT cancel_request_source, cancel_request_client_pid, cancel_request_id"
            " FROM _smithers_runs WHERE run_id = 'r4'"
        ).fetchone()
    finally:
        conn.close()
    # the cancelling command's own process, not the one that ran the workflow
    assert source == "cli" and isinstance(pid, int) and pid != up.proc.pid and request_id


def test_up_serve_serves_the_run_and_stays_up_after_it_ends(tmp_path: Path) -> None:
    import httpx

    cwd = _setup(tmp_path)
    args = [*SMITHERS, "up", "wf.py", "--serve", "--port", "0", "--run-id", "sv"]
    with spawn([*args, "--input", '{"mode": "gate"}'], cwd=cwd, env=_env()) as up:
        url = up.wait_for(r"serving run \S+ at (http://\S+)").group(1)
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/").json()["status"] != "waiting-approval":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.post(f"{url}/approve/ok", json={}).json() == {"runId": "sv"}
        while httpx.get(f"{url}/").json()["status"] != "waiting-event":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sent = httpx.post(f"{url}/signals/go", json={"data": {"msg": "x"}, "correlationId": "c1"})
        assert sent.status_code == 200, sent.text
        while httpx.get(f"{url}/").json()["status"] != "finished":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.get(f"{url}/health").status_code == 200  # still serving the final state
        assert up.stop(__import__("signal").SIGINT, timeout=20) == 0


def _serving_url(log: Path, pid: int) -> str:
    """The URL a detached ``up --serve`` logs; fails with the log if it exits first."""
    deadline = time.monotonic() + 20
    while True:
        text = log.read_text() if log.exists() else ""
        match = re.search(r"serving run \S+ at (http://\S+)", text)
        if match:
            return match.group(1)
        assert time.monotonic() < deadline, f"no URL after 20 s; log:\n{text}"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise AssertionError(f"the detached process exited; log:\n{text}") from None
        time.sleep(0.05)


def test_up_detach_prints_pid_and_log(tmp_path: Path) -> None:
    import httpx

    cwd = _setup(tmp_path)
    out = smithers(cwd, "up", "wf.py", "--serve", "--port", "0", "-d", "--run-id", "dt")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["runId"] == "dt" and info["pid"] > 0
    try:
        url = _serving_url(Path(info["log"]), info["pid"])
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/").json()["status"] != "finished":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(info["pid"], __import__("signal").SIGTERM)
