"""The bash tool (D9): root_dir, timeout killing the whole group, output cap, no network."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from smithers_core.errors import SmithersError
from smithers_core.tools import bash, bash_async
from tests.fixtures.server.helpers import server

pytestmark = pytest.mark.timeout(10)

sandbox_module = importlib.import_module("smithers_core.tools.sandbox")


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP listener on the host's 127.0.0.1; records what each connection sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.1)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    seen.append(conn.recv(100))
                except OSError:
                    seen.append(b"")

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1], seen
    stop.set()
    t.join(2)
    sock.close()


def connect_cmd(port: int) -> str:
    return f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected && echo hi >&3"


def test_no_network_without_allow_network(listener: tuple[int, list[bytes]]) -> None:
    port, seen = listener
    result = bash(connect_cmd(port), 5000)
    assert result.exit_code != 0 and "connected" not in result.stdout
    assert seen == []
    ctx = SimpleNamespace(allow_network=False, root_dir=None)
    assert bash(connect_cmd(port), 5000, ctx=ctx).exit_code != 0
    assert seen == []


def test_network_with_allow_network(listener: tuple[int, list[bytes]]) -> None:
    port, seen = listener
    ctx = SimpleNamespace(allow_network=True, root_dir=None)
    result = bash(connect_cmd(port), 5000, ctx=ctx)
    assert result.exit_code == 0 and result.stdout == "connected\n"
    deadline = time.monotonic() + 2
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [b"hi\n"]


def test_runs_in_root_dir(tmp_path: Path) -> None:
    ctx = SimpleNamespace(allow_network=False, root_dir=str(tmp_path))
    result = bash("pwd; echo out; echo err >&2; exit 3", 5000, ctx=ctx)
    assert result.stdout == f"{tmp_path}\nout\n" and result.stderr == "err\n"
    assert result.exit_code == 3 and not result.timed_out and not result.truncated
    assert result.to_wire()["exitCode"] == 3


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _marked_pids(mark: str) -> list[int]:
    """Host pids whose command line contains ``mark`` (seen from outside the sandbox)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if mark.encode() in fh.read() and _alive(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    mark = f"smithers-bg-{uuid.uuid4().hex}"
    box: list[Any] = []
    began = time.monotonic()
    worker = threading.Thread(
        target=lambda: box.append(
            bash(f"(exec -a {mark} sleep 30) & sleep 30", 1500, cwd=str(tmp_path))
        )
    )
    worker.start()
    deadline = time.monotonic() + 5
    while not _marked_pids(mark) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _marked_pids(mark), "the background child never started"
    worker.join(10)
    result = box[0]
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - began < 6
    deadline = time.monotonic() + 2
    while _marked_pids(mark) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _marked_pids(mark) == []


def test_output_cap() -> None:
    result = bash("head -c 100000 /dev/zero | tr '\\0' y; echo done >&2", 5000, 1000)
    assert len(result.stdout) == 1000 and result.truncated and result.exit_code == 0
    assert result.stderr == "done\n"


def test_bad_arguments() -> None:
    for cmd, timeout in (("", 100), ("true", 0)):
        with pytest.raises(SmithersError) as info:
            bash(cmd, timeout)
        assert info.value.code == "INVALID_INPUT"


def test_sandbox_unavailable_never_runs_unconfined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda _name: None)  # no bwrap, unshare
    monkeypatch.delenv("SMITHERS_UNCONFINED_TOOLS", raising=False)
    sandbox_module.reset_probes()
    try:
        marker = tmp_path / "ran"
        for network in (False, True):  # the filesystem needs confining even with network
            ctx = SimpleNamespace(allow_network=network, root_dir=str(tmp_path))
            with pytest.raises(SmithersError) as info:
                bash("touch ran", 1000, ctx=ctx)
            assert info.value.code == "SANDBOX_UNAVAILABLE"
            assert "bubblewrap" in info.value.message
            assert "unconfined_tools=True" in info.value.message
            assert "SMITHERS_UNCONFINED_TOOLS=1" in info.value.message
            assert not marker.exists()
        # the operator's explicit opt-out: runs unconfined (network is still refused and,
        # with no unshare either, that is still SANDBOX_UNAVAILABLE)
        optout = SimpleNamespace(allow_network=True, root_dir=str(tmp_path), unconfined_tools=True)
        assert bash("touch ran", 1000, ctx=optout).exit_code == 0 and marker.exists()
        optout.allow_network = False
        with pytest.raises(SmithersError) as info:
            bash("true", 1000, ctx=optout)
        assert info.value.code == "SANDBOX_UNAVAILABLE" and "network" in info.value.message
        marker.unlink()
        monkeypatch.setenv("SMITHERS_UNCONFINED_TOOLS", "1")
        ctx = SimpleNamespace(allow_network=True, root_dir=str(tmp_path))
        assert bash("touch ran", 1000, ctx=ctx).exit_code == 0 and marker.exists()
    finally:
        sandbox_module.reset_probes()


@pytest.mark.anyio
async def test_bash_async() -> None:
    result = await bash_async("echo hi", 2000)
    assert result.stdout == "hi\n"


@pytest.mark.anyio
@pytest.mark.parametrize("allow", [False, True])
async def test_start_server_allow_network_reaches_tasks(
    tmp_path: Path, listener: tuple[int, list[bytes]], allow: bool
) -> None:
    port, _seen = listener
    async with server(tmp_path, allow_network=allow) as s:
        r = await s.client.post(
            "/v1/runs", json={"workflowPath": "wf/network.py", "input": {"port": port}}
        )
        run_id = r.json()["runId"]
        assert await s.wait_status(run_id, "finished") == "finished"
        out = s.db.get_output(run_id, "probe")
        if allow:
            assert out == {"exitCode": 0, "stdout": "connected\n"}
        else:
            assert out["exitCode"] != 0 and out["stdout"] == ""
        assert s.db.run_row(run_id)["config_json"].count(f'"allowNetwork":{str(allow).lower()}')
    assert os.path.isdir(tmp_path)


@pytest.mark.anyio
@pytest.mark.parametrize("unconfined", [False, True])
async def test_start_server_unconfined_tools_reaches_tasks(
    tmp_path: Path,
    listener: tuple[int, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    unconfined: bool,
) -> None:
    """Without bubblewrap a task's bash call fails the run, unless the host opted out."""
    real_which = shutil.which
    monkeypatch.setattr(
        sandbox_module.shutil, "which", lambda name: None if name == "bwrap" else real_which(name)
    )
    monkeypatch.delenv("SMITHERS_UNCONFINED_TOOLS", raising=False)
    sandbox_module.reset_probes()
    port, seen = listener
    try:
        async with server(tmp_path, unconfined_tools=unconfined) as s:
            r = await s.client.post(
                "/v1/runs", json={"workflowPath": "wf/network.py", "input": {"port": port}}
            )
            run_id = r.json()["runId"]
            status = await s.wait_status(run_id, "finished", "failed")
            row = s.db.run_row(run_id)
            if unconfined:
                assert status == "finished"
                out = s.db.get_output(run_id, "probe")
                assert out["exitCode"] != 0 and out["stdout"] == ""  # network still isolated
            else:
                assert status == "failed" and "SANDBOX_UNAVAILABLE" in row["error_json"]
                assert "unconfined_tools" in row["error_json"]
        assert seen == []
    finally:
        sandbox_module.reset_probes()
