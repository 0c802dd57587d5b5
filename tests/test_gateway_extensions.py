"""``extend()``: an extension namespace with a resource, an action and a stream, over HTTP and
WebSocket; registration rules, scopes, size caps, error codes, cleanup on disconnect, and a
namespace contributed by a plugin through ``smithers_rpc_namespaces``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from smithers_core.errors import SmithersError
from smithers_core.gateway import ExtensionContext, StreamContext
from smithers_core.hookspecs import hookimpl
from tests.engine_helpers import wait_for
from tests.gateway_helpers import (
    OP_TOKEN,
    TOKENS,
    http,
    make_gateway,
    plugin_host,
    rpc,
    running,
    ws_client,
)

pytestmark = pytest.mark.anyio


class DeployExtension:
    """A namespace whose stream subscribers the ``emit`` action can talk to."""

    def __init__(self) -> None:
        self.streams: dict[str, StreamContext] = {}
        self.cleaned: list[str] = []
        self.calls: list[ExtensionContext] = []

    def status(self, params: dict[str, Any], ctx: ExtensionContext) -> Any:
        self.calls.append(ctx)
        return {"env": params.get("env", "prod"), "healthy": True, "kind": ctx.kind}

    async def ship(self, params: dict[str, Any], ctx: ExtensionContext) -> Any:
        self.calls.append(ctx)
        if params.get("fail") == "structured":
            raise SmithersError("CONFLICT", "Deploy already in progress", {"env": "prod"})
        if params.get("fail") == "crash":
            raise RuntimeError("boom")
        if params.get("big"):
            return {"blob": "x" * (4 * 1024 * 1024)}
        await anyio.sleep(0)
        return {"shipped": params.get("sha"), "by": ctx.user_id}

    def emit(self, params: dict[str, Any], ctx: ExtensionContext) -> Any:
        for stream in self.streams.values():
            stream.send({"line": params.get("line")})
        return {"sent": len(self.streams)}

    def logs(self, params: dict[str, Any], ctx: StreamContext) -> Any:
        self.streams[ctx.stream_id] = ctx

        def cleanup() -> None:
            self.streams.pop(ctx.stream_id, None)
            self.cleaned.append(ctx.stream_id)

        return {"initial": {"tail": []}, "cleanup": cleanup}

    def definition(self) -> dict[str, Any]:
        return {
            "title": "Deploys",
            "resources": {"status": {"handler": self.status}},
            "actions": {"ship": {"handler": self.ship}, "emit": self.emit},
            "streams": {"logs": {"subscribe": self.logs}},
        }


async def test_extension_over_http_and_websocket(tmp_path: Path) -> None:
    ext = DeployExtension()
    tokens = {**TOKENS, "reader": {"role": "viewer", "scopes": ["run:read"], "userId": "u:r"}}
    gw = make_gateway(tmp_path, tokens=tokens).extend("deploy", ext.definition())
    assert gw.context.extensions.list() == [
        {
            "namespace": "deploy",
            "title": "Deploys",
            "description": None,
            "defaultScope": None,
            "resources": ["status"],
            "actions": ["emit", "ship"],
            "streams": ["logs"],
        }
    ]
    async with running(gw), http(gw, OP_TOKEN) as c:
        r = await rpc(c, "ext.deploy.status", {"env": "stage"})
        assert r.status_code == 200
        assert r.json()["payload"] == {"env": "stage", "healthy": True, "kind": "resource"}
        r = await c.post("/rpc", json={"method": "ext.deploy.ship", "params": {"sha": "abc"}})
        assert r.json()["payload"] == {"shipped": "abc", "by": "user:will"}
        ctx = ext.calls[-1]
        assert ctx.namespace == "deploy" and ctx.key == "ship" and ctx.kind == "action"
        assert ctx.scopes == ("*",) and ctx.connection_id is not None
        assert ctx.signal.is_set()  # fired when the call completed

        r = await rpc(c, "ext.deploy.ship", {"fail": "structured"})
        assert r.status_code == 409
        assert r.json()["error"] == {
            "version": "v1",
            "code": "CONFLICT",
            "message": "Deploy already in progress",
            "env": "prod",
        }
        r = await rpc(c, "ext.deploy.ship", {"fail": "crash"})
        assert r.status_code == 500
        assert r.json()["error"] == {
            "version": "v1",
            "code": "EXTENSION_HANDLER_ERROR",
            "message": "boom",
        }
        r = await rpc(c, "ext.deploy.ship", {"big": True})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "PayloadTooLarge"
        assert r.json()["error"]["maxBytes"] == 4 * 1024 * 1024
        r = await rpc(c, "ext.deploy.nothing")
        assert r.status_code == 404  # D7: 404, not upstream's 500
        assert r.json()["error"] == {
            "version": "v1",
            "code": "EXTENSION_METHOD_NOT_FOUND",
            "message": "Unknown extension method: ext.deploy.nothing",
            "method": "ext.deploy.nothing",
        }
        r = await rpc(c, "ext.stream.deploy.logs")
        assert r.status_code == 400
        assert r.json()["error"]["message"] == (
            "Extension stream ext.stream.deploy.logs is only supported over websocket connections."
        )

        # Scopes: resources default to run:read, actions to run:write; name grants never apply.
        async with http(gw, "reader") as reader:
            assert (await rpc(reader, "ext.deploy.status")).status_code == 200
            r = await rpc(reader, "ext.deploy.ship", {"sha": "x"})
            assert r.status_code == 403
            assert r.json()["error"]["requiredScope"] == "run:write"

        # There is no unauthenticated path to an extension handler.
        async with http(gw) as anon:
            r = await rpc(anon, "ext.deploy.status")
            assert r.status_code == 401

        # Over WebSocket: the same resource and action, plus the stream.
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect()
            res = await ws.request("ext.deploy.status")
            assert res["payload"]["healthy"] is True
            res = await ws.request("ext.deploy.ship", {"sha": "def"})
            assert res["payload"] == {"shipped": "def", "by": "user:will"}
            res = await ws.request("ext.stream.deploy.logs", {"follow": True})
            sub = res["payload"]
            assert set(sub) == {"streamId", "namespace", "key", "initial"}
            assert sub["namespace"] == "deploy" and sub["key"] == "logs"
            assert sub["initial"] == {"tail": []}
            stream_id = sub["streamId"]
            assert (await rpc(c, "ext.deploy.emit", {"line": "hello"})).json()["payload"] == {
                "sent": 1
            }
            event = await ws.event("ext.stream.event")
            assert event["payload"] == {
                "streamId": stream_id,
                "namespace": "deploy",
                "key": "logs",
                "payload": {"line": "hello"},
            }
        # Disconnecting runs the stream's cleanup.
        await wait_for(lambda: ext.cleaned == [stream_id], 5, "stream cleanup")
        assert (await rpc(c, "ext.deploy.emit", {"line": "x"})).json()["payload"] == {"sent": 0}


@pytest.mark.parametrize(
    ("namespace", "definition", "message"),
    [
        ("bad_ns", {}, "namespace"),
        ("Upper", {}, "namespace"),
        ("stream", {}, "reserved"),
        ("ok", {"actions": {"do_it": lambda p, c: None}}, "key"),
        ("ok", {"actions": {"do-it": lambda p, c: None}}, "key"),
        ("ok", {"actions": {"x": {"handler": "not callable"}}}, "callable"),
        (
            "ok",
            {"resources": {"x": {"handler": lambda p, c: None, "scope": "ticket:read"}}},
            "scope",
        ),
        ("ok", {"default_scope": "nope"}, "scope"),
        (
            "ok",
            {"resources": {"x": lambda p, c: None}, "actions": {"x": lambda p, c: None}},
            "both",
        ),
        ("ok", "not a mapping", "mapping"),
        ("n" * 65, {}, "namespace"),
    ],
)
def test_extend_validation(tmp_path: Path, namespace: str, definition: Any, message: str) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    with pytest.raises(SmithersError) as info:
        gw.extend(namespace, definition)
    assert info.value.code == "INVALID_INPUT"
    assert message in info.value.message


def test_extend_is_one_shot_and_chains(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    assert gw.extend("one", {"resources": {"a": lambda p, c: 1}}) is gw
    with pytest.raises(SmithersError) as info:
        gw.extend("one", {})
    assert "already registered" in info.value.message


class NamespacePlugin:
    @hookimpl
    def smithers_rpc_namespaces(self) -> dict[str, Any]:
        return {
            "plug": {
                "default_scope": "observability:read",
                "resources": {"ping": lambda params, ctx: {"pong": ctx.namespace}},
            }
        }


async def test_plugin_contributed_namespace(tmp_path: Path) -> None:
    host = plugin_host()
    host.register(NamespacePlugin(), "fixture_namespaces")
    tokens = {**TOKENS, "reader": {"role": "viewer", "scopes": ["run:read"]}}
    gw = make_gateway(tmp_path, tokens=tokens, plugins=host)
    async with running(gw), http(gw, OP_TOKEN) as c:
        r = await rpc(c, "ext.plug.ping")
        assert r.json()["payload"] == {"pong": "plug"}
        async with http(gw, "reader") as reader:
            r = await rpc(reader, "ext.plug.ping")
            assert r.status_code == 403
            assert r.json()["error"]["requiredScope"] == "observability:read"


async def test_extension_stream_caps(tmp_path: Path) -> None:
    ext = DeployExtension()
    gw = make_gateway(tmp_path, tokens=TOKENS, run_stream_queue_limit=2)
    gw.extend("deploy", ext.definition())
    async with running(gw), ws_client(gw) as ws:
        await ws.recv()
        await ws.connect()
        stream_id = (await ws.request("ext.stream.deploy.logs"))["payload"]["streamId"]
        stream = ext.streams[stream_id]
        # An envelope over 4 MiB is dropped and reported; the stream stays open.
        stream.send({"line": "x" * (4 * 1024 * 1024)})
        err = await ws.event("ext.stream.error")
        assert err["payload"]["streamId"] == stream_id
        assert err["payload"]["error"]["code"] == "PayloadTooLarge"
        assert ext.cleaned == []
        # More frames queued than the per-stream limit: BackpressureDisconnect and cleanup.
        for i in range(5):
            stream.send({"line": i})
        err = await ws.event("ext.stream.error")
        assert err["payload"]["error"]["code"] == "BackpressureDisconnect"
        await wait_for(lambda: ext.cleaned == [stream_id], 5, "cleanup after backpressure")
        assert stream.signal.is_set()
        assert (await ws.request("health"))["ok"] is True  # the socket stays open
