"""The hook surfaces the coming plugins need, exercised by a real plugin distribution
(``tests/plugins/smithers_test_plugin``) installed with pip and found through its entry
point: RPC methods under their own names on every transport, a scheduler's narrow host with a
signed public webhook route, UI mounts built from registrations, and a CLI command."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smithers_core.contributions import RpcMethod
from smithers_core.errors import SmithersError
from smithers_core.gateway import Gateway
from smithers_core.hookspecs import hookimpl
from smithers_core.plugins import load_plugins
from tests.engine_helpers import engine_options
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import OP_TOKEN, TOKENS, http, rpc, running, ws_client

pytestmark = pytest.mark.anyio

PLUGIN = Path(__file__).parent / "plugins" / "smithers_test_plugin"
SECRET = "s3cret-webhook-key"
READER = "reader-token"
CRON = "cron-token"
GRANTS = {
    **TOKENS,
    READER: {"role": "viewer", "scopes": ["run:read"], "userId": "u:reader"},
    CRON: {"role": "operator", "scopes": ["cron:write", "run:read"], "userId": "u:cron"},
}


NO_CRON = {"SMITHERS_DISABLE_PLUGINS": "smithers_cron,smithers_webhooks,smithers_ui"}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``pip install`` the test plugin into a folder put on ``sys.path`` for this module."""
    work = tmp_path_factory.mktemp("test-plugin")
    source = shutil.copytree(PLUGIN, work / "source")  # build outside the repository
    site = work / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(site), str(source)], check=True, timeout=120)
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith("smithers_test_plugin")]:
            del sys.modules[name]


def make(tmp_path: Path, **options: Any) -> Gateway:
    # the test plugin stands in for third-party cron, webhooks and UI: the real ones are off
    plugins = load_plugins(environ={"SMITHERS_PLUGINS": "smithers_test_plugin", **NO_CRON})
    gw = Gateway(
        plugins=plugins,
        base_dir=tmp_path,
        engine_options=engine_options(),
        db="sqlite:///gw.db",
        auth={"mode": "token", "tokens": GRANTS},
        **options,
    )
    webhook = {"secret": SECRET, "signatureHeader": "x-hub-signature-256"}
    gw.register("deploy", wfs.deploy, schedule="0 8 * * 1-5", webhook=webhook, ui=True)
    gw.register("gated", wfs.gated, ui={"path": "/pages/gated"})
    gw.register("plain", wfs.slow)
    return gw


async def test_plugin_methods_are_served_alike_on_every_transport(
    plugin_site: Path, tmp_path: Path
) -> None:
    expected = [{"workflow": "deploy", "pattern": "0 8 * * 1-5"}]
    async with running(make(tmp_path)) as gw:
        assert gw.context.methods.owner("cron.list") == "smithers_test_plugin"
        async with http(gw, OP_TOKEN) as c:
            by_path = await rpc(c, "cronList")
            assert by_path.status_code == 200 and by_path.json()["payload"] == expected
            by_body = await c.post("/rpc", json={"id": "a1", "method": "cron.list"})
            assert by_body.json() == {
                "type": "res",
                "id": "a1",
                "ok": True,
                "apiVersion": "v1",
                "payload": expected,
            }
            bad = await rpc(c, "testEcho", {"times": "x"})
            assert bad.status_code == 400
            error = bad.json()["error"]
            assert error["code"] == "INVALID_REQUEST" and error["message"] == (
                "Invalid testEcho params"
            )
            assert {i["loc"][0] for i in error["issues"]} == {"text", "times"}
            good = await rpc(c, "testEcho", {"text": "ab", "times": 2})
            assert good.json()["payload"] == {"echo": "abab", "transport": "http"}
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect()
            res = await ws.request("cron.list")
            assert res["ok"] is True and res["payload"] == expected
            echo = await ws.request("testEcho", {"text": "z"})
            assert echo["payload"] == {"echo": "z", "transport": "ws"}
        async with http(gw, READER) as reader:  # the method's own scope gates every name
            for method in ("cronList", "cron.list"):
                r = await rpc(reader, method)
                assert r.status_code == 403
                assert r.json()["error"]["requiredScope"] == "cron:read"
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect(READER)
            denied = await ws.request("cron.list")
            assert denied["ok"] is False and denied["error"]["code"] == "FORBIDDEN"
        async with http(gw) as anon:
            text = (await anon.get("/metrics")).text
        assert 'smithers_gateway_rpc_calls_total{method="cronList",transport="http"}' in text
        assert 'smithers_gateway_rpc_calls_total{method="cron.list",transport="ws"} 2.0' in text
        assert 'smithers_gateway_errors_total{code="FORBIDDEN"} 3.0' in text


async def test_two_providers_of_one_method_name_fail_startup(
    plugin_site: Path, tmp_path: Path
) -> None:
    async def other(call: Any, params: Any) -> Any:
        return []

    class Rival:
        @hookimpl
        def smithers_rpc_methods(self, host: Any) -> list[RpcMethod]:
            return [RpcMethod("listCrons", other, "cron:read", aliases=("cron.list",))]

    plugins = load_plugins(environ=dict(NO_CRON), extra=[("rival_cron", Rival())])
    with pytest.raises(SmithersError) as err:
        Gateway(plugins=plugins, base_dir=tmp_path, db="sqlite:///gw.db")
    assert err.value.code == "PLUGIN_CONFLICT"
    assert "'cron.list'" in err.value.message
    assert err.value.details == {
        "method": "cron.list",
        "plugins": ["smithers_test_plugin", "rival_cron"],
    }


async def test_scheduler_host_and_a_public_signed_webhook_route(
    plugin_site: Path, tmp_path: Path
) -> None:
    from smithers_test_plugin import SEEN

    SEEN.clear()
    async with running(make(tmp_path)) as gw:
        assert SEEN == {
            "registrations": ["deploy", "gated", "plain"],
            "scheduled": [{"workflow": "deploy", "pattern": "0 8 * * 1-5"}],
            "store": True,
            "clock": True,
        }
        body = json.dumps({"sha": "abc"}).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        async with httpx.AsyncClient(base_url=gw.url or "", timeout=10) as anon:
            bad = await anon.post(
                "/webhooks/deploy", content=body, headers={"x-hub-signature-256": "sha256=0"}
            )
            assert bad.status_code == 401  # no token needed; the signature decides
            ok = await anon.post(
                "/webhooks/deploy", content=body, headers={"x-hub-signature-256": signature}
            )
            assert ok.status_code == 202
            run_id = ok.json()["runId"]
        async with http(gw, OP_TOKEN) as c:
            run = (await rpc(c, "getRun", {"runId": run_id})).json()["payload"]
            assert run["workflowKey"] == "deploy"
        async with ws_client(gw) as ws:  # a plugin broadcasts gateway events through its host
            await ws.recv()
            await ws.connect(CRON)
            res = await ws.request("cronRun", {"workflow": "deploy"})
            assert res["ok"] is True
            event = await ws.event("cron.triggered", workflow="deploy")
            assert event["payload"]["runId"] == res["payload"]["runId"]
    assert SEEN["stopped"] is True


async def test_ui_mounts_see_every_registration_and_the_console_path(
    plugin_site: Path, tmp_path: Path
) -> None:
    async with running(make(tmp_path, operator_ui={"path": "/ops"})) as gw, http(gw) as anon:
        page = await anon.get("/workflows/deploy")
        assert page.status_code == 200 and "deploy page" in page.text
        custom = await anon.get("/pages/gated/step")
        assert custom.status_code == 200 and "gated/step" in custom.text
        assert (await anon.get("/workflows/plain")).status_code == 404  # registered without ui
        listed = (await anon.get("/workflows")).json()["workflows"]
        assert {w["key"]: w["uiPath"] for w in listed} == {
            "deploy": "/workflows/deploy",
            "gated": "/pages/gated",
            "plain": None,
        }
        assert (await anon.get("/ops/runs")).status_code == 401
        async with http(gw, OP_TOKEN) as c:
            console = await c.get("/ops/runs")
            assert console.status_code == 200 and "Operator console" in console.text


def test_cli_command_from_the_plugin(plugin_site: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.getcwd()])}
    env.pop("SMITHERS_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "smithers_core", "test-hello", "--name", "tests"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hello tests; auth modes: ")
    assert "token" in done.stdout and "none" in done.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "smithers_core", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert "test-hello" in listed.stdout
