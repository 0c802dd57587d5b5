"""HTTP RPC over a real gateway: Appendix A exchanges, routes, error codes at the edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smithers_core import jsonutil
from smithers_core.errors import SmithersError
from smithers_core.gateway import Gateway
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


def _error(r: Any) -> dict[str, Any]:
    body = r.json()
    assert body["type"] == "res" and body["ok"] is False and body["apiVersion"] == "v1"
    assert r.headers["x-smithers-api-version"] == "v1"
    err: dict[str, Any] = body["error"]
    assert err["version"] == "v1"
    return err


async def _status(client: Any, run_id: str, wanted: str) -> dict[str, Any]:
    async def check() -> Any:
        r = await rpc(client, "getRun", {"runId": run_id})
        run = r.json()["payload"]
        return run if run["status"] == wanted else None

    result: dict[str, Any] = await wait_for(check, 5, f"run {run_id} -> {wanted}")
    return result


async def test_appendix_a_http_exchanges(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        launched = await rpc(c, "launchRun", {"workflow": "deploy", "input": {"sha": "abc"}})
        assert launched.status_code == 200
        run_id = launched.json()["payload"]["runId"]
        assert launched.json()["payload"] == {
            "runId": run_id,
            "workflow": "deploy",
            "system": False,
        }

        r = await c.post("/v1/rpc/getRun", json={"runId": run_id}, headers={"x-request-id": "q1"})
        assert r.status_code == 200
        assert r.headers["x-smithers-api-version"] == "v1"
        body = r.json()
        assert body["type"] == "res" and body["id"] == "q1" and body["ok"] is True
        assert body["apiVersion"] == "v1"
        assert body["payload"]["runId"] == run_id
        for key in ("workflowKey", "system", "summary", "runState", "configJson", "status"):
            assert key in body["payload"]

        r = await c.post(
            "/rpc",
            json={"method": "runs.get", "params": {"runId": "nope"}},
            headers={"x-smithers-key": OP_TOKEN, "authorization": ""},
        )
        assert r.status_code == 404
        assert _error(r) == {"version": "v1", "code": "NOT_FOUND", "message": "Run not found: nope"}

    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw:
        async with http(gw) as anon:
            r = await anon.post("/rpc", json={"method": "health"})
            assert r.status_code == 401
            assert _error(r)["message"] == "A bearer token is required"
        async with http(gw, "wrong") as bad:
            r = await bad.post("/rpc", json={"method": "health"})
            assert r.status_code == 401
            assert _error(r) == {
                "version": "v1",
                "code": "UNAUTHORIZED",
                "message": "Invalid token",
            }


async def test_rpc_envelope_and_ids(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        r = await c.post("/rpc", json={"id": "mine", "method": "health"})
        assert r.json()["id"] == "mine" and r.json()["ok"] is True
        # /v1/rpc/<method> with a body holding "method": params come from body.params,
        # and the URL method wins.
        r = await c.post("/v1/rpc/listWorkflows", json={"method": "health", "params": {}})
        keys = [w["key"] for w in r.json()["payload"]]
        assert keys == ["deploy", "gated", "restricted", "slow"]
        r = await c.post("/v1/rpc/workflows.list", json={"filter": {"hasUi": True}})
        assert r.json()["payload"] == []


async def test_health_metrics_workflows_and_404(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw) as c:
        r = await c.get("/health")
        assert r.status_code == 200 and r.headers["x-smithers-api-version"] == "v1"
        body = r.json()
        assert body["ok"] is True and body["protocol"] == 1
        assert body["features"] == ["streaming", "runs"]
        assert body["workflowsTotal"] == 4 and "identity" in body
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"

        r = await c.get("/health?x=1")
        assert r.status_code == 404
        assert r.json() == {"error": {"code": "NOT_FOUND", "message": "Route not found"}}
        assert r.headers["x-smithers-api-version"] == "v1"

        r = await c.get("/workflows")
        assert [w["key"] for w in r.json()["workflows"]] == [
            "deploy",
            "gated",
            "restricted",
            "slow",
        ]
        assert r.json()["workflows"][0] == {
            "key": "deploy",
            "description": "Ship one commit.",
            "hasUi": False,
            "uiPath": None,
            "system": False,
        }

        async with http(gw, OP_TOKEN) as authed:
            await rpc(authed, "health")
            await rpc(authed, "nope")
        r = await c.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert r.headers["x-smithers-api-version"] == "v1"
        text = r.text
        for family in (
            "approval_decisions_total",
            "auth_events_total",
            "connections_active",
            "connections_closed_total",
            "connections_total",
            "cron_triggers_total",
            "errors_total",
            "heartbeat_ticks_total",
            "messages_received_total",
            "messages_sent_total",
            "rpc_calls_total",
            "rpc_duration_ms",
            "runs_completed_total",
            "runs_started_total",
            "signals_total",
            "webhooks_received_total",
            "webhooks_rejected_total",
            "webhooks_verified_total",
        ):
            assert f"smithers_gateway_{family}" in text, family
        assert "_created" not in text
        assert 'smithers_gateway_rpc_calls_total{method="health",transport="http"} 1.0' in text
        assert 'smithers_gateway_errors_total{code="METHOD_NOT_FOUND"} 1.0' in text

        r = await c.get("/nowhere")
        assert r.status_code == 404 and r.headers["x-smithers-api-version"] == "v1"
        r = await c.get("/")
        assert r.status_code == 200 and "Smithers gateway" in r.text


async def test_body_errors_at_the_edge(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, max_body_bytes=2048)
    async with running(gw), http(gw, OP_TOKEN) as c:
        r = await c.post("/rpc", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and _error(r)["code"] == "INVALID_INPUT"
        r = await c.post("/rpc", json=[1, 2])
        assert r.status_code == 400
        assert _error(r) == {
            "version": "v1",
            "code": "INVALID_REQUEST",
            "message": "RPC body must be a JSON object",
        }
        r = await c.post("/rpc", json={"method": "health", "params": {"x": "a" * 4096}})
        assert r.status_code == 413
        err = _error(r)
        assert err["code"] == "PayloadTooLarge" and err["maxBytes"] == 2048
        r = await c.post("/rpc", json={"method": "bad_name"})
        assert r.status_code == 400
        assert _error(r)["message"] == "Gateway method name is invalid."
        r = await c.post("/rpc", json={"method": "a" * 65})
        assert r.status_code == 400 and _error(r)["code"] == "INVALID_INPUT"
        r = await c.post("/rpc", content=b'{"method":"health","params":{"x":NaN}}')
        assert r.status_code == 400 and _error(r)["code"] == "INVALID_INPUT"


async def test_frame_bounds(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        r = await rpc(c, "health", {"items": list(range(257))})
        err = _error(r)
        assert r.status_code == 400 and err["code"] == "INVALID_INPUT"
        assert err["maxLength"] == 256 and err["actualLength"] == 257
        assert err["path"] == "$.items"
        assert (await rpc(c, "health", {"items": list(range(256))})).status_code == 200

        # 16,384 UTF-16 code units is the limit; an astral character counts as two.
        ok = "a" * 16_382 + "\U0001f600"
        assert (await rpc(c, "health", {"s": ok})).status_code == 200
        r = await rpc(c, "health", {"s": ok + "a"})
        err = _error(r)
        assert err["code"] == "INVALID_INPUT" and err["actualLength"] == 16_385

        # Root is depth 1; every child one deeper, leaves included: 32 levels pass.
        def nest(levels: int) -> Any:
            value: Any = 1
            for _ in range(levels - 1):
                value = {"a": value}
            return value

        assert (await rpc(c, "health", nest(32))).status_code == 200
        r = await rpc(c, "health", nest(33))
        assert r.status_code == 400 and _error(r)["maxDepth"] == 32


async def test_launch_run_errors(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        r = await rpc(c, "launchRun", {})
        assert r.status_code == 400
        assert _error(r)["message"] == "workflow is required"
        r = await rpc(c, "launchRun", {"workflow": "ghost"})
        assert r.status_code == 404 and _error(r)["message"] == "Unknown workflow: ghost"
        r = await rpc(c, "launchRun", {"workflow": "deploy", "input": {"sha": 5}})
        assert r.status_code == 400 and _error(r)["code"] == "INVALID_INPUT"

        # Input depth counts containers only: 32 nested objects pass, 33 fail.
        def nest(levels: int) -> Any:
            value: Any = {}
            for _ in range(levels - 1):
                value = {"c": value}
            return value

        r = await c.post(
            "/rpc",
            content=json.dumps(
                {"method": "launchRun", "params": {"workflow": "deploy", "input": nest(33)}}
            ),
        )
        # The frame bound (depth 32 counting leaves) rejects it first.
        assert r.status_code == 400 and _error(r)["code"] == "INVALID_INPUT"

        r = await rpc(
            c, "launchRun", {"workflow": "deploy", "options": {"startedBy": {"bogus": "x"}}}
        )
        assert _error(r)["message"] == "options.startedBy.bogus is not allowed"
        r = await rpc(
            c, "launchRun", {"workflow": "deploy", "options": {"startedBy": {"detected": False}}}
        )
        assert _error(r)["message"] == "options.startedBy.detected must be true when present"

        r = await rpc(c, "launchRun", {"workflow": "slow", "runId": "fixed-1"})
        assert r.status_code == 200 and r.json()["payload"]["runId"] == "fixed-1"
        r = await rpc(c, "runs.create", {"workflow": "slow", "options": {"runId": "fixed-1"}})
        assert r.status_code == 409
        assert _error(r)["code"] == "CONFLICT"
        assert _error(r)["message"] == "Run fixed-1 is already active"
        assert (await rpc(c, "cancelRun", {"runId": "fixed-1"})).status_code == 200


async def test_run_lifecycle_approvals_signals_and_auth_context(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        run_id = (await rpc(c, "launchRun", {"workflow": "gated"})).json()["payload"]["runId"]
        run = await _status(c, run_id, "waiting-approval")
        config = jsonutil.loads(run["configJson"])
        assert config["gatewayWorkflowKey"] == "gated"
        assert config["gatewayTriggeredBy"] == "user:will"
        assert config["gatewaySystem"] is False
        auth = config["auth"]
        assert auth["triggeredBy"] == "user:will" and auth["role"] == "operator"
        assert auth["scopes"] == ["*"] and auth["createdAt"].endswith("Z")

        approvals = (await rpc(c, "listApprovals", {"filter": {"runId": run_id}})).json()
        [row] = approvals["payload"]
        assert row == {
            "runId": run_id,
            "workflowKey": "gated",
            "nodeId": "gate",
            "iteration": 0,
            "requestTitle": "Ship it?",
            "requestSummary": "Approve the deploy.",
            "requestedAtMs": row["requestedAtMs"],
            "approvalMode": "gate",
            "options": [],
            "allowedScopes": [],
            "allowedUsers": [],
            "autoApprove": None,
        }
        listed = (await rpc(c, "listRuns", {"filter": {"status": "waiting-approval"}})).json()
        assert [r["runId"] for r in listed["payload"]] == [run_id]
        assert listed["payload"][0]["workflowKey"] == "gated"

        r = await rpc(c, "submitApproval", {"runId": run_id, "nodeId": "gate"})
        assert r.status_code == 400
        assert _error(r)["message"] == "runId, nodeId, and approved are required"
        r = await rpc(
            c,
            "approvals.decide",
            {"runId": run_id, "nodeId": "gate", "decision": {"approved": True}},
        )
        assert r.json()["payload"] == {
            "runId": run_id,
            "nodeId": "gate",
            "iteration": 0,
            "approved": True,
        }
        r = await rpc(c, "submitApproval", {"runId": run_id, "nodeId": "gate", "approved": True})
        assert r.status_code == 409
        err = _error(r)
        assert err["code"] == "AlreadyDecided" and err["status"] == "approved"

        await _status(c, run_id, "waiting-event")
        r = await rpc(c, "submitSignal", {"runId": run_id})
        assert _error(r)["message"] == "runId and signalName are required"
        r = await rpc(
            c, "signals.send", {"runId": run_id, "signalName": "go", "data": {"msg": "x"}}
        )
        sig = r.json()["payload"]
        assert sig["runId"] == run_id and sig["signalName"] == "go" and sig["seq"] == 0
        assert sig["correlationId"] is None and isinstance(sig["receivedAtMs"], int)
        await _status(c, run_id, "finished")

        r = await rpc(c, "submitSignal", {"runId": run_id, "signalName": "go"})
        assert r.status_code == 409 and _error(r)["code"] == "RUN_NOT_ACTIVE"
        r = await rpc(c, "resumeRun", {"runId": run_id})
        assert r.json()["payload"] == {"runId": run_id, "status": "already_terminal"}
        r = await rpc(c, "cancelRun", {"runId": run_id})
        assert r.status_code == 409
        assert _error(r)["code"] == "RUN_NOT_ACTIVE"
        assert _error(r)["message"] == "Run is not currently active"
        r = await rpc(c, "runs.cancel", {"runId": "ghost"})
        assert r.status_code == 404
        assert _error(r)["code"] == "RunNotFound" and _error(r)["message"] == "Run not found"

        nodes = (await rpc(c, "listNodeStates", {"runId": run_id})).json()["payload"]
        assert {n["nodeId"]: n["state"] for n in nodes} == {
            "gate": "finished",
            "go": "finished",
            "done": "finished",
        }
        assert set(nodes[0]) == {
            "nodeId",
            "iteration",
            "state",
            "lastAttempt",
            "updatedAtMs",
            "label",
            "startedAtMs",
            "finishedAtMs",
        }
        frames = (await rpc(c, "frames.list", {"runId": run_id})).json()["payload"]
        assert frames and frames[0]["frameNo"] >= 1
        latest = (await rpc(c, "frames.get", {"runId": run_id})).json()["payload"]
        assert latest["frameNo"] == frames[0]["frameNo"]
        r = await rpc(c, "frames.get", {"runId": run_id, "frameNo": 0})
        assert r.status_code == 400 and _error(r)["code"] == "INVALID_INPUT"
        r = await rpc(c, "frames.get", {"runId": run_id, "frameNo": 999})
        assert r.status_code == 404 and _error(r)["message"] == "Frame not found"
        attempts = (await rpc(c, "attempts.list", {"runId": run_id})).json()["payload"]
        assert {a["nodeId"] for a in attempts} >= {"done"}
        one = await rpc(
            c, "attempts.get", {"runId": run_id, "nodeId": "done", "iteration": 0, "attempt": 1}
        )
        assert one.json()["payload"]["state"] == "finished"
        r = await rpc(c, "attempts.get", {"runId": run_id, "nodeId": "done"})
        assert _error(r)["message"] == "runId, nodeId, iteration, and attempt are required"
        r = await rpc(
            c, "attempts.get", {"runId": run_id, "nodeId": "done", "iteration": 0, "attempt": 9}
        )
        assert r.status_code == 404 and _error(r)["message"] == "Attempt not found"

        rerun = (await rpc(c, "runs.rerun", {"runId": run_id, "newRunId": "again"})).json()
        assert rerun["payload"] == {"runId": "again", "workflow": "gated", "system": False}
        await _status(c, "again", "waiting-approval")
        assert (await rpc(c, "cancelRun", {"runId": "again"})).json()["payload"] == {
            "runId": "again",
            "status": "cancelled",
            "won": True,
            "terminalStatus": "cancelled",
            "repaired": False,
        }


async def test_method_errors(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        for method in ("nope", "runs.nope"):
            r = await rpc(c, method, {"runId": "x"})
            assert r.status_code == 404
            assert _error(r) == {
                "version": "v1",
                "code": "METHOD_NOT_FOUND",
                "message": f"Unknown method: {method}",
            }
        r = await rpc(c, "getRun", {})
        assert r.status_code == 400 and _error(r)["message"] == "runId is required"
        r = await rpc(c, "listRuns", {"filter": {"offset": -1}})
        assert _error(r)["message"] == "offset must be a non-negative integer"
        r = await rpc(c, "listRuns", {"filter": {"limit": 0}})
        assert r.status_code == 400 and _error(r)["code"] == "INVALID_INPUT"
        r = await rpc(c, "listApprovals", {"limit": "x"})
        assert r.status_code == 400 and _error(r)["code"] == "INVALID_INPUT"
        r = await rpc(c, "streamRunEvents", {"runId": "x"})
        assert r.status_code == 400 and _error(r)["code"] == "INVALID_REQUEST"
        r = await rpc(c, "resumeRun", {"runId": "ghost"})
        assert r.status_code == 404 and _error(r)["code"] == "NOT_FOUND"


async def test_approval_restrictions(tmp_path: Path) -> None:
    tokens = {
        **TOKENS,
        "alice": {"role": "operator", "scopes": ["approve", "runs.get"], "userId": "user:alice"},
    }
    async with running(make_gateway(tmp_path, tokens=tokens)) as gw, http(gw, OP_TOKEN) as c:
        run_id = (await rpc(c, "launchRun", {"workflow": "restricted"})).json()["payload"]["runId"]
        await _status(c, run_id, "waiting-approval")
        r = await rpc(c, "submitApproval", {"runId": run_id, "nodeId": "gate", "approved": True})
        assert r.status_code == 403
        assert _error(r) == {
            "version": "v1",
            "code": "FORBIDDEN",
            "message": "User is not allowed to decide this approval",
        }
        async with http(gw, "alice") as alice:
            r = await rpc(alice, "approve", {"runId": run_id, "nodeId": "gate", "approved": True})
            assert r.status_code == 200, r.text
            await _status(alice, run_id, "finished")
            # The approval never changes the run's owner.
            run = (await rpc(alice, "getRun", {"runId": run_id})).json()["payload"]
            assert jsonutil.loads(run["configJson"])["auth"]["triggeredBy"] == "user:will"


async def test_no_auth_loopback_gates(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)  # no auth: anonymous operator, loopback Host/Origin only
    async with running(gw), http(gw) as c:
        r = await rpc(c, "health")
        assert r.status_code == 200
        r = await c.post("/v1/rpc/health", json={}, headers={"host": "evil.example"})
        assert r.status_code == 401 and _error(r)["message"] == "Host is not allowed"
        r = await c.post("/v1/rpc/health", json={}, headers={"origin": "http://evil.example"})
        assert r.status_code == 401 and _error(r)["message"] == "Origin is not allowed"
        r = await c.post("/v1/rpc/health", json={}, headers={"origin": "http://localhost:3000"})
        assert r.status_code == 200
        r = await c.post("/v1/rpc/health", json={}, headers={"host": "localhost:7331"})
        assert r.status_code == 200


async def test_allowed_origins_and_cookie_gate(tmp_path: Path) -> None:
    gw = make_gateway(
        tmp_path, auth={"mode": "token", "tokens": TOKENS, "allowed_origins": ["https://ok.dev"]}
    )
    async with running(gw), http(gw, OP_TOKEN) as c:
        r = await c.post("/v1/rpc/health", json={}, headers={"origin": "https://ok.dev"})
        assert r.status_code == 200
        r = await c.post("/v1/rpc/health", json={}, headers={"origin": "https://bad.dev"})
        assert r.status_code == 401 and _error(r)["message"] == "Origin is not allowed"
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw), http(gw) as c:
        cookie = {"cookie": f"smithers_session={OP_TOKEN}"}
        r = await c.post("/v1/rpc/health", json={}, headers=cookie)
        assert r.status_code == 200
        r = await c.post(
            "/v1/rpc/health", json={}, headers={**cookie, "origin": "https://elsewhere.dev"}
        )
        assert r.status_code == 401
        assert _error(r)["message"] == "Origin is not allowed for cookie-authenticated requests"


async def test_startup_errors(tmp_path: Path) -> None:
    with pytest.raises(SmithersError) as info:
        Gateway(plugins=plugin_host(token=False), auth={"mode": "token", "tokens": {}})
    assert info.value.code == "AUTH_MODE_UNAVAILABLE"
    assert "No installed plugin provides auth mode 'token'. Installed modes: none." in str(
        info.value.message
    )
    assert "pip install smithers-auth-token" in info.value.message
    assert "./smithers_auth_token" in info.value.message

    with pytest.raises(SmithersError) as info:
        Gateway(plugins=plugin_host(), heartbeat_ms=0)
    assert info.value.code == "INVALID_INPUT"
    gw = Gateway(plugins=plugin_host(), heartbeatMs=10, maxBodyBytes=5)
    assert gw.options.heartbeat_ms == 10 and gw.options.max_body_bytes == 5

    gw = make_gateway(tmp_path, tokens=TOKENS)
    gw.register("cronned", gw.workflows["deploy"].workflow, schedule="0 8 * * 1-5")
    with pytest.raises(SmithersError) as info:
        await gw.listen(port=0)
    assert info.value.code == "CONFIGURATION_UNSUPPORTED"
    assert info.value.message == (
        "'schedule' on workflow 'cronned' needs a scheduling plugin; none is installed"
    )

    gw = make_gateway(tmp_path)
    with pytest.raises(SmithersError) as info:
        await gw.listen(port=0, host="0.0.0.0")
    assert info.value.code == "SERVER_INSECURE_BIND"


async def test_unix_socket(tmp_path: Path) -> None:
    import httpx

    sock = str(tmp_path / "gw.sock")
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw, path=sock):
        transport = httpx.AsyncHTTPTransport(uds=sock)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            r = await c.post(
                "/v1/rpc/health", json={}, headers={"authorization": f"Bearer {OP_TOKEN}"}
            )
            assert r.status_code == 200 and r.json()["ok"] is True


async def test_unexpected_errors_are_server_error(tmp_path: Path) -> None:
    from smithers_core.contributions import RpcMethod
    from smithers_core.hookspecs import hookimpl
    from tests.gateway_helpers import plugin_host

    async def broken(ctx: Any, params: Any) -> Any:
        raise RuntimeError("disk on fire")

    class BrokenHealth:  # replaces core's methods (disabled) with a failing `health`
        @hookimpl
        def smithers_rpc_methods(self, host: Any) -> list[RpcMethod]:
            return [RpcMethod("health", broken)]

    host = plugin_host()
    host.pm.unregister(name="core.rpc_methods")
    host.register(BrokenHealth(), "broken_health")
    gw = make_gateway(tmp_path, tokens=TOKENS, plugins=host)
    async with running(gw), http(gw, OP_TOKEN) as c:
        r = await rpc(c, "health")
        assert r.status_code == 500
        assert _error(r) == {"version": "v1", "code": "SERVER_ERROR", "message": "disk on fire"}


async def test_headers_timeout_answers_408(tmp_path: Path) -> None:
    import anyio

    gw = make_gateway(tmp_path, tokens=TOKENS, headers_timeout=200)
    async with running(gw):
        stream = await anyio.connect_tcp("127.0.0.1", gw.port or 0)
        async with stream:
            await stream.send(b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            data = b""
            with anyio.fail_after(5):
                try:
                    while True:
                        data += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
        assert data.startswith(b"HTTP/1.1 408")


async def test_approvals_of_cancelled_runs_are_no_longer_pending(tmp_path: Path) -> None:
    """One pending-approvals query for every surface: a requested approval counts only while
    its run is live and its node waits (the gateway's own query once listed cancelled runs)."""
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        first = (await rpc(c, "launchRun", {"workflow": "gated"})).json()["payload"]["runId"]
        second = (await rpc(c, "launchRun", {"workflow": "gated"})).json()["payload"]["runId"]
        await _status(c, first, "waiting-approval")
        await _status(c, second, "waiting-approval")
        rows = (await rpc(c, "listApprovals", {})).json()["payload"]
        assert sorted(r["runId"] for r in rows) == sorted([first, second])
        cancelled = await rpc(c, "cancelRun", {"runId": first})
        assert cancelled.json()["payload"]["status"] == "cancelled"
        rows = (await rpc(c, "listApprovals", {})).json()["payload"]
        assert [r["runId"] for r in rows] == [second]
        assert gw.runtime.db.pending_approvals(first) == []  # start_server's list agrees


async def test_approval_scopes_and_filters(tmp_path: Path) -> None:
    from tests.fixtures.gateway import workflows as wfs

    tokens = {
        **TOKENS,
        "approver": {"role": "operator", "scopes": ["approve"], "userId": "user:a"},
        "admin": {"role": "admin", "scopes": ["admin"], "userId": "user:root"},
    }
    gw = make_gateway(tmp_path, tokens=tokens)
    gw.register("admins", wfs.admins)
    gw.register("internal", wfs.deploy, system=True)
    async with running(gw), http(gw, OP_TOKEN) as c:
        run_id = (await rpc(c, "launchRun", {"workflow": "admins"})).json()["payload"]["runId"]
        other = (await rpc(c, "launchRun", {"workflow": "gated"})).json()["payload"]["runId"]
        await _status(c, run_id, "waiting-approval")
        await _status(c, other, "waiting-approval")
        rows = (await rpc(c, "listApprovals", {"workflow": "admins"})).json()["payload"]
        assert [r["runId"] for r in rows] == [run_id]
        assert rows[0]["allowedScopes"] == ["run:admin"]
        rows = (await rpc(c, "approvals.list", {"filter": {"limit": 1}})).json()["payload"]
        assert len(rows) == 1
        async with http(gw, "approver") as approver:
            r = await rpc(
                approver, "submitApproval", {"runId": run_id, "nodeId": "gate", "approved": True}
            )
            assert r.status_code == 403
            assert _error(r) == {
                "version": "v1",
                "code": "FORBIDDEN",
                "message": "Connection is missing required approval scope",
            }
        async with http(gw, "admin") as admin:
            r = await rpc(
                admin, "submitApproval", {"runId": run_id, "nodeId": "gate", "approved": True}
            )
            assert r.status_code == 200
        await _status(c, run_id, "finished")

        keys = [w["key"] for w in (await rpc(c, "listWorkflows", {})).json()["payload"]]
        assert "internal" not in keys
        listed = (await rpc(c, "listWorkflows", {"filter": {"includeSystem": True}})).json()
        assert "internal" in [w["key"] for w in listed["payload"]]
        r = await rpc(c, "launchRun", {"workflow": "internal"})
        assert r.json()["payload"]["system"] is True
        assert (await c.get("/workflows")).json()["workflows"][0]["key"] == "admins"
        assert "internal" not in [w["key"] for w in (await c.get("/workflows")).json()["workflows"]]


async def test_list_workflows_carries_each_input_schema(tmp_path: Path) -> None:
    """Beyond upstream: ``listWorkflows`` items carry the JSON Schema of the input model
    (clients build launch forms from it); ``GET /workflows`` keeps upstream's shape."""
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw), http(gw, "op-token") as c, ws_client(gw) as ws:
        items = {w["key"]: w for w in (await rpc(c, "listWorkflows", {})).json()["payload"]}
        assert items["deploy"]["inputSchema"] == {
            "properties": {"sha": {"default": "abc", "title": "Sha", "type": "string"}},
            "title": "DeployInput",
            "type": "object",
        }
        assert items["gated"]["inputSchema"]["type"] == "object"
        await ws.connect()
        res = await ws.request("listWorkflows", {})  # the inline WebSocket answer too
        assert {w["key"]: w["inputSchema"] for w in res["payload"]} == {
            k: v["inputSchema"] for k, v in items.items()
        }
        assert all("inputSchema" not in w for w in (await c.get("/workflows")).json()["workflows"])
