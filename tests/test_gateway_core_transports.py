"""Core's RPC transports are plugins (issue 2): ``core.gateway_rpc`` serves ``POST /rpc`` and
``POST /v1/rpc/<method>``, ``core.gateway_ws`` the WebSocket protocol. Disabling one (config
or environment) removes its routes; another plugin can then serve them; claiming a route
twice fails startup with ``PLUGIN_CONFLICT``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import websockets
from starlette.requests import Request
from starlette.responses import JSONResponse
from websockets.exceptions import InvalidStatus

from smithers_core.config import PluginsSection
from smithers_core.contributions import HostContext, RouteSpec, RouteTransport
from smithers_core.errors import SmithersError
from smithers_core.hookspecs import hookimpl
from smithers_core.plugins import load_plugins
from tests.gateway_helpers import (
    OP_TOKEN,
    TOKENS,
    http,
    make_gateway,
    plugin_host,
    rpc,
    running,
    ws_client,
    ws_url,
)

pytestmark = pytest.mark.anyio

TOKEN_SETTINGS = {"mode": "token", "tokens": TOKENS}


def discovered(**selection: Any) -> Any:
    """Plugins found through the installed entry points, as ``smithers gateway`` loads them."""
    environ = selection.pop("environ", {})
    return load_plugins(PluginsSection(**selection), environ=environ)


async def test_default_discovery_mounts_both_transports(tmp_path: Path) -> None:
    host = discovered()
    assert {"core.gateway_rpc", "core.gateway_ws"} <= {
        name for name, info in host.infos.items() if info.loaded
    }
    gw = make_gateway(tmp_path, auth=TOKEN_SETTINGS, plugins=host)
    async with running(gw), http(gw, OP_TOKEN) as c:
        assert (await rpc(c, "health")).json()["ok"] is True
        r = await c.post("/rpc", json={"id": "a", "method": "health"})
        assert r.json()["id"] == "a" and r.json()["ok"] is True
        async with ws_client(gw) as ws:
            assert (await ws.connect())["ok"] is True


async def test_disabling_http_rpc_by_config_removes_its_routes(tmp_path: Path) -> None:
    gw = make_gateway(
        tmp_path, auth=TOKEN_SETTINGS, plugins=discovered(disable=["core.gateway_rpc"])
    )
    async with running(gw), http(gw, OP_TOKEN) as c:
        for path in ("/rpc", "/v1/rpc/health"):
            r = await c.post(path, json={"method": "health"})
            assert r.status_code == 404
            assert r.json()["error"]["code"] == "NOT_FOUND"
        assert (await c.get("/health")).status_code == 200  # core's own routes stay
        async with ws_client(gw) as ws:  # the WebSocket transport is still there
            await ws.connect()
            assert (await ws.request("health"))["ok"] is True


async def test_disabling_websocket_by_environment_refuses_upgrades(tmp_path: Path) -> None:
    host = discovered(environ={"SMITHERS_DISABLE_PLUGINS": "core.gateway_ws"})
    assert host.infos["core.gateway_ws"].enabled is False
    gw = make_gateway(tmp_path, auth=TOKEN_SETTINGS, plugins=host)
    async with running(gw):
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(ws_url(gw), open_timeout=5):
                pass
        assert info.value.response.status_code == 404
        async with http(gw, OP_TOKEN) as c:
            assert (await rpc(c, "health")).status_code == 200


async def rpc_replacement(request: Request) -> JSONResponse:
    body = await request.json()
    identity = request.state.identity
    return JSONResponse(
        {"type": "res", "id": body.get("id"), "ok": True, "payload": {"by": identity.user_id}}
    )


def replacement_rpc() -> RouteTransport:
    """A third-party HTTP RPC: the same path as core's, authenticated by core."""
    return RouteTransport(
        "replacement", [RouteSpec("/rpc", rpc_replacement, methods=("POST",), scope=None)]
    )


class ReplacementPlugin:
    @hookimpl
    def smithers_transports(self, host: HostContext) -> list[Any]:
        return [replacement_rpc()]


async def test_a_plugin_replaces_the_disabled_http_rpc(tmp_path: Path) -> None:
    host = load_plugins(
        PluginsSection(disable=["core.gateway_rpc"]),
        environ={},
        extra=[("replacement_rpc", ReplacementPlugin())],
    )
    tokens = {**TOKENS, "metrics": {"role": "viewer", "scopes": ["observability:read"]}}
    gw = make_gateway(tmp_path, tokens=tokens, plugins=host)
    async with running(gw):
        async with http(gw, OP_TOKEN) as c:
            r = await c.post("/rpc", json={"id": "x", "method": "health"})
            expected = {"type": "res", "id": "x", "ok": True, "payload": {"by": "user:will"}}
            assert r.json() == expected
            # the replaced route is the only one; core's other RPC path went with its plugin
            assert (await rpc(c, "health")).status_code == 404
        async with http(gw, "metrics") as limited:  # scope=None: any authenticated caller
            assert (await limited.post("/rpc", json={"id": "y"})).status_code == 200
        async with http(gw) as anon:
            r = await anon.post("/rpc", json={"id": "z"})
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "UNAUTHORIZED"


async def test_two_transports_claiming_one_route_fail_startup(tmp_path: Path) -> None:
    host = plugin_host()
    host.register(ReplacementPlugin(), "replacement_rpc")
    gw = make_gateway(tmp_path, tokens=TOKENS, plugins=host)
    with pytest.raises(SmithersError) as info:
        await gw.listen(port=0)
    assert info.value.code == "PLUGIN_CONFLICT"
    assert "POST /rpc" in info.value.message
    assert "'core.gateway_rpc'" in info.value.message and "'replacement'" in info.value.message
    assert gw.url is None  # nothing was bound


async def special(request: Request) -> JSONResponse:
    return JSONResponse({"special": True})


async def test_exact_plugin_route_wins_over_core_prefix(tmp_path: Path) -> None:
    class Plugin:
        @hookimpl
        def smithers_transports(self, host: HostContext) -> list[Any]:
            # an exact route wins over core's /v1/rpc/ prefix route
            route = RouteSpec("/v1/rpc/special", special, methods=("POST",))
            return [RouteTransport("override", [route])]

    host = plugin_host()
    host.register(Plugin(), "override")
    gw = make_gateway(tmp_path, tokens=TOKENS, plugins=host)
    async with running(gw), http(gw, OP_TOKEN) as c:
        assert (await c.post("/v1/rpc/special", json={})).json() == {"special": True}
        r = await rpc(c, "nope")
        assert r.json()["error"]["code"] == "METHOD_NOT_FOUND"


async def test_a_route_path_must_start_with_a_slash(tmp_path: Path) -> None:
    class Plugin:
        @hookimpl
        def smithers_transports(self, host: HostContext) -> list[Any]:
            route = RouteSpec("rpc", rpc_replacement, methods=("POST",), prefix=True)
            return [RouteTransport("bad", [route])]

    host = plugin_host()
    host.register(Plugin(), "bad")
    gw = make_gateway(tmp_path, tokens=TOKENS, plugins=host)
    with pytest.raises(SmithersError) as info:
        await gw.listen(port=0)
    assert info.value.code == "PLUGIN_INVALID" and "'bad'" in info.value.message
