"""``smithers gateway --config``: a real process serving the config file's workflows."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import httpx

from tests.conftest import REPO_ROOT
from tests.processes import SMITHERS, run, spawn


def _example(tmp_path: Path) -> Path:
    for name in ("smithers.toml", "deploy.py", "hello.py"):
        shutil.copy(REPO_ROOT / "examples" / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "examples" / "ui", tmp_path / "ui")  # hello's own page
    return tmp_path / "smithers.toml"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("SMITHERS_PLUGINS", "SMITHERS_DISABLE_PLUGINS", "SMITHERS_CONFIG"):
        env.pop(var, None)
    return env


def test_gateway_command_serves_the_config_file(tmp_path: Path) -> None:
    config = _example(tmp_path)
    args = [*SMITHERS, "gateway", "--config", config, "--port", "0"]
    with spawn(args, cwd=tmp_path, env=_env()) as gw:
        token = gw.wait_for(r"\n    (\S+)\n", timeout=30).group(1)
        url = gw.wait_for(r"listening on (http://\S+)").group(1)
        assert "auth: token; workflows: deploy, hello" in gw.output
        grants = (tmp_path / ".smithers" / "tokens.toml").read_text()
        assert token not in grants and "sha256:" in grants  # only the digest is stored

        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as c:
            r = c.post("/v1/rpc/launchRun", json={"workflow": "deploy"})
            assert r.status_code == 200, r.text
            run_id = r.json()["payload"]["runId"]
            deadline = time.monotonic() + 20
            while not (rows := c.post("/v1/rpc/listApprovals", json={}).json()["payload"]):
                assert time.monotonic() < deadline, gw.fail("no approval appeared")
                time.sleep(0.02)
            assert rows[0]["runId"] == run_id and rows[0]["nodeId"] == "approve"
            r = c.post(
                "/v1/rpc/submitApproval",
                json={"runId": run_id, "nodeId": "approve", "approved": True},
            )
            assert r.json()["ok"] is True
            deadline = time.monotonic() + 20
            while (
                c.post("/v1/rpc/getRun", json={"runId": run_id}).json()["payload"]["status"]
                != "finished"
            ):
                assert time.monotonic() < deadline, gw.fail("the run did not finish")
                time.sleep(0.02)
            assert c.post("/v1/rpc/getRun", json={}).status_code == 400
            r = c.post("/v1/rpc/getRun", json={"runId": run_id}, headers={"authorization": ""})
            assert r.status_code == 401
        assert gw.stop(signal.SIGTERM) == 0

    # A second start keeps the existing token file and does not print a new token; SIGINT
    # right after the banner stops it even when the parent ignores SIGINT (a background job).
    with spawn(args, cwd=tmp_path, env=_env()) as gw:
        gw.wait_for(r"workflows:.*\n.*\n", timeout=30)
        assert "created an operator token" not in gw.output
        assert gw.stop(signal.SIGINT) == 0


def test_gateway_stops_on_sigint_sent_right_after_listening(tmp_path: Path) -> None:
    """The cause of the hang under ``nohup ... &``: a child started with SIGINT ignored got
    SIGINT between its "listening" line and its signal handler, and never stopped."""
    config = _example(tmp_path)
    args = [*SMITHERS, "gateway", "--config", config, "--port", "0"]
    with spawn(args, cwd=tmp_path, env=_env(), sigint_ignored=True) as gw:
        gw.wait_for(r"listening on http://", timeout=30)
        assert gw.stop(signal.SIGINT, timeout=20) == 0


def test_missing_auth_plugin_names_the_distribution(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text('[auth]\nmode = "token"\ntokens = {}\n')
    env = {**_env(), "SMITHERS_DISABLE_PLUGINS": "smithers_auth_token"}
    result = run(
        [*SMITHERS, "gateway", "--config", tmp_path / "smithers.toml", "--port", "0"],
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 2
    assert "No installed plugin provides auth mode 'token'. Installed modes:" in result.stderr
    assert "pip install smithers-auth-token" in result.stderr


def test_unsupported_schedule_fails_startup(tmp_path: Path) -> None:
    """With the scheduling plugin disabled in config, ``schedule`` fails startup (D3)."""
    shutil.copy(REPO_ROOT / "examples" / "deploy.py", tmp_path / "deploy.py")
    (tmp_path / "smithers.toml").write_text(
        '[plugins]\ndisable = ["smithers_cron"]\n\n'
        '[[workflows]]\nkey = "deploy"\npath = "deploy.py"\nschedule = "0 8 * * 1-5"\n'
    )
    result = run(
        [*SMITHERS, "gateway", "--config", tmp_path / "smithers.toml", "--port", "0"],
        cwd=tmp_path,
        env=_env(),
    )
    assert result.returncode == 2
    assert "CONFIGURATION_UNSUPPORTED" in result.stderr
    assert "'schedule' on workflow 'deploy' needs a scheduling plugin" in result.stderr
