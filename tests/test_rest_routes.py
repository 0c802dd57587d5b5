"""The REST facade's routes (reference 9.2): each route's success shape, its scope (a read
token against the operator token) and at least one error, the envelopes and their statuses;
routes whose operation does not exist yet answer ``METHOD_NOT_FOUND``, never a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from smithers_rest.routes import ROUTES

from tests.engine_helpers import wait_for
from tests.gateway_helpers import http, running
from tests.rest_helpers import rest_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

JSON_HEADERS = {
    "content-type": "application/json",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-smithers-api-version": "v1",
}


def ok(response: httpx.Response, *, seq: bool = False) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert ("seq" in body) is seq
    if seq:
        assert isinstance(body["seq"], int) and body["seq"] >= 1
    for name, value in JSON_HEADERS.items():
        assert response.headers[name].startswith(value)
    return body["data"]


def fails(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False and body["error"]["code"] == code, body
    assert set(body) == {"ok", "error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


async def launch(client: httpx.AsyncClient, workflow: str, **body: Any) -> str:
    data = ok(await client.post("/v1/api/runs", json={"workflow": workflow, **body}), seq=True)
    return str(data["runId"])


async def settled(client: httpx.AsyncClient, run_id: str, *statuses: str) -> dict[str, Any]:
    async def status() -> dict[str, Any] | None:
        data = ok(await client.get(f"/v1/api/runs/{run_id}"))
        return data if data["status"] in statuses else None

    return await wait_for(status)


# The cases below are checked against the route table: a new route needs a test here.
COVERED: set[tuple[str, str]] = set()


def covers(method: str, path: str) -> None:
    COVERED.add((method, path))


async def test_runs_routes(tmp_path: Path) -> None:
    async with (
        running(rest_gateway(tmp_path)) as gw,
        http(gw, "op-token") as op,
        http(gw, "reader") as reader,
    ):
        covers("POST", "/runs")
        data = ok(await op.post("/v1/api/runs", json={"workflowKey": "deploy"}), seq=True)
        assert data["workflow"] == "deploy" and data["system"] is False
        run_id = data["runId"]
        err = fails(await reader.post("/v1/api/runs", json={"workflow": "deploy"}), 403,
                    "FORBIDDEN")  # fmt: skip
        assert err["details"] == {"requiredScope": "run:write"}
        fails(await op.post("/v1/api/runs", json={"workflow": "nope"}), 404, "NOT_FOUND")
        fails(await op.post("/v1/api/runs", json={}), 400, "INVALID_REQUEST")
        fails(await op.post("/v1/api/runs", content=b"[1]"), 400, "INVALID_REQUEST")
        fails(await op.post("/v1/api/runs", content=b"{"), 400, "INVALID_INPUT")
        await settled(op, run_id, "finished")

        covers("GET", "/runs")
        rows = ok(await reader.get("/v1/api/runs", params={"limit": 5, "workflow": "deploy"}))
        assert [r["runId"] for r in rows] == [run_id]
        assert rows[0]["workflowKey"] == "deploy" and rows[0]["status"] == "finished"
        assert ok(await reader.get("/v1/api/runs", params={"status": "failed"})) == []
        fails(await reader.get("/v1/api/runs?limit=abc"), 400, "INVALID_INPUT")
        fails(await reader.get("/v1/api/runs?offset=-1"), 400, "INVALID_REQUEST")

        covers("GET", "/runs/{runId}")
        run = ok(await reader.get(f"/v1/api/runs/{run_id}"))
        assert run["runId"] == run_id and run["summary"] == {"finished": 1}
        missing = "00000000-0000-0000-0000-000000000000"
        fails(await reader.get(f"/v1/api/runs/{missing}"), 404, "NOT_FOUND")
        fails(await reader.get("/v1/api/runs/bad%20id"), 400, "INVALID_REQUEST")

        covers("GET", "/runs/{runId}/node-states")
        states = ok(await reader.get(f"/v1/api/runs/{run_id}/node-states"))
        assert [(s["nodeId"], s["state"]) for s in states] == [("ship", "finished")]
        fails(await reader.get(f"/v1/api/runs/{missing}/node-states"), 404, "NOT_FOUND")

        covers("POST", "/runs/{runId}/resume")
        resumed = ok(await op.post(f"/v1/api/runs/{run_id}/resume"), seq=True)
        assert resumed == {"runId": run_id, "status": "already_terminal"}
        fails(await reader.post(f"/v1/api/runs/{run_id}/resume"), 403, "FORBIDDEN")
        fails(await op.post(f"/v1/api/runs/{missing}/resume"), 404, "NOT_FOUND")

        covers("POST", "/runs/{runId}/cancel")
        slow = await launch(op, "slow")
        await settled(op, slow, "running")
        cancelled = ok(await op.post(f"/v1/api/runs/{slow}/cancel"), seq=True)
        assert cancelled["runId"] == slow and cancelled["status"] in ("cancelling", "cancelled")
        fails(await reader.post(f"/v1/api/runs/{slow}/cancel"), 403, "FORBIDDEN")
        fails(await op.post(f"/v1/api/runs/{run_id}/cancel"), 409, "RUN_NOT_ACTIVE")


async def test_events_and_outputs(tmp_path: Path) -> None:
    async with (
        running(rest_gateway(tmp_path)) as gw,
        http(gw, "op-token") as op,
        http(gw, "crons-only") as crons_only,
    ):
        run_id = await launch(op, "deploy", input={"sha": "e1"})
        await settled(op, run_id, "finished")
        missing = "00000000-0000-0000-0000-000000000000"

        covers("GET", "/events")
        events = ok(await op.get("/v1/api/events", params={"runId": run_id}))
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert events[0]["type"] == "RunStarted" and events[-1]["type"] == "RunFinished"
        assert set(events[0]) == {"runId", "seq", "timestampMs", "type", "payloadJson"}
        page = ok(await op.get(f"/v1/api/events?runId={run_id}&afterSeq=0&limit=2"))
        assert [e["seq"] for e in page] == [1, 2]
        fails(await op.get("/v1/api/events"), 400, "INVALID_REQUEST")
        fails(await op.get(f"/v1/api/events?runId={run_id}&limit=0"), 400, "INVALID_REQUEST")
        fails(await op.get(f"/v1/api/events?runId={missing}"), 404, "NOT_FOUND")
        err = fails(await crons_only.get(f"/v1/api/events?runId={run_id}"), 403, "FORBIDDEN")
        assert err["details"] == {"requiredScope": "run:read"}

        covers("GET", "/runs/{runId}/events")
        ship = ok(await op.get(f"/v1/api/runs/{run_id}/events?nodeId=ship"))
        assert ship and all('"nodeId":"ship"' in e["payloadJson"] for e in ship)
        assert len(ship) < len(events)
        fails(await op.get(f"/v1/api/runs/{run_id}/events?afterSeq=-2"), 400,
              "INVALID_REQUEST")  # fmt: skip

        for base in (f"/v1/api/nodes/{run_id}/ship", f"/v1/api/runs/{run_id}/nodes/ship"):
            output = ok(await op.get(base + "/output"))
            assert output["status"] == "produced" and output["row"]["sha"] == "e1"
            fails(await op.get(base.replace("ship", "nope") + "/output"), 404, "NodeNotFound")
            fails(await crons_only.get(base + "/output"), 403, "FORBIDDEN")
        covers("GET", "/nodes/{runId}/{nodeId}/output")
        covers("GET", "/runs/{runId}/nodes/{nodeId}/output")


async def test_approvals_and_signals(tmp_path: Path) -> None:
    async with (
        running(rest_gateway(tmp_path)) as gw,
        http(gw, "op-token") as op,
        http(gw, "reader") as reader,
    ):
        run_id = await launch(op, "gated")
        await settled(op, run_id, "waiting-approval")

        covers("GET", "/approvals")
        pending = ok(await reader.get("/v1/api/approvals", params={"runId": run_id}))
        assert [(a["nodeId"], a["iteration"], a["requestTitle"]) for a in pending] == [
            ("gate", 0, "Ship it?")
        ]
        fails(await reader.get("/v1/api/approvals?limit=0"), 400, "INVALID_INPUT")

        covers("POST", "/approvals/{approvalId}")
        key = f"/v1/api/approvals/{run_id}:gate:0"
        err = fails(await reader.post(key, json={"approved": True}), 403, "FORBIDDEN")
        assert err["details"] == {"requiredScope": "approval:submit"}
        decided = ok(await op.post(key, json={"approved": True, "note": "go"}), seq=True)
        assert decided == {"runId": run_id, "nodeId": "gate", "iteration": 0, "approved": True}
        fails(await op.post(key, json={"approved": True}), 409, "AlreadyDecided")
        fails(await op.post("/v1/api/approvals/no-colons", json={}), 400, "INVALID_REQUEST")
        fails(await op.post(f"{key[:-2]}:x", json={}), 400, "INVALID_REQUEST")
        await settled(op, run_id, "waiting-event")

        covers("POST", "/signals")
        body = {"runId": run_id, "signalName": "go", "payload": {"msg": "now"}}
        err = fails(await reader.post("/v1/api/signals", json=body), 403, "FORBIDDEN")
        assert err["details"] == {"requiredScope": "signal:submit"}
        signal = ok(await op.post("/v1/api/signals", json=body), seq=True)
        assert signal["runId"] == run_id and signal["signalName"] == "go"
        await settled(op, run_id, "finished")
        fails(await op.post("/v1/api/signals", json=body), 409, "RUN_NOT_ACTIVE")
        fails(await op.post("/v1/api/signals", json={"signalName": "go"}), 400,
              "INVALID_REQUEST")  # fmt: skip


async def test_cron_routes(tmp_path: Path) -> None:
    async with (
        running(rest_gateway(tmp_path)) as gw,
        http(gw, "op-token") as op,
        http(gw, "reader") as reader,
    ):
        covers("POST", "/crons")
        body = {"workflow": "deploy", "pattern": "0 8 * * 1-5", "cronId": "morning"}
        fails(await reader.post("/v1/api/crons", json=body), 403, "FORBIDDEN")
        row = ok(await op.post("/v1/api/crons", json=body), seq=True)
        assert row["cronId"] == "morning" and row["workflow"] == "deploy"
        assert row["workflowPath"] == "gateway:deploy" and row["enabled"] is True
        fails(await op.post("/v1/api/crons", json={"workflow": "nope", "pattern": "* * * * *"}),
              404, "NOT_FOUND")  # fmt: skip

        covers("GET", "/crons")
        rows = ok(await reader.get("/v1/api/crons", params={"workflow": "deploy"}))
        assert [r["cronId"] for r in rows] == ["morning"]
        assert ok(await reader.get("/v1/api/crons", params={"workflow": "gated"})) == []
        async with http(gw) as anonymous:
            fails(await anonymous.get("/v1/api/crons"), 401, "UNAUTHORIZED")

        covers("POST", "/crons/run")
        started = ok(await op.post("/v1/api/crons/run", json={"cronId": "morning"}), seq=True)
        assert started["workflow"] == "deploy"
        await settled(op, started["runId"], "finished")
        fails(await op.post("/v1/api/crons/run", json={}), 400, "INVALID_REQUEST")

        covers("DELETE", "/crons/{cronId}")
        fails(await reader.delete("/v1/api/crons/morning"), 403, "FORBIDDEN")
        assert ok(await op.delete("/v1/api/crons/morning"), seq=True) == {
            "cronId": "morning",
            "removed": True,
        }
        fails(await op.delete("/v1/api/crons/morning"), 404, "NOT_FOUND")


async def test_simple_gets(tmp_path: Path) -> None:
    (tmp_path / ".smithers" / "prompts").mkdir(parents=True)
    (tmp_path / ".smithers" / "prompts" / "review.md").write_text("# Review\n")
    async with (
        running(rest_gateway(tmp_path, workspace_root=str(tmp_path))) as gw,
        http(gw, "op-token") as op,
        http(gw, "reader") as reader,
    ):
        covers("GET", "/workflows")
        workflows = ok(await reader.get("/v1/api/workflows"))
        deploy = next(w for w in workflows if w["key"] == "deploy")
        assert deploy["inputSchema"]["properties"]["sha"]["type"] == "string"
        assert ok(await reader.get("/v1/api/workflows?hasUi=true")) == []
        async with http(gw, "crons-only") as crons_only:
            fails(await crons_only.get("/v1/api/workflows"), 403, "FORBIDDEN")

        covers("GET", "/prompts")
        prompts = ok(await op.get("/v1/api/prompts"))
        assert [p["id"] for p in prompts] == ["review"]
        err = fails(await reader.get("/v1/api/prompts"), 403, "FORBIDDEN")
        assert err["details"] == {"requiredScope": "prompt:read"}


async def test_time_travel_and_devtools_routes(tmp_path: Path) -> None:
    async with (
        running(rest_gateway(tmp_path)) as gw,
        http(gw, "op-token") as op,
        http(gw, "reader") as reader,
    ):
        run_id = await launch(op, "deploy", input={"sha": "t1"})
        await settled(op, run_id, "finished")

        covers("GET", "/runs/{runId}/devtools")
        snapshot = ok(await op.get(f"/v1/api/runs/{run_id}/devtools"))
        assert (snapshot["version"], snapshot["runId"]) == (1, run_id)
        assert snapshot["frameNo"] >= 1 and snapshot["root"]["type"] == "workflow"
        first = ok(await op.get(f"/v1/api/runs/{run_id}/devtools?frameNo=0"))
        assert first["frameNo"] == 0
        fails(await op.get(f"/v1/api/runs/{run_id}/devtools?frameNo=99"), 400, "FrameOutOfRange")
        err = fails(await reader.get(f"/v1/api/runs/{run_id}/devtools"), 403, "FORBIDDEN")
        assert err["details"] == {"requiredScope": "observability:read"}

        for base in (f"/v1/api/nodes/{run_id}/ship", f"/v1/api/runs/{run_id}/nodes/ship"):
            fails(await op.get(base + "/diff"), 501, "UnsupportedSandbox")
            fails(await op.get(base.replace("ship", "nope") + "/diff"), 404, "NodeNotFound")
        covers("GET", "/nodes/{runId}/{nodeId}/diff")
        covers("GET", "/runs/{runId}/nodes/{nodeId}/diff")

        covers("POST", "/runs/{runId}/rewind")
        url = f"/v1/api/runs/{run_id}/rewind"
        fails(await op.post(url, json={"frameNo": 0}), 400, "ConfirmationRequired")
        err = fails(await reader.post(url, json={"frameNo": 0, "confirm": True}), 403,
                    "FORBIDDEN")  # fmt: skip
        assert err["details"] == {"requiredScope": "run:admin"}
        rewound = ok(await op.post(url, json={"frameNo": 0, "confirm": True}), seq=True)
        assert rewound["ok"] is True and rewound["newFrameNo"] == 0
        await settled(op, run_id, "finished")
        output = ok(await op.get(f"/v1/api/runs/{run_id}/nodes/ship/output"))
        assert output["row"]["sha"] == "t1"


async def test_run_control_routes(tmp_path: Path) -> None:
    async with (
        running(rest_gateway(tmp_path)) as gw,
        http(gw, "op-token") as op,
        http(gw, "reader") as reader,
    ):
        run_id = await launch(op, "deploy", input={"sha": "r1"})
        await settled(op, run_id, "finished")
        missing = "00000000-0000-0000-0000-000000000000"

        covers("POST", "/runs/{runId}/pause")
        slow = await launch(op, "slow")
        await settled(op, slow, "running")
        fails(await reader.post(f"/v1/api/runs/{slow}/pause"), 403, "FORBIDDEN")
        paused = ok(await op.post(f"/v1/api/runs/{slow}/pause"), seq=True)
        assert paused == {"runId": slow, "status": "pausing"}
        fails(await op.post(f"/v1/api/runs/{run_id}/pause"), 409, "RUN_NOT_ACTIVE")
        ok(await op.post(f"/v1/api/runs/{slow}/cancel"), seq=True)

        for base in (f"/v1/api/nodes/{run_id}/ship", f"/v1/api/runs/{run_id}/nodes/ship"):
            fails(await reader.post(base + "/retry", json={}), 403, "FORBIDDEN")
            retried = ok(await op.post(base + "/retry", json={"resetDependents": True}), seq=True)
            assert (retried["runId"], retried["nodeId"], retried["status"]) == (
                run_id,
                "ship",
                "retry_requested",
            )
            await settled(op, run_id, "finished")
            fails(await op.post(base.replace("ship", "nope") + "/retry", json={}), 404,
                  "NOT_FOUND")  # fmt: skip
        covers("POST", "/nodes/{runId}/{nodeId}/retry")
        covers("POST", "/runs/{runId}/nodes/{nodeId}/retry")

        covers("GET", "/runs/{runId}/descendants")
        assert ok(await reader.get(f"/v1/api/runs/{run_id}/descendants?limit=5")) == []
        fails(await reader.get(f"/v1/api/runs/{missing}/descendants"), 404, "NOT_FOUND")

        covers("GET", "/runs/{runId}/token-usage")
        usage = ok(await reader.get(f"/v1/api/runs/{run_id}/token-usage"))
        assert usage == {"runId": run_id, "events": []}
        fails(await reader.get(f"/v1/api/runs/{missing}/token-usage"), 404, "RunNotFound")

        covers("GET", "/schema-signature")
        signature = ok(await reader.get("/v1/api/schema-signature"))
        assert set(signature) == {"schemaVersion", "signature", "components"}
        assert "deploy" in signature["components"]
        assert ok(await reader.get("/v1/api/schema-signature")) == signature
        async with http(gw, "crons-only") as crons_only:
            fails(await crons_only.get("/v1/api/schema-signature"), 403, "FORBIDDEN")


async def test_routes_without_an_operation_answer_method_not_found(tmp_path: Path) -> None:
    """Routes whose method no installed plugin provides (hijack, monitors, tree, scores,
    tickets ...): the method's documented ``METHOD_NOT_FOUND`` (404). A route becomes served
    as soon as a plugin provides its method; it then needs a test of its own above."""
    run_id = "00000000-0000-0000-0000-000000000000"
    values = {"runId": run_id, "nodeId": "ship", "scoreId": "s1", "path": "notes%2Fa.md"}
    bodies = {"rewindRun": {"frameNo": 0, "confirm": True}, "oneshotMonitorSteer": {"message": "x"},
              "createTicket": {"path": "a.md", "content": "x"}}  # fmt: skip
    async with running(rest_gateway(tmp_path)) as gw, http(gw, "op-token") as op:
        unserved = [r for r in ROUTES if r.rpc and r.rpc not in gw.context.methods]
        assert len(unserved) >= 10  # hijack, monitors, scores, tickets, memory, accounts ...
        for route in unserved:
            covers(route.method, route.path)
            url = "/v1/api" + route.path.format(**values)
            body = bodies.get(str(route.rpc), {}) if route.method != "GET" else None
            response = await op.request(route.method, url, json=body)
            err = fails(response, 404, "METHOD_NOT_FOUND")
            assert err["message"] == f"Unknown method: {route.rpc}"


async def test_unknown_routes_and_methods_are_404(tmp_path: Path) -> None:
    async with running(rest_gateway(tmp_path)) as gw, http(gw, "op-token") as op:
        for method, path in [
            ("GET", "/v1/api"),
            ("GET", "/v1/api/nope"),
            ("DELETE", "/v1/api/runs"),
            ("PUT", "/v1/api/runs/x/cancel"),
            ("POST", "/v1/api/stream"),
            ("GET", "/v1/api/runs/a/b/c/d/e"),
        ]:
            response = await op.request(method, path)
            assert response.status_code == 404, (method, path)
            assert response.json() == {
                "ok": False,
                "error": {"code": "NOT_FOUND", "message": "Route not found"},
            }
        async with http(gw) as anonymous:
            # unauthenticated callers learn nothing about routes
            fails(await anonymous.get("/v1/api/nope"), 401, "UNAUTHORIZED")
            fails(await anonymous.get("/v1/api/runs", headers={"authorization": "Bearer x"}),
                  401, "UNAUTHORIZED")  # fmt: skip


async def test_body_limit(tmp_path: Path) -> None:
    async with (
        running(rest_gateway(tmp_path, max_body_bytes=1024)) as gw,
        http(gw, "op-token") as op,
    ):
        at_limit = {"workflow": "deploy", "input": {"sha": "x" * (1024 - 40)}}
        raw = httpx.Request("POST", "http://x", json=at_limit).content
        assert len(raw) == 1024
        ok(await op.post("/v1/api/runs", content=raw), seq=True)
        over = raw[:-1] + b" }"
        err = fails(await op.post("/v1/api/runs", content=over), 413, "PayloadTooLarge")
        assert err["details"] == {"maxBytes": 1024}
        deep = b'{"workflow":"deploy","input":' + b'{"a":' * 40 + b"1" + b"}" * 41
        fails(await op.post("/v1/api/runs", content=deep), 400, "INVALID_INPUT")


def test_every_route_is_tested() -> None:
    """Runs last in this module (pytest keeps file order): every route has a case above."""
    if not COVERED:
        pytest.skip("checks the cases of this module's other tests; run them with it")
    missing = {(r.method, r.path) for r in ROUTES} - COVERED
    assert not missing, f"routes without a test: {sorted(missing)}"


async def test_facade_calls_are_counted_like_rpc_calls(tmp_path: Path) -> None:
    def count(text: str, line: str) -> float:
        for row in text.splitlines():
            if row.startswith(line + " "):
                return float(row.rsplit(" ", 1)[1])
        return 0.0

    async with (
        running(rest_gateway(tmp_path)) as gw,
        http(gw, "op-token") as op,
        http(gw, "crons-only") as crons_only,
    ):
        calls = 'smithers_gateway_rpc_calls_total{method="listRuns",transport="http"}'
        forbidden = 'smithers_gateway_errors_total{code="FORBIDDEN"}'
        before = (await op.get("/metrics")).text
        ok(await op.get("/v1/api/runs"))
        fails(await crons_only.get("/v1/api/runs"), 403, "FORBIDDEN")
        after = (await op.get("/metrics")).text
        assert count(after, calls) == count(before, calls) + 2
        assert count(after, forbidden) == count(before, forbidden) + 1
