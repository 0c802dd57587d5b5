"""Run input and signal payloads are validated at the edge (issue 13 items 8 and 9).

Input of the wrong type, with a wrong field or with an unknown field is 400 ``INVALID_INPUT``
with the field errors on every surface that starts a run, and no run row is left behind;
a signal whose payload does not fit the model of the wait it would resolve is refused at once
with 400 instead of being accepted and rejected later in the event stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, ConfigDict

from smithers_core.errors import SmithersError
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Seq, Task
from tests.engine_helpers import Harness
from tests.fixtures.server.helpers import server
from tests.gateway_helpers import OP_TOKEN, TOKENS, http, make_gateway, rpc, running, ws_client
from tests.test_cli_up import _setup, _status, smithers
from tests.test_serve_app import serve
from tests.test_server_api import err

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class Strict(BaseModel):
    count: int
    label: str = "x"


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    count: int = 0


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")
    count: int = 0


class Out(BaseModel):
    echoed: dict[str, Any]


def _echo(t: Any) -> Out:
    return Out(echoed=t.input.model_dump())


@workflow("strict", input=Strict)
def strict(ctx: Any) -> Any:
    return Seq(Task("t", _echo, output=Out))


@workflow("open", input=Open)
def open_(ctx: Any) -> Any:
    return Seq(Task("t", _echo, output=Out))


@workflow("lenient", input=Lenient)
def lenient(ctx: Any) -> Any:
    return Seq(Task("t", _echo, output=Out))


@workflow("untyped")
def untyped(ctx: Any) -> Any:
    return Seq(Task("t", _echo, output=Out))


def _locs(details: dict[str, Any] | None) -> list[tuple[Any, ...]]:
    assert details is not None
    return [tuple(i["loc"]) for i in details["issues"]]


# -- item 8: the input model, through the run service ---------------------------------------
async def test_input_model_edges_through_the_run_service(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        refused: list[tuple[Any, Any, str]] = [
            (strict, [1], "model_type"),
            (strict, "count", "model_type"),
            (strict, {"count": "many"}, "int_parsing"),
            (strict, {}, "missing"),
            (strict, {"count": 1, "bogus": 2}, "extra_forbidden"),  # one unknown field
            (untyped, [1], "model_type"),
        ]
        for wf, value, kind in refused:
            with pytest.raises(SmithersError) as info:
                await h.svc.launch(wf, value)
            assert info.value.code == "INVALID_INPUT", (wf, value)
            issues = (info.value.details or {})["issues"]
            assert kind in [i["type"] for i in issues], (value, issues)
        assert h.db.list_runs() == []


async def test_unknown_fields_follow_the_models_extra_setting(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        with pytest.raises(SmithersError) as info:
            await h.svc.launch(strict, {"count": 1, "bogus": 2, "more": 3})
        assert sorted(_locs(info.value.details)) == [("bogus",), ("more",)]
        assert "bogus: Extra inputs are not permitted" in info.value.message
        assert h.db.list_runs() == []  # nothing written for any refusal
        # exactly the known fields: accepted
        rid, status = await h.start(strict, {"count": 2, "label": "y"})
        assert status == "finished" and h.output(rid, "t") == {"echoed": {"count": 2, "label": "y"}}
        # extra="allow" keeps unknown fields, an explicit extra="ignore" drops them
        rid, _ = await h.start(open_, {"count": 1, "note": "kept"})
        assert h.output(rid, "t") == {"echoed": {"count": 1, "note": "kept"}}
        rid, _ = await h.start(lenient, {"count": 1, "note": "dropped"})
        assert h.output(rid, "t") == {"echoed": {"count": 1}}
        # no input model: any object; null is {}
        rid, _ = await h.start(untyped, {"anything": [1, 2]})
        assert h.output(rid, "t") == {"echoed": {"anything": [1, 2]}}
        rid, _ = await h.start(untyped, None)
        assert h.output(rid, "t") == {"echoed": {}}


# -- item 8: gateway launchRun over HTTP and WebSocket -------------------------------------
async def test_launch_run_refuses_bad_input_on_http_and_websocket(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw), http(gw, OP_TOKEN) as c, ws_client(gw) as ws:
        await ws.connect()
        bad: list[tuple[Any, list[tuple[Any, ...]]]] = [
            ([1], [()]),
            ("abc", [()]),
            (5, [()]),
            ({"sha": 5}, [("sha",)]),
            ({"sha": "x", "bogus": 1}, [("bogus",)]),
        ]
        for value, locs in bad:
            params = {"workflow": "deploy", "input": value, "runId": "refused"}
            r = await rpc(c, "launchRun", params)
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["code"] == "INVALID_INPUT", error
            assert [tuple(i["loc"]) for i in error["issues"]] == locs
            res = await ws.request("launchRun", params)
            assert res["ok"] is False and res["error"]["code"] == "INVALID_INPUT"
            assert [tuple(i["loc"]) for i in res["error"]["issues"]] == locs
        r = await rpc(c, "getRun", {"runId": "refused"})
        assert r.status_code == 404  # no run row left behind
        assert (await rpc(c, "listRuns", {})).json()["payload"] == []
        # the edge: null and exactly the model's fields are accepted
        for value in (None, {"sha": "abc"}):
            r = await rpc(c, "launchRun", {"workflow": "deploy", "input": value})
            assert r.status_code == 200, r.text


# -- item 8: start_server POST /v1/runs ------------------------------------------------------
async def test_start_server_refuses_bad_input_with_field_errors(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        p = str(s.wf["typed"])
        e = err(
            await s.client.post("/v1/runs", json={"workflowPath": p, "input": {"n": 1, "x": 2}}),
            400,
            "INVALID_INPUT",
        )
        assert [tuple(i["loc"]) for i in e["details"]["issues"]] == [("x",)]
        e = err(
            await s.client.post("/v1/runs", json={"workflowPath": p, "input": {"n": "x"}}),
            400,
            "INVALID_INPUT",
        )
        assert [tuple(i["loc"]) for i in e["details"]["issues"]] == [("n",)]
        # a non-object keeps upstream's fixed answer (reference/server.md 2.5)
        err(
            await s.client.post("/v1/runs", json={"workflowPath": p, "input": [1]}),
            400,
            "INVALID_REQUEST",
        )
        assert (await s.client.get("/v1/runs")).json() == []
        run_id = await s.start("typed", input={"n": 3})
        await s.wait_status(run_id, "finished")


# -- item 8: smithers up (also the serve app's launcher, ``smithers up --serve``) -------------
def test_cli_up_refuses_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    cwd = _setup(tmp_path)
    for value in ("[1]", '{"value": 1, "bogus": true}'):
        out = smithers(cwd, "up", "wf.py", "--run-id", "bad", "--input", value)
        assert out.returncode == 2, (value, out.stdout, out.stderr)
        assert "INVALID_INPUT" in out.stderr
        assert _status(tmp_path, "bad") is None
    serve = smithers(cwd, "up", "wf.py", "--serve", "--port", "0", "--input", "[1]")
    assert serve.returncode == 2 and "INVALID_INPUT" in serve.stderr, serve.stderr


# -- item 9: signals refused at once ---------------------------------------------------------
async def test_start_server_signal_with_a_bad_payload_is_400_at_once(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("signal")
        await s.wait_status(run_id, "waiting-event")
        for path in (f"/v1/runs/{run_id}/signals/deploy.ready", f"/signal/{run_id}/deploy.ready"):
            r = await s.client.post(path, json={"data": {"ok": "maybe"}})
            e = err(r, 400, "INVALID_INPUT")
            assert e["details"]["nodeId"] == "wait" and e["details"]["iteration"] == 0
            assert [tuple(i["loc"]) for i in e["details"]["issues"]] == [("ok",)]
        types = [ev["type"] for ev in s.db.list_events(run_id, -1, 1000)]
        assert "SignalReceived" not in types and "SignalRejected" not in types
        assert (await s.client.get(f"/v1/runs/{run_id}")).json()["status"] == "waiting-event"
        # a name nobody waits for is buffered as before, whatever its payload
        r = await s.client.post(f"/v1/runs/{run_id}/signals/other", json={"data": [1]})
        assert r.status_code == 200, r.text
        # the edge: a payload that fits is accepted and resolves the wait
        r = await s.client.post(
            f"/v1/runs/{run_id}/signals/deploy.ready", json={"data": {"ok": True}}
        )
        assert r.status_code == 200, r.text
        await s.wait_status(run_id, "finished")
        assert s.db.get_output(run_id, "done") == {"value": 1}


async def test_serve_app_signal_with_a_bad_payload_is_400(tmp_path: Path) -> None:
    async with serve(tmp_path, "signal") as s:
        await s.wait_status("waiting-event")
        r = await s.client.post("/signals/deploy.ready", json={"data": {"ok": {"no": 1}}})
        e = err(r, 400, "INVALID_INPUT")
        assert e["details"]["nodeId"] == "wait"
        r = await s.client.post("/signals/deploy.ready", json={"data": {"ok": True}})
        assert r.status_code == 200, r.text
        assert await s.wait_status("finished") == "finished"


async def test_gateway_submit_signal_with_a_bad_payload_is_400(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw), http(gw, OP_TOKEN) as c, ws_client(gw) as ws:
        await ws.connect()
        r = await rpc(c, "launchRun", {"workflow": "gated", "runId": "g1"})
        assert r.status_code == 200, r.text
        await _wait_status(c, "g1", "waiting-approval")
        r = await rpc(c, "submitApproval", {"runId": "g1", "nodeId": "gate", "approved": True})
        assert r.status_code == 200, r.text
        await _wait_status(c, "g1", "waiting-event")
        bad = {"runId": "g1", "signalName": "go", "payload": {"msg": 5}}
        r = await rpc(c, "submitSignal", bad)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "INVALID_INPUT" and error["nodeId"] == "go"
        assert [tuple(i["loc"]) for i in error["issues"]] == [("msg",)]
        res = await ws.request("signals.send", bad)
        assert res["ok"] is False and res["error"]["code"] == "INVALID_INPUT"
        r = await rpc(c, "submitSignal", {"runId": "g1", "signalName": "go", "data": {"msg": "ok"}})
        assert r.status_code == 200, r.text
        await _wait_status(c, "g1", "finished")


async def _wait_status(c: Any, run_id: str, status: str) -> None:
    async def current() -> bool:
        r = await rpc(c, "getRun", {"runId": run_id})
        return r.status_code == 200 and r.json()["payload"]["status"] == status

    with anyio.fail_after(10):
        while not await current():
            await anyio.sleep(0.02)


def test_field_errors_echo_only_short_inputs() -> None:
    """An issue keeps the offending value when it is short, and drops it when it is long:
    a client never gets a large value of its own back in an error (issue 13 item 13)."""
    with pytest.raises(SmithersError) as short:
        strict.validate_input({"count": "x" * 126})  # JSON "xx..." is 128 characters
    [issue] = short.value.details["issues"]  # type: ignore[index]
    assert issue["loc"] == ("count",) and issue["input"] == "x" * 126
    with pytest.raises(SmithersError) as long:
        strict.validate_input({"count": "x" * 127})  # 129 characters
    [issue] = long.value.details["issues"]  # type: ignore[index]
    assert issue["loc"] == ("count",) and "input" not in issue
    assert "x" * 127 not in str(long.value.to_dict())
