"""WebSocket protocol over a real gateway: handshake, hello, requests, ticks, events, limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.gateway_helpers import (
    OP_TOKEN,
    TOKENS,
    make_gateway,
    running,
    ws_client,
    ws_url,
)

pytestmark = pytest.mark.anyio


async def _closed(ws: Any, timeout: float = 5.0) -> tuple[int | None, str]:
    """Drain until the server closes; return (code, reason)."""
    with anyio.fail_after(timeout):
        try:
            while True:
                await ws.ws.recv()
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")


async def test_appendix_a_ws_exchange(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, heartbeat_ms=100)
    async with running(gw), ws_client(gw) as ws:
        challenge = await ws.recv()
        assert challenge["type"] == "event" and challenge["event"] == "connect.challenge"
        assert challenge["seq"] == 1 and challenge["apiVersion"] == "v1"
        assert set(challenge["payload"]) == {"nonce", "ts"}
        assert challenge["stateVersion"] == 0

        hello = await ws.connect(OP_TOKEN)
        assert hello["ok"] is True and hello["apiVersion"] == "v1" and hello["id"] == "c1"
        payload = hello["payload"]
        assert payload["protocol"] == 1 and payload["features"] == ["streaming", "runs"]
        assert payload["policy"] == {"heartbeatMs": 100}
        assert set(payload["identity"]) == {
            "workspaceRoot",
            "backend",
            "version",
            "pid",
            "startedAtMs",
        }
        auth = payload["auth"]
        assert auth["role"] == "operator" and auth["scopes"] == ["*"]
        assert auth["userId"] == "user:will" and len(auth["tokenId"]) == 16
        assert isinstance(auth["sessionToken"], str)
        assert payload["snapshot"] == {"runs": [], "approvals": [], "stateVersion": 0}

        res = await ws.request("launchRun", {"workflow": "deploy", "input": {"sha": "abc"}})
        run_id = res["payload"]["runId"]
        assert res == {
            "type": "res",
            "id": res["id"],
            "ok": True,
            "apiVersion": "v1",
            "payload": {"runId": run_id, "workflow": "deploy", "system": False},
            "_seen": True,
        }
        started = await ws.event("node.started", runId=run_id)
        assert started["payload"] == {"runId": run_id, "nodeId": "ship", "state": "in-progress"}
        done = await ws.event("run.completed", runId=run_id)
        assert done["payload"] == {"runId": run_id, "status": "finished"}
        # a tick sent after run.completed (one may have arrived before it, heartbeat 100 ms)
        tick = await ws.wait_for(
            lambda f: f.get("event") == "tick" and f["seq"] > done["seq"], timeout=5
        )
        assert set(tick["payload"]) == {"ts"}
        assert tick["stateVersion"] == done["stateVersion"]  # ticks never bump it

        events = [f for f in ws.frames if f["type"] == "event"]
        assert [f["seq"] for f in events] == list(range(1, len(events) + 1))
        broadcasts = [f for f in events if f["event"] not in ("tick", "connect.challenge")]
        versions = [f["stateVersion"] for f in broadcasts]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
        names = [f["event"] for f in broadcasts]
        assert "run.started" in names and "frame.committed" in names
        assert names.count("run.completed") == 1

        # run.completed is sent exactly once per run, whatever else happens afterwards.
        await ws.request("getRun", {"runId": run_id})
        await ws.event("tick")
        assert [f["event"] for f in ws.frames if f.get("type") == "event"].count(
            "run.completed"
        ) == 1


async def test_requests_before_connect_and_connect_errors(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, ws_client(gw) as ws:
        await ws.recv()
        res = await ws.request("getRun", {"runId": "x"})
        assert res["ok"] is False
        assert res["error"] == {"version": "v1", "code": "UNAUTHORIZED", "message": "Connect first"}

        res = await ws.request("connect", [1], frame_id="a")
        assert res["error"]["code"] == "INVALID_REQUEST"
        assert res["error"]["message"] == "Connect params must be an object"
        res = await ws.request("connect", {"minProtocol": 1}, frame_id="b")
        assert res["error"]["message"] == ("Connect request is missing protocol negotiation fields")
        res = await ws.request(
            "connect", {"minProtocol": 0, "maxProtocol": 1, "client": {"id": "x"}}, frame_id="c"
        )
        assert res["error"]["code"] == "INVALID_INPUT"
        res = await ws.request(
            "connect", {"minProtocol": 2, "maxProtocol": 3, "client": {"id": "x"}}, frame_id="d"
        )
        assert res["error"] == {
            "version": "v1",
            "code": "PROTOCOL_UNSUPPORTED",
            "message": "Gateway protocol 1 is not supported by the client",
            "protocol": 1,
        }
        # None of those closed the socket: a good connect still works.
        hello = await ws.connect(OP_TOKEN)
        assert hello["ok"] is True


async def test_parse_errors_are_answered_with_id_invalid(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, ws_client(gw) as ws:
        await ws.recv()
        await ws.connect()
        for raw, message in (
            ("{nope", "Gateway frame must be valid JSON."),
            (
                '{"type":"event","id":"x","method":"health"}',
                "Gateway frame must be a request object.",
            ),
            ('{"type":"req","id":"x","method":"Bad-Name"}', "Gateway method name is invalid."),
            ('{"type":"req","id":5,"method":"health"}', None),
            (json.dumps({"type": "req", "id": "x" * 129, "method": "health"}), None),
            (json.dumps({"type": "req", "id": "x", "method": "health", "params": [0] * 257}), None),
        ):
            await ws.send(raw)
            res = await ws.wait_for(lambda f: f.get("type") == "res" and f.get("id") == "invalid")
            assert res["ok"] is False and res["error"]["code"] == "INVALID_INPUT"
            if message:
                assert res["error"]["message"] == message
        res = await ws.request("nope")
        assert res["error"]["code"] == "METHOD_NOT_FOUND"
        res = await ws.request("getRun", {"runId": "ghost"})
        assert res["error"] == {
            "version": "v1",
            "code": "NOT_FOUND",
            "message": "Run not found: ghost",
        }


async def test_failed_auth_closes_1008(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw:
        async with ws_client(gw) as ws:
            await ws.recv()
            res = await ws.connect("wrong")
            assert res["error"] == {
                "version": "v1",
                "code": "UNAUTHORIZED",
                "message": "Invalid token",
            }
            assert await _closed(ws) == (1008, "authentication failed")
        # The token of the upgrade request is used when connect carries none.
        async with ws_client(gw, additional_headers={"x-smithers-key": OP_TOKEN}) as ws:
            await ws.recv()
            assert (await ws.connect(None))["ok"] is True
            # A failed re-connect on an authenticated socket does not close it.
            res = await ws.connect("wrong")
            assert res["ok"] is False
            assert (await ws.request("health"))["ok"] is True


async def test_auth_deadline_closes_unauthenticated_sockets(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, auth_deadline_ms=150)
    async with running(gw), ws_client(gw) as ws:
        await ws.recv()
        assert await _closed(ws) == (1008, "authentication timeout")


async def _refused(gw: Any, **kw: Any) -> Any:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(ws_url(gw), open_timeout=5, **kw):
            pass
    return info.value.response


async def test_connection_caps_answer_raw_503(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, max_pre_auth_connections=2, max_connections=2)
    async with running(gw), ws_client(gw) as a, ws_client(gw) as b:
        await a.recv()
        await b.recv()
        response = await _refused(gw)
        assert response.status_code == 503
        assert response.body == b"Gateway connection limit reached\n"
        assert response.headers["x-smithers-api-version"] == "v1"
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert (await a.connect())["ok"] and (await b.connect())["ok"]
        # Both authenticated slots are taken now.
        response = await _refused(gw)
        assert response.status_code == 503
    assert gw.context.sockets.authed == 0 and gw.context.sockets.preauth == 0


async def test_connection_limit_at_promotion(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, max_connections=1)
    async with running(gw), ws_client(gw) as a, ws_client(gw) as b:
        await a.recv()
        await b.recv()
        assert (await a.connect())["ok"]
        res = await b.connect()
        assert res["error"] == {
            "version": "v1",
            "code": "CONNECTION_LIMIT",
            "message": "Gateway connection limit reached",
        }
        assert await _closed(b) == (1013, "connection limit reached")


async def test_origin_gate_at_upgrade(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)  # no auth: loopback origins only
    async with running(gw):
        response = await _refused(gw, origin="http://evil.example")
        assert response.status_code == 403
        assert response.body == b"Origin or host is not allowed\n"
        async with ws_client(gw, origin="http://localhost:5173") as ws:
            await ws.recv()
            hello = await ws.connect(None)
            assert hello["payload"]["auth"]["scopes"] == ["*"]
            assert hello["payload"]["auth"]["userId"] is None


async def test_max_payload_and_outbound_budget(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, max_payload=4096)
    async with running(gw), ws_client(gw) as ws:
        await ws.recv()
        await ws.connect()
        await ws.send(json.dumps({"type": "req", "id": "big", "method": "health", "x": "a" * 5000}))
        code, _reason = await _closed(ws)
        assert code == 1009
    gw = make_gateway(tmp_path, tokens=TOKENS, max_outbound_bytes=300)
    async with running(gw), ws_client(gw) as ws:
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "req",
                    "id": "c1",
                    "method": "connect",
                    "params": {
                        "minProtocol": 1,
                        "maxProtocol": 1,
                        "client": {"id": "t"},
                        "auth": {"token": OP_TOKEN},
                    },
                }
            )
        )
        # The hello payload alone is over the 300-byte budget: close 1013, nothing queued sent.
        assert await _closed(ws) == (1013, "event backpressure")


async def test_concurrent_requests_correlate_by_id(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, ws_client(gw) as ws:
        await ws.recv()
        await ws.connect()
        ids = [f"q{i}" for i in range(20)]
        for fid in ids:
            await ws.send({"type": "req", "id": fid, "method": "health"})
        seen = set()
        for _ in ids:
            res = await ws.wait_for(lambda f: f.get("type") == "res" and f["id"] in ids)
            seen.add(res["id"])
            assert res["ok"] is True
        assert seen == set(ids)


async def test_subscribe_filter_and_auto_subscribe(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with (
        running(gw),
        ws_client(gw) as watcher,
        ws_client(gw) as filtered,
        ws_client(gw) as launcher,
    ):
        for ws in (watcher, filtered, launcher):
            await ws.recv()
        await watcher.connect()
        await filtered.connect(OP_TOKEN, subscribe=["someone-else"])
        await launcher.connect(OP_TOKEN, subscribe=[])
        res = await launcher.request("launchRun", {"workflow": "deploy"})
        run_id = res["payload"]["runId"]
        # The unfiltered watcher sees everything; the launcher auto-subscribed to its run.
        await watcher.event("run.completed", runId=run_id)
        await launcher.event("run.completed", runId=run_id)
        # The filtered socket sees nothing of this run.
        await filtered.request("health")
        assert not [f for f in filtered.frames if f.get("payload", {}).get("runId") == run_id]
        other = await filtered.request("launchRun", {"workflow": "deploy"})
        other_id = other["payload"]["runId"]
        await filtered.event("run.completed", runId=other_id)


async def test_hello_snapshot_lists_active_runs_and_approvals(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw:
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect()
            run_id = (await ws.request("launchRun", {"workflow": "gated"}))["payload"]["runId"]
            await ws.event("approval.requested", runId=run_id)
            await ws.event("run.status_changed", runId=run_id, status="waiting-approval")
        async with ws_client(gw) as ws:
            await ws.recv()
            snapshot = (await ws.connect())["payload"]["snapshot"]
            assert [r["runId"] for r in snapshot["runs"]] == [run_id]
            assert snapshot["runs"][0]["workflowKey"] == "gated"
            assert snapshot["runs"][0]["status"] == "waiting-approval"
            assert [a["nodeId"] for a in snapshot["approvals"]] == ["gate"]
            assert snapshot["stateVersion"] == gw.context.sockets.state_version
            res = await ws.request(
                "submitApproval", {"runId": run_id, "nodeId": "gate", "approved": False}
            )
            assert res["ok"] is True
            decided = await ws.event("approval.decided", runId=run_id)
            assert decided["payload"] == {
                "runId": run_id,
                "nodeId": "gate",
                "iteration": 0,
                "approved": False,
            }
            failed = await ws.event("run.completed", runId=run_id)
            assert failed["payload"]["status"] == "failed" and "error" in failed["payload"]


async def test_permessage_deflate_is_off_by_default(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, ws_client(gw) as ws:
        # The client offers permessage-deflate; the gateway declines it (D13).
        assert ws.ws.protocol.extensions == []
        assert ws.ws.response.headers["x-smithers-api-version"] == "v1"
    gw = make_gateway(tmp_path, tokens=TOKENS, ws_per_message_deflate=True)
    async with running(gw), ws_client(gw) as ws:
        assert [e.name for e in ws.ws.protocol.extensions] == ["permessage-deflate"]
