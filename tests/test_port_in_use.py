"""A port already in use: one line naming the address and the port, exit 2 (issue 13 item 11).

Every command that listens (``smithers gateway``, ``smithers server``, ``smithers up --serve``,
``python3 dev.py run``) and the Python API (``Gateway.listen``, ``start_server``) say so
plainly, never with an ``ExceptionGroup``, and create nothing before failing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smithers_core.errors import SmithersError
from smithers_core.gateway import Gateway
from smithers_core.hosts.server import start_server
from tests.conftest import REPO_ROOT
from tests.processes import SMITHERS, run

MESSAGE = (
    "error: SERVER_BIND_FAILED: Cannot listen on 127.0.0.1 port {port}: the port is already in use"
)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}


def _example(tmp_path: Path) -> Path:
    for name in ("smithers.toml", "deploy.py", "hello.py"):
        shutil.copy(REPO_ROOT / "examples" / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "examples" / "ui", tmp_path / "ui")  # hello's own page
    return tmp_path / "smithers.toml"


def _one_line(result: subprocess.CompletedProcess[str], port: int) -> None:
    stderr = result.stderr
    assert result.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(MESSAGE.format(port=port)), stderr
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr


def test_smithers_gateway_on_a_busy_port(tmp_path: Path, busy_port: int) -> None:
    config = _example(tmp_path)
    result = run(
        [*SMITHERS, "gateway", "--config", config, "--port", str(busy_port)],
        cwd=tmp_path,
        env=_env(),
    )
    _one_line(result, busy_port)
    assert result.stdout == ""
    # the first run's operator token is created only once listening works (it is shown once)
    assert not (tmp_path / ".smithers" / "tokens.toml").exists()


def test_smithers_server_on_a_busy_port(tmp_path: Path, busy_port: int) -> None:
    result = run(
        [*SMITHERS, "server", "--root", tmp_path, "--port", str(busy_port)],
        cwd=tmp_path,
        env=_env(),
    )
    _one_line(result, busy_port)


def test_smithers_up_serve_on_a_busy_port_starts_no_run(tmp_path: Path, busy_port: int) -> None:
    shutil.copy(REPO_ROOT / "examples" / "hello.py", tmp_path / "hello.py")
    result = run(
        [*SMITHERS, "up", "hello.py", "--serve", "--port", str(busy_port)], cwd=tmp_path, env=_env()
    )
    _one_line(result, busy_port)
    assert "run " not in result.stdout  # failed before launching a run


def test_dev_py_run_on_a_busy_port(tmp_path: Path, busy_port: int) -> None:
    config = _example(tmp_path)
    result = run(
        [sys.executable, REPO_ROOT / "dev.py", "run", "--config", config, "--port", str(busy_port)],
        cwd=tmp_path,
        env=_env(),
        timeout=120,
    )
    _one_line(result, busy_port)


def test_a_free_port_next_to_it_still_works(tmp_path: Path) -> None:
    """The edge: the same check passes for a port nobody holds (port 0 and a freed one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = int(sock.getsockname()[1])
    handle = start_server(port=free, root_dir=str(tmp_path))
    try:
        assert handle.port == free
    finally:
        handle.close()


@pytest.mark.anyio
async def test_gateway_listen_raises_the_error_itself(tmp_path: Path, busy_port: int) -> None:
    gateway = Gateway(db=f"sqlite:///{tmp_path / 'gw.db'}")
    with pytest.raises(SmithersError) as info:
        await gateway.listen(port=busy_port)
    assert info.value.code == "SERVER_BIND_FAILED"
    assert info.value.details == {"host": "127.0.0.1", "port": busy_port}
    assert f"127.0.0.1 port {busy_port}" in info.value.message
    await gateway.close()


def test_start_server_raises_the_error_itself(tmp_path: Path, busy_port: int) -> None:
    with pytest.raises(SmithersError) as info:
        start_server(port=busy_port, root_dir=str(tmp_path))
    assert type(info.value) is SmithersError and info.value.code == "SERVER_BIND_FAILED"
