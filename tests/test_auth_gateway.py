"""Auth modes through a live gateway (issue 7): swapping ``[auth] mode`` in the config file
changes nothing else; each mode's identity reaches ``ctx.auth``; bind and Host gates."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from smithers_core.cli.gateway import build_gateway
from smithers_core.config import load_config
from smithers_core.errors import SmithersError

pytestmark = pytest.mark.anyio

WORKFLOW = """
from pydantic import BaseModel
from smithers_core import Task, workflow

class Who(BaseModel):
    triggered_by: str
    role: str

@workflow("whoami")
def whoami(ctx):
    auth = ctx.auth
    return Task("who", value=Who(triggered_by=auth.triggered_by, role=auth.role))
"""

SECRET = "s" * 40
COMMON = """
[gateway]
db = "sqlite:///gw.db"

[[workflows]]
key = "whoami"
path = "whoami.py"
"""

AUTH = {
    "token": """
[auth]
mode = "token"
[auth.tokens.tok-1]
role = "operator"
scopes = ["run:read", "run:write"]
userId = "tina"
""",
    "jwt": f"""
[auth]
mode = "jwt"
issuer = "https://issuer.test"
audience = "smithers"
secret = "{SECRET}"
""",
    "trusted-proxy": """
[auth]
mode = "trusted-proxy"
trusted_proxies = ["127.0.0.1/32"]
""",
}


def _credentials(mode: str) -> dict[str, str]:
    if mode == "token":
        return {"authorization": "Bearer tok-1"}
    if mode == "jwt":
        claims = {
            "iss": "https://issuer.test",
            "aud": "smithers",
            "sub": "jay",
            "role": "admin",
            "scope": "run:read run:write",
            "exp": int(time.time()) + 600,
        }
        return {"authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}
    return {"x-user-id": "pat", "x-user-scopes": "run:read,run:write", "x-user-role": "viewer"}


EXPECTED = {
    "token": ("tina", "operator"),
    "jwt": ("jay", "admin"),
    "trusted-proxy": ("pat", "viewer"),
}


def _write(tmp_path: Path, mode: str) -> Path:
    (tmp_path / "whoami.py").write_text(WORKFLOW)
    path = tmp_path / "smithers.toml"
    path.write_text(COMMON + AUTH[mode])
    return path


async def _wait_finished(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        run = (await client.post("/v1/rpc/getRun", json={"runId": run_id})).json()["payload"]
        if run["status"] == "finished":
            return dict(run)
        assert time.monotonic() < deadline, run
        time.sleep(0.02)


@pytest.mark.parametrize("mode", ["token", "jwt", "trusted-proxy"])
async def test_swapping_the_mode_in_the_config_file(tmp_path: Path, mode: str) -> None:
    gateway, _ = build_gateway(load_config(_write(tmp_path, mode), environ={}))
    await gateway.listen(port=0)
    try:
        if mode != "trusted-proxy":  # a trusted peer without headers gets default_scopes
            async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as anon:
                denied = await anon.post("/v1/rpc/listRuns", json={})
                assert denied.status_code == 401
                assert denied.json()["error"]["code"] == "UNAUTHORIZED"
        async with httpx.AsyncClient(
            base_url=gateway.url, headers=_credentials(mode), timeout=10
        ) as client:
            launched = await client.post("/v1/rpc/launchRun", json={"workflow": "whoami"})
            assert launched.status_code == 200, launched.text
            run_id = launched.json()["payload"]["runId"]
            run = await _wait_finished(client, run_id)
            auth = json.loads(run["configJson"])["auth"]
            user, role = EXPECTED[mode]
            assert (auth["triggeredBy"], auth["role"]) == (user, role)
            out = await client.post(
                "/v1/rpc/getRun", json={"runId": run_id}
            )  # the identity may read what it started
            assert out.status_code == 200
    finally:
        await gateway.close()


async def test_trusted_proxy_headers_over_websocket(tmp_path: Path) -> None:
    gateway, _ = build_gateway(load_config(_write(tmp_path, "trusted-proxy"), environ={}))
    await gateway.listen(port=0)
    try:
        url = gateway.url.replace("http://", "ws://") + "/"
        async with websockets.connect(
            url, additional_headers=_credentials("trusted-proxy"), open_timeout=5
        ) as ws:
            challenge = json.loads(await ws.recv())
            assert challenge["event"] == "connect.challenge"
            await ws.send(
                json.dumps(
                    {
                        "type": "req",
                        "id": "c1",
                        "method": "connect",
                        "params": {
                            "minProtocol": 1,
                            "maxProtocol": 1,
                            "client": {"id": "t", "version": "1.0.0", "platform": "linux"},
                        },
                    }
                )
            )
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "res":
                    break
            assert frame["ok"] is True, frame.get("error")
            auth = frame["payload"]["auth"]
            assert (auth["userId"], auth["role"]) == ("pat", "viewer")
            assert auth["scopes"] == ["run:read", "run:write"]
    finally:
        await gateway.close()


async def test_no_auth_refuses_a_non_loopback_bind(tmp_path: Path) -> None:
    (tmp_path / "whoami.py").write_text(WORKFLOW)
    cfg = tmp_path / "smithers.toml"
    cfg.write_text(COMMON)
    gateway, _ = build_gateway(load_config(cfg, environ={}))
    with pytest.raises(SmithersError) as err:
        await gateway.listen(port=0, host="0.0.0.0")
    assert err.value.code in ("SERVER_INSECURE_BIND", "INSECURE_BIND")


async def test_no_auth_host_gate_blocks_dns_rebinding(tmp_path: Path) -> None:
    (tmp_path / "whoami.py").write_text(WORKFLOW)
    cfg = tmp_path / "smithers.toml"
    cfg.write_text(COMMON)
    gateway, _ = build_gateway(load_config(cfg, environ={}))
    await gateway.listen(port=0)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            ok = await client.post("/v1/rpc/listRuns", json={})
            assert ok.status_code == 200
            evil = await client.post(
                "/v1/rpc/listRuns", json={}, headers={"host": "evil.example:7331"}
            )
            assert evil.status_code == 401
            assert evil.json()["error"]["message"] == "Host is not allowed"
            foreign = await client.post(
                "/v1/rpc/listRuns", json={}, headers={"origin": "https://evil.example"}
            )
            assert foreign.status_code == 401
            assert foreign.json()["error"]["message"] == "Origin is not allowed"
        url = gateway.url.replace("http://", "ws://") + "/"
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(
                url, additional_headers={"origin": "https://evil.example"}, open_timeout=5
            ):
                pass
        assert refused.value.response.status_code == 403
    finally:
        await gateway.close()
