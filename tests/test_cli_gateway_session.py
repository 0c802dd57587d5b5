"""``smithers gateway --session-token`` (the README's main job): every start prints a usable
operator token, the first one persistent, later ones valid only for that process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.processes import SMITHERS, spawn

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


ARGS = [*SMITHERS, "gateway", "--config", "smithers.toml", "--session-token", "--port", "0"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}


def test_every_start_prints_a_working_token(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text(CONFIG)
    (tmp_path / "w.py").write_text(WF)
    tokens: list[str] = []
    for i in range(2):
        with spawn(ARGS, cwd=tmp_path, env=_env(), label=f"gateway start {i}") as gw:
            token = gw.wait_for(r"\n\n    (\S+)\n", timeout=30).group(1)
            url = gw.wait_for(r"listening on (http://\S+)").group(1)
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
            assert gw.stop(signal.SIGTERM) == 0
    assert tokens[0] != tokens[1]
    stored = (tmp_path / ".smithers" / "tokens.toml").read_text()
    assert tokens[0] not in stored and tokens[1] not in stored  # only digests on disk
