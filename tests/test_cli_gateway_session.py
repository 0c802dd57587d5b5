"""``smithers gateway --session-token`` (the README's main job): every start prints a usable
operator token, the first one persistent, later ones valid only for that process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

CONFIG = """
[gateway]
db = "sqlite:///.smithers/gateway.db"
[auth]
mode = "token"
tokens_file = ".smithers/tokens.toml"
[[workflows]]
key = "w"
path = "w.py"
"""

WF = """
from smithers_core import Task, workflow
@workflow("w")
def w(ctx):
    return Task("a", value={"ok": True})
"""


def _start(tmp_path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smithers_core",
                "gateway",
                "--config",
                "smithers.toml",
                "--session-token",
                "--port",
                "0",
            ],
            cwd=tmp_path,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def _url_and_token(log: Path, proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    deadline = time.monotonic() + 30
    while True:
        text = log.read_text()
        url = re.search(r"listening on (http://\S+)", text)
        token = re.search(r"\n\n    (\S+)\n", text)
        if url and token:
            return url.group(1), token.group(1)
        assert proc.poll() is None and time.monotonic() < deadline, text
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_every_start_prints_a_working_token(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text(CONFIG)
    (tmp_path / "w.py").write_text(WF)
    tokens: list[str] = []
    for i in range(2):
        log = tmp_path / f"gw{i}.log"
        proc = _start(tmp_path, log)
        try:
            url, token = _url_and_token(log, proc)
            tokens.append(token)
            ok = httpx.post(
                f"{url}/v1/rpc/listWorkflows", json={}, headers={"authorization": f"Bearer {token}"}
            )
            assert ok.status_code == 200 and ok.json()["payload"][0]["key"] == "w"
            if i == 1:  # the first (persistent) token still works; the session one is extra
                first = httpx.post(
                    f"{url}/v1/rpc/listWorkflows",
                    json={},
                    headers={"authorization": f"Bearer {tokens[0]}"},
                )
                assert first.status_code == 200
        finally:
            _stop(proc)
    assert tokens[0] != tokens[1]
    stored = (tmp_path / ".smithers" / "tokens.toml").read_text()
    assert tokens[0] not in stored and tokens[1] not in stored  # only digests on disk
