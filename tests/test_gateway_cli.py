"""``smithers gateway --config``: a real process serving the config file's workflows."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.anyio

SMITHERS = [sys.executable, "-m", "smithers_core"]


def _example(tmp_path: Path) -> Path:
    for name in ("smithers.toml", "deploy.py", "hello.py"):
        shutil.copy(REPO_ROOT / "examples" / name, tmp_path / name)
    return tmp_path / "smithers.toml"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("SMITHERS_PLUGINS", "SMITHERS_DISABLE_PLUGINS", "SMITHERS_CONFIG"):
        env.pop(var, None)
    return env


async def test_gateway_command_serves_the_config_file(tmp_path: Path) -> None:
    config = _example(tmp_path)
    async with await anyio.open_process(
        [*SMITHERS, "gateway", "--config", str(config), "--port", "0"],
        cwd=tmp_path,
        env=_env(),
        stderr=subprocess.STDOUT,
    ) as proc:
        assert proc.stdout is not None
        out = b""
        with anyio.fail_after(15):
            while not re.search(rb"\n    (\S+)\n", out):
                out += await proc.stdout.receive()
        text = out.decode()
        url = re.search(r"listening on (http://\S+)", text)
        token = re.search(r"\n    (\S+)\n", text)
        assert url and token, text
        assert "auth: token; workflows: deploy, hello" in text
        grants = (tmp_path / ".smithers" / "tokens.toml").read_text()
        assert token.group(1) not in grants and "sha256:" in grants  # only the digest is stored

        headers = {"authorization": f"Bearer {token.group(1)}"}
        async with httpx.AsyncClient(base_url=url.group(1), headers=headers, timeout=10) as c:
            r = await c.post("/v1/rpc/launchRun", json={"workflow": "deploy"})
            assert r.status_code == 200, r.text
            run_id = r.json()["payload"]["runId"]
            with anyio.fail_after(10):
                while True:
                    rows = (await c.post("/v1/rpc/listApprovals", json={})).json()["payload"]
                    if rows:
                        break
                    await anyio.sleep(0.02)
            assert rows[0]["runId"] == run_id and rows[0]["nodeId"] == "approve"
            r = await c.post(
                "/v1/rpc/submitApproval",
                json={"runId": run_id, "nodeId": "approve", "approved": True},
            )
            assert r.json()["ok"] is True
            with anyio.fail_after(10):
                while True:
                    run = (await c.post("/v1/rpc/getRun", json={"runId": run_id})).json()["payload"]
                    if run["status"] == "finished":
                        break
                    await anyio.sleep(0.02)
            assert (await c.post("/v1/rpc/getRun", json={})).status_code == 400
            r = await c.post(
                "/v1/rpc/getRun", json={"runId": run_id}, headers={"authorization": ""}
            )
            assert r.status_code == 401
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await proc.wait() == 0

    # A second start keeps the existing token file and does not print a new token.
    async with await anyio.open_process(
        [*SMITHERS, "gateway", "--config", str(config), "--port", "0"],
        cwd=tmp_path,
        env=_env(),
        stderr=subprocess.STDOUT,
    ) as proc:
        assert proc.stdout is not None
        out = b""
        with anyio.fail_after(15):
            while b"workflows:" not in out:
                out += await proc.stdout.receive()
        assert b"created an operator token" not in out
        proc.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            await proc.wait()


def test_missing_auth_plugin_names_the_distribution(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text('[auth]\nmode = "token"\ntokens = {}\n')
    env = {**_env(), "SMITHERS_DISABLE_PLUGINS": "smithers_auth_token"}
    result = subprocess.run(
        [*SMITHERS, "gateway", "--config", str(tmp_path / "smithers.toml"), "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "No installed plugin provides auth mode 'token'. Installed modes:" in result.stderr
    assert "pip install smithers-auth-token" in result.stderr


def test_unsupported_schedule_fails_startup(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "examples" / "deploy.py", tmp_path / "deploy.py")
    (tmp_path / "smithers.toml").write_text(
        '[[workflows]]\nkey = "deploy"\npath = "deploy.py"\nschedule = "0 8 * * 1-5"\n'
    )
    result = subprocess.run(
        [*SMITHERS, "gateway", "--config", str(tmp_path / "smithers.toml"), "--port", "0"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "CONFIGURATION_UNSUPPORTED" in result.stderr
    assert "'schedule' on workflow 'deploy' needs a scheduling plugin" in result.stderr
