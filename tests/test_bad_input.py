"""Issue 13, items 5, 6, 7 and 13: bad input gets a clear 4xx JSON error and a live connection
on every surface (gateway ``/v1/rpc/<m>``, ``/rpc`` and WebSocket, start_server, serve app,
CLI), never a 500 nor a traceback in the log."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from smithers_core import jsonutil
from smithers_core.cli.main import main as cli_main
from smithers_core.errors import SmithersError
from smithers_core.gateway import Gateway
from smithers_core.hosts.serve import create_serve_app
from smithers_core.runtime import Runtime
from smithers_core.workflow.loader import load_workflow
from tests import stores
from tests.engine_helpers import engine_options
from tests.fixtures.server.helpers import copy_workflows, server
from tests.gateway_helpers import OP_TOKEN, TOKENS, WsClient, http, make_gateway, running, ws_client

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SURFACES = ("path", "rpc", "ws")
"""The gateway's three ways in: ``POST /v1/rpc/<method>`` (the body is the params),
``POST /rpc`` (``{method, params}``) and a WebSocket request frame."""
WRAP = {"path": 0, "rpc": 1, "ws": 1}
"""How many levels each surface adds above the params."""

LONE = '"\\ud800"'
PAIR = '"\\ud83d\\ude00"'  # an escaped astral character (U+1F600): valid
BAD_RUN_IDS = ["a/b", "../x", "..", ".", "a..b", "x" * 129, "a b", "%2e%2e", "é"]


@dataclass
class Gw:
    gw: Gateway
    client: httpx.AsyncClient
    ws: WsClient
    n: int = 0

    async def call(self, surface: str, method: str, params_text: str) -> tuple[int, Any]:
        """Send ``params_text`` (raw JSON) as ``method``'s params; ``(status, frame)`` where a
        WebSocket answer's status is that of its code (0 when ok)."""
        if surface == "path":
            r = await self.client.post(f"/v1/rpc/{method}", content=params_text.encode())
            return r.status_code, r.json()
        if surface == "rpc":
            body = '{"method":' + json.dumps(method) + ',"params":' + params_text + "}"
            r = await self.client.post("/rpc", content=body.encode())
            return r.status_code, r.json()
        self.n += 1
        fid = f"q{self.n}"
        frame = '{"type":"req","id":"' + fid + '","method":' + json.dumps(method)
        await self.ws.send(frame + ',"params":' + params_text + "}")
        got = await self.ws.wait_for(
            lambda f: f.get("type") == "res" and f.get("id") in (fid, "invalid"), timeout=20
        )
        if got["ok"]:
            return 200, got
        from smithers_core.gateway.wire import status_for_code

        return status_for_code(got["error"]["code"]), got

    async def still_answers(self, surface: str) -> None:
        """The transport answers a good request after the bad one (the socket too)."""
        status, frame = await self.call(surface, "listRuns", "{}")
        assert status == 200 and frame["ok"] is True, frame


@asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[Gw]:
    async with (
        running(make_gateway(tmp_path, tokens=TOKENS)) as gw,
        http(gw, OP_TOKEN) as client,
        ws_client(gw, max_size=None) as ws,
    ):
        hello = await ws.connect()
        assert hello["ok"], hello
        yield Gw(gw, client, ws)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not logged, [r.getMessage() for r in logged]


def nested(levels: int, leaf: str = "0") -> str:
    return "[" * levels + leaf + "]" * levels


# -- item 5: lone surrogates ----------------------------------------------------------------
def test_loads_strict_refuses_lone_surrogates_and_keeps_pairs() -> None:
    for text in (LONE, '"\\udc00"', '{"\\ud800":1}', '["x\\uDBFF"]', '"\\ude00\\ud83d"'):
        with pytest.raises(jsonutil.LoneSurrogate):
            jsonutil.loads_strict(text)
    assert jsonutil.loads_strict(PAIR) == "\U0001f600"
    assert jsonutil.loads_strict('"\\\\ud800"') == "\\ud800"  # an escaped backslash, not \u


@pytest.mark.parametrize("surface", SURFACES)
async def test_lone_surrogate_is_invalid_json_on_the_gateway(
    tmp_path: Path, surface: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway(tmp_path) as g:
        for method, params in (
            ("launchRun", '{"workflow":"deploy","input":{"name":' + LONE + "}}"),
            ("listRuns", '{"status":' + LONE + "}"),
            ("getRun", '{"runId":' + LONE + "}"),
        ):
            status, frame = await g.call(surface, method, params)
            assert status == 400, frame
            assert frame["error"]["code"] == "INVALID_INPUT"
            assert "valid JSON" in frame["error"]["message"]
            await g.still_answers(surface)
        status, frame = await g.call(surface, "listRuns", '{"status":' + PAIR + "}")
        assert status == 200 and frame["payload"] == [], frame
    no_tracebacks(caplog)


async def test_lone_surrogate_in_a_websocket_frame_id_leaves_the_socket_answering(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path) as g:
        await g.ws.send('{"type":"req","id":' + LONE + ',"method":"listRuns"}')
        got = await g.ws.wait_for(lambda f: f.get("id") == "invalid")
        assert got["error"]["code"] == "INVALID_INPUT"
        await g.still_answers("ws")


async def test_lone_surrogate_on_start_server_and_serve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with server(tmp_path / "srv") as s:
        fast = str(s.wf["fast"])
        for path, body in (
            ("/v1/runs", '{"workflowPath":"wf/fast.py","input":{"x":' + LONE + "}}"),
            ("/v1/runs", '{"workflowPath":' + LONE + "}"),
            ("/v1/runs/x/nodes/n/approve", '{"note":' + LONE + "}"),
            ("/v1/runs/x/signals/go", '{"data":' + LONE + "}"),
        ):
            r = await s.client.post(path, content=body.encode())
            assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_JSON", r.text
        r = await s.client.post("/v1/runs", json={"workflowPath": fast, "runId": "after"})
        assert r.status_code == 200, r.text
    async with served(tmp_path / "serve") as client:
        # the serve app's bodies are lenient (reference 1.7): not JSON reads as {}
        r = await client.post("/signals/go", content=('{"data":' + LONE + "}").encode())
        assert r.status_code == 200, r.text
        assert (await client.get("/")).status_code == 200
    no_tracebacks(caplog)


# -- item 6: depth ---------------------------------------------------------------------------
def test_nesting_prescan_edge_and_speed() -> None:
    assert jsonutil.loads_strict(nested(32, "")) is not None
    with pytest.raises(jsonutil.JsonTooDeep):
        jsonutil.loads_strict(nested(33, ""))
    for text in (nested(5_000), "[" * 1_000_000, '{"a":' * 100_000):
        with pytest.raises(jsonutil.JsonTooDeep):
            jsonutil.loads_strict(text)
    # brackets inside strings do not count; depth built from siblings does
    assert jsonutil.loads_strict('{"a":"' + "[" * 1000 + '\\"]"}')["a"].startswith("[[")
    with pytest.raises(jsonutil.JsonTooDeep):
        jsonutil.loads_strict("[[]," * 40 + "1" + "]" * 40)


@pytest.mark.parametrize("surface", SURFACES)
async def test_depth_edge_on_the_gateway(
    tmp_path: Path, surface: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway(tmp_path) as g:
        # params {"pad": [[...0...]]}: object 1, k arrays, the leaf 1, plus the wrapper's levels
        k = 32 - WRAP[surface] - 2
        status, frame = await g.call(surface, "listRuns", '{"pad":' + nested(k) + "}")
        assert status == 200, frame  # depth 32: accepted
        for params in (
            '{"pad":' + nested(k + 1) + "}",  # depth 33
            nested(5_000),
            "[" * 1_000_000,
        ):
            status, frame = await g.call(surface, "listRuns", params)
            assert status == 400, frame
            error = frame["error"]
            assert error["code"] == "INVALID_INPUT" and error["maxDepth"] == 32, error
            await g.still_answers(surface)
    no_tracebacks(caplog)


async def test_depth_on_start_server_and_serve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with server(tmp_path / "srv") as s:
        for body in (nested(5_000), "[" * 1_000_000):
            r = await s.client.post("/v1/runs", content=body.encode())
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "INVALID_REQUEST"
            assert r.json()["error"]["details"] == {"maxDepth": 32}
    async with served(tmp_path / "serve") as client:
        r = await client.post("/signals/go", content=nested(5_000).encode())
        assert r.status_code == 200, r.text  # lenient: read as {}
    no_tracebacks(caplog)


# -- item 7: workflow paths on start_server ------------------------------------------------
async def test_workflow_path_errors_are_4xx_relative_to_the_root(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    (root / "wf").mkdir(parents=True)
    (root / "wf" / "broken.py").write_text("def (:\n")
    (root / "wf" / "empty.py").write_text("X = 1\n")
    async with server(root) as s:
        cases = [
            ("wf/missing.py", 404, "WORKFLOW_NOT_FOUND", "Workflow file not found: wf/missing.py"),
            (
                "..%2fsecret.py",
                404,
                "WORKFLOW_NOT_FOUND",
                "Workflow file not found: ..%2fsecret.py",
            ),
            ("wf/empty.py", 404, "WORKFLOW_NOT_FOUND", None),
            (
                "wf/fast.py:nosuch",
                404,
                "WORKFLOW_NOT_FOUND",
                "No workflow named 'nosuch' in wf/fast.py; found: fast",
            ),
            ("wf/broken.py", 422, "WORKFLOW_LOAD_FAILED", None),
            ("wf", 422, "WORKFLOW_LOAD_FAILED", None),
            ("wf/x\x00.py", 400, "INVALID_REQUEST", "workflowPath must not contain NUL bytes"),
            ("../x.py", 400, "WORKFLOW_PATH_OUTSIDE_ROOT", None),
            ("x" * 4097, 400, "INVALID_REQUEST", None),
        ]
        for path, status, code, message in cases:
            for url in ("/v1/runs", "/v1/runs/some-run/resume"):
                r = await s.client.post(url, json={"workflowPath": path})
                assert r.status_code == status, (path, r.text)
                error = r.json()["error"]
                assert error["code"] == code, (path, error)
                assert message is None or error["message"] == message, error
                assert str(tmp_path) not in r.text, r.text
        ok = await s.client.post("/v1/runs", json={"workflowPath": "wf/fast.py"})
        assert ok.status_code == 200
    no_tracebacks(caplog)


# -- item 13: run ids and echoed values -----------------------------------------------------
@pytest.mark.parametrize("surface", SURFACES)
async def test_run_ids_on_the_gateway(tmp_path: Path, surface: str) -> None:
    async with gateway(tmp_path) as g:
        for bad in BAD_RUN_IDS:
            text = json.dumps(bad)
            for method, params in (
                ("getRun", '{"runId":' + text + "}"),
                ("cancelRun", '{"runId":' + text + "}"),
                ("launchRun", '{"workflow":"deploy","runId":' + text + "}"),
                ("launchRun", '{"workflow":"deploy","options":{"runId":' + text + "}}"),
            ):
                status, frame = await g.call(surface, method, params)
                assert status == 400, (bad, method, frame)
                assert frame["error"]["code"] == "INVALID_REQUEST", frame
                assert bad not in frame["error"]["message"] or len(bad) < 3
        assert g.gw.runtime is not None
        assert g.gw.runtime.db.list_runs(50, None) == []  # nothing was launched
        edge = "r" * 128
        status, frame = await g.call(surface, "getRun", json.dumps({"runId": edge}))
        assert status == 404 and frame["error"]["code"] == "NOT_FOUND", frame
        status, frame = await g.call(
            surface, "launchRun", json.dumps({"workflow": "deploy", "runId": edge})
        )
        assert status == 200 and frame["payload"]["runId"] == edge, frame
        if surface == "ws":
            status, frame = await g.call(surface, "streamRunEvents", '{"runId":"a/b"}')
            assert status == 400 and frame["error"]["code"] == "InvalidRunId", frame


async def test_request_id_and_names_in_errors_are_capped(tmp_path: Path) -> None:
    async with gateway(tmp_path) as g:
        for sent, echoed in (("i" * 128, "i" * 128), ("j" * 129, "j" * 128)):
            r = await g.client.post(
                "/v1/rpc/getRun", json={"runId": "nope"}, headers={"x-request-id": sent}
            )
            assert r.status_code == 404 and r.json()["id"] == echoed
        key = "w" * 10_000
        status, frame = await g.call("path", "launchRun", json.dumps({"workflow": key}))
        assert status == 404, frame
        assert frame["error"]["message"] == "Unknown workflow: " + "w" * 128
        assert frame["error"]["workflow"] == "w" * 128
    async with server(tmp_path / "srv") as s:
        r = await s.client.get("/v1/runs", params={"limit": "z" * 1000})
        assert r.status_code == 400
        assert (
            r.json()["error"]["message"] == 'Expected a positive integer, got "' + "z" * 128 + '"'
        )


async def test_run_ids_on_start_server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with server(tmp_path) as s:
        fast = str(s.wf["fast"])
        for bad in BAD_RUN_IDS:
            r = await s.client.post("/v1/runs", json={"workflowPath": fast, "runId": bad})
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["error"]["code"] == "INVALID_REQUEST"
        edge = "r" * 128
        r = await s.client.post("/v1/runs", json={"workflowPath": fast, "runId": edge})
        assert r.status_code == 200 and r.json() == {"runId": edge}
        for path in (
            "/v1/runs/..%2f..%2fetc",
            "/v1/runs/a..b/cancel",
            "/v1/runs/" + "r" * 129,
            "/v1/runs/%2e%2e/frames",
            "/v1/runs/a%2Fb/events",
        ):
            method = "POST" if path.endswith("cancel") else "GET"
            r = await s.client.request(method, path)
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"]["code"] == "INVALID_REQUEST", r.text
        for path in ("/v1/runs/%00/cancel", "/v1/runs/%ZZ/cancel", "/signal/%E0%A4%A/go"):
            r = await s.client.post(path)
            assert r.status_code == 400 and r.json()["error"]["message"] == "URI malformed"
        r = await s.client.post("/v1/runs/..%2fx/resume", json={"workflowPath": fast})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        r = await s.client.get("/v1/runs/" + "q" * 128)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    no_tracebacks(caplog)


async def test_serve_app_refuses_a_bad_run_id(tmp_path: Path) -> None:
    paths = copy_workflows(tmp_path)
    workflow = load_workflow(paths["fast"])
    async with Runtime(stores.url("s.db"), base_dir=tmp_path, options=engine_options()) as rt:
        for bad in ("../x", "a/b", "r" * 129):
            with pytest.raises(SmithersError) as info:
                create_serve_app(workflow, rt, bad)
            assert info.value.code == "INVALID_INPUT"
        create_serve_app(workflow, rt, "r" * 128)
        with pytest.raises(SmithersError) as info:
            await rt.service.launch(workflow, {}, run_id="a/../b")
        assert info.value.code == "INVALID_INPUT"


def test_cli_refuses_bad_run_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path}/x.db"
    for argv in (
        ["runs", "show", "../x", "--db", db],
        ["runs", "cancel", "a/b", "--db", db],
        ["runs", "approve", "a..b", "node", "--db", db],
        ["up", str(tmp_path / "wf.py"), "--run-id", "r" * 129],
    ):
        with pytest.raises(SystemExit) as info:
            cli_main(argv)
        assert info.value.code == 2, argv
        assert "not a run id" in capsys.readouterr().err


@asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A serve app over a waiting run (the ``signal`` fixture)."""
    import anyio

    from smithers_core.http.binding import serve_app

    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = copy_workflows(tmp_path)
    workflow = load_workflow(paths["signal"])
    async with (
        Runtime(stores.url("s.db"), base_dir=tmp_path, options=engine_options()) as rt,
        anyio.create_task_group() as tg,
    ):
        run_id = (await rt.service.launch(workflow, {}))["runId"]
        bound = await serve_app(
            tg, create_serve_app(workflow, rt, run_id, auth_token=""), port=0, lifespan="off"
        )
        try:
            async with httpx.AsyncClient(base_url=bound.url, timeout=20) as client:
                yield client
        finally:
            bound.server.force_exit = True
            await bound.close()


async def test_integers_beyond_sqlite_are_refused_not_500(tmp_path: Path) -> None:
    """A frame number, attempt, iteration or cursor past 2**63 - 1 cannot be bound in a query:
    it is a 400 with the method's code, and a limit past it is clamped as before."""
    huge = 10**30
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        launched = await c.post("/v1/rpc/launchRun", json={"workflow": "deploy"})
        run_id = launched.json()["payload"]["runId"]
        refused = {
            "frames.list": ({"runId": run_id, "afterFrameNo": huge}, "INVALID_INPUT"),
            "frames.get": ({"runId": run_id, "frameNo": huge}, "INVALID_INPUT"),
            "attempts.list": (
                {"runId": run_id, "nodeId": "ship", "iteration": huge},
                "INVALID_REQUEST",
            ),
            "attempts.get": (
                {"runId": run_id, "nodeId": "ship", "iteration": 0, "attempt": huge},
                "INVALID_REQUEST",
            ),
            "submitApproval": (
                {"runId": run_id, "nodeId": "ship", "iteration": huge, "approved": True},
                "INVALID_REQUEST",
            ),
        }
        for method, (params, code) in refused.items():
            response = await c.post(f"/v1/rpc/{method}", json=params)
            assert response.status_code == 400, (method, response.text)
            assert response.json()["error"]["code"] == code, method
        for method, params in (
            ("frames.list", {"runId": run_id, "limit": huge}),
            ("listRuns", {"filter": {"limit": huge}}),
        ):
            assert (await c.post(f"/v1/rpc/{method}", json=params)).status_code == 200
