"""Plugin contributions on the gateway: transport routes behind core's auth, public routes,
schedulers that make ``schedule`` registrations valid and start/stop with the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import websockets
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus

from smithers_core.contributions import HostContext, RouteSpec
from smithers_core.hookspecs import hookimpl
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import OP_TOKEN, TOKENS, http, make_gateway, plugin_host, running, ws_url

pytestmark = pytest.mark.anyio


async def whoami(request: Request) -> JSONResponse:
    identity = request.state.identity
    return JSONResponse({"role": identity.role, "userId": identity.user_id})


def ping(request: Request) -> JSONResponse:
    return JSONResponse({"pong": True})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(f"{websocket.state.identity.user_id}:{text}")
    await websocket.close()


class FixtureTransport:
    name = "fixture"

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.routes = [
            RouteSpec("/v1/whoami", whoami, scope="run:write"),
            RouteSpec("/public/ping", ping, auth="public"),
            RouteSpec("/v1/echo", echo, websocket=True),
        ]

    async def startup(self) -> None:
        self.log.append("transport:start")

    async def shutdown(self) -> None:
        self.log.append("transport:stop")


class FixtureScheduler:
    name = "fixture-cron"
    options = frozenset({"schedule"})

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def start(self, host: HostContext) -> None:
        assert host.kind == "gateway"
        assert host.run_service is not None and host.store is not None and host.db is not None
        self.log.append("scheduler:start")

    async def stop(self) -> None:
        self.log.append("scheduler:stop")


class FixturePlugin:
    def __init__(self) -> None:
        self.log: list[str] = []

    @hookimpl
    def smithers_transports(self, host: HostContext) -> list[Any]:
        return [FixtureTransport(self.log)]

    @hookimpl
    def smithers_schedulers(self, host: HostContext) -> list[Any]:
        return [FixtureScheduler(self.log)]


async def test_plugin_routes_and_schedulers(tmp_path: Path) -> None:
    plugin = FixturePlugin()
    host = plugin_host()
    host.register(plugin, "fixture_plugin")
    tokens = {**TOKENS, "reader": {"role": "viewer", "scopes": ["run:read"], "userId": "u:r"}}
    gw = make_gateway(tmp_path, tokens=tokens, plugins=host)
    gw.register("nightly", wfs.deploy, schedule="0 3 * * *")  # a plugin implements schedule
    async with running(gw):
        assert plugin.log == ["transport:start", "scheduler:start"]
        async with http(gw, OP_TOKEN) as c:
            r = await c.get("/v1/whoami")
            assert r.status_code == 200
            assert r.json() == {"role": "operator", "userId": "user:will"}
        async with http(gw, "reader") as reader:
            r = await reader.get("/v1/whoami")
            assert r.status_code == 403
            assert r.json()["error"]["requiredScope"] == "run:write"
        async with http(gw) as anon:
            r = await anon.get("/v1/whoami")
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "UNAUTHORIZED"
            assert r.headers["x-smithers-api-version"] == "v1"
            r = await anon.get("/public/ping")
            assert r.json() == {"pong": True}

        url = ws_url(gw).rstrip("/") + "/v1/echo"
        async with websockets.connect(url, additional_headers={"x-smithers-key": OP_TOKEN}) as ws:
            await ws.send("hi")
            assert await ws.recv() == "user:will:hi"
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(url):
                pass
        assert info.value.response.status_code == 401
    assert plugin.log[-2:] == ["scheduler:stop", "transport:stop"]


class UiPlugin:
    def __init__(self, assets: Path) -> None:
        self.assets = assets

    @hookimpl
    def smithers_ui_mounts(self, host: HostContext) -> list[Any]:
        from smithers_core.contributions import UiMount

        async def console(scope: Any, receive: Any, send: Any) -> None:
            response = JSONResponse({"console": scope["path"]})
            await response(scope, receive, send)

        return [
            UiMount("/ui", "Dashboard", assets=self.assets),
            UiMount("/console", "Operator console", app=console, option="operator_ui"),
        ]


async def test_ui_mounts(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "index.html").write_text("<h1>dash</h1>")
    host = plugin_host()
    host.register(UiPlugin(assets), "fixture_ui")
    gw = make_gateway(tmp_path, tokens=TOKENS, plugins=host)
    gw.register("withui", wfs.deploy, ui=True)  # valid now that a UI plugin is installed
    async with running(gw), http(gw) as anon:
        r = await anon.get("/ui/")
        assert r.status_code == 200 and "dash" in r.text
        r = await anon.get("/console/runs")
        assert r.status_code == 401  # the operator console requires auth
        async with http(gw, OP_TOKEN) as c:
            r = await c.get("/console/runs")
            assert r.json() == {"console": "/runs"}
        workflows = (await anon.get("/workflows")).json()["workflows"]
        assert {"key": "withui", "hasUi": True, "uiPath": "/workflows/withui"}.items() <= next(
            w for w in workflows if w["key"] == "withui"
        ).items()
