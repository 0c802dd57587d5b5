"""start_server, upstream-tested behaviours (reference/server.md appendix A, SRV-01..39).

Driven over real HTTP against a server bound on 127.0.0.1:0. Behaviours we deliberately
changed are marked ``# changed (D7/D9)`` with the reason.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.fixtures.server.helpers import parse_sse, read_sse, server

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def err(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    return body["error"]


async def insert_run(srv: Any, run_id: str, **cols: Any) -> None:
    now = int(time.time() * 1000)
    row = {
        "run_id": run_id,
        "workflow_name": "wf",
        "status": "running",
        "created_at_ms": now,
        **cols,
    }
    keys = ", ".join(row)
    marks = ", ".join("?" for _ in row)

    def change(tx: Any) -> None:
        tx.execute(f"INSERT INTO _smithers_runs ({keys}) VALUES ({marks})", tuple(row.values()))

    await srv.running.runtime.store.write(change)


async def execute(srv: Any, sql: str, params: tuple[Any, ...] = ()) -> None:
    await srv.running.runtime.store.write(lambda tx: tx.execute(sql, params))


async def test_srv01_srv63_start_a_run(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        r = await s.client.post("/v1/runs", json={"workflowPath": str(s.wf["fast"])})
        assert r.status_code == 200
        body = r.json()
        assert list(body) == ["runId"]
        assert UUID.match(body["runId"])
        assert r.headers["content-type"] == "application/json"


async def test_srv02_custom_run_id(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        r = await s.client.post(
            "/v1/runs", json={"workflowPath": str(s.wf["fast"]), "runId": "custom-run-id-123"}
        )
        assert r.status_code == 200 and r.json() == {"runId": "custom-run-id-123"}


async def test_srv03_srv33_missing_workflow_file(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        # changed (D9): the sandbox is always on, so the missing file lies inside root_dir;
        # changed (issue 13): 404 WORKFLOW_NOT_FOUND naming the path relative to the root,
        # where upstream answers 500 SERVER_ERROR with the server's absolute path
        r = await s.client.post("/v1/runs", json={"workflowPath": "wf/does-not-exist.py"})
        e = err(r, 404, "WORKFLOW_NOT_FOUND")
        assert e["message"] == "Workflow file not found: wf/does-not-exist.py"
        assert e["details"] == {"workflowPath": "wf/does-not-exist.py"}
        assert str(tmp_path) not in r.text


async def test_srv04_workflow_reloaded_when_file_changes(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        path = s.wf["fast"]
        first = await s.start("fast")
        assert await s.wait_status(first, "finished") == "finished"
        path.write_text(path.read_text().replace("VALUE = 42", "VALUE = 7"))
        second = await s.start("fast")
        assert await s.wait_status(second, "finished") == "finished"
        assert s.db.get_output(first, "task1") == {"value": 42}
        assert s.db.get_output(second, "task1") == {"value": 7}


async def test_srv05_malformed_json(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        r = await s.client.post(
            "/v1/runs", content=b"{", headers={"content-type": "application/json"}
        )
        err(r, 400, "INVALID_JSON")


async def test_srv06_body_over_limit(tmp_path: Path) -> None:
    async with server(tmp_path, max_body_bytes=100) as s:
        r = await s.client.post(
            "/v1/runs",
            json={"workflowPath": str(s.wf["fast"]), "input": {"payload": "x" * 1000}},
        )
        err(r, 413, "PAYLOAD_TOO_LARGE")


async def test_srv07_srv08_status(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("slow")
        r = await s.client.get(f"/v1/runs/{run_id}")
        assert r.status_code == 200
        body = r.json()
        assert body["runId"] == run_id and body["workflowName"] == "slow"
        assert body["status"] in {"running", "finished", "failed", "waiting-approval"}
        err(await s.client.get("/v1/runs/non-existent-run-id"), 404, "NOT_FOUND")


async def test_srv09_srv10_auth(tmp_path: Path) -> None:
    async with server(tmp_path, auth_token="secret") as s:
        body = {"workflowPath": str(s.wf["fast"])}
        err(await s.client.post("/v1/runs", json=body), 401, "UNAUTHORIZED")
        r = await s.client.post("/v1/runs", json=body, headers={"authorization": "Bearer secret"})
        assert r.status_code == 200 and r.json()["runId"]


async def test_srv11_srv12_cancel(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("slow")
        await s.wait_status(run_id, "running")
        r = await s.client.post(f"/v1/runs/{run_id}/cancel")
        assert r.status_code == 200
        # changed (D7): the body also says whether the run is still stopping
        assert r.json() == {"runId": run_id, "status": "cancelling"}
        assert await s.wait_status(run_id, "cancelled") == "cancelled"
        [row] = (await s.client.get("/v1/runs")).json()
        assert row["cancelRequestSource"] == "server" and row["cancelRequestId"]
        err(await s.client.post("/v1/runs/non-existent-run-id/cancel"), 404, "NOT_FOUND")


async def test_srv13_resume_echoes_run_id(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("fast")
        r = await s.client.post(
            f"/v1/runs/{run_id}/resume", json={"workflowPath": str(s.wf["fast"])}
        )
        assert r.status_code == 200
        assert r.json()["runId"] == run_id
        # D6: a terminal run executes nothing and answers its status
        await s.wait_status(run_id, "finished")
        r = await s.client.post(
            f"/v1/runs/{run_id}/resume", json={"workflowPath": str(s.wf["fast"])}
        )
        assert r.json() == {"runId": run_id, "status": "finished"}


async def test_srv14_srv15_srv16_frames(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("approval")
        await s.wait_status(run_id, "waiting-approval")
        r = await s.client.get(f"/v1/runs/{run_id}/frames")
        assert r.status_code == 200
        frames = r.json()
        assert isinstance(frames, list) and frames
        assert {"runId", "frameNo", "createdAtMs", "xmlJson", "xmlHash", "encoding"} <= set(
            frames[0]
        )
        err(await s.client.get("/v1/runs/non-existent-run-id/frames"), 404, "NOT_FOUND")
        r = await s.client.get(f"/v1/runs/{run_id}/frames?limit=10&afterFrameNo=0")
        assert r.status_code == 200
        assert len(r.json()) <= 10 and all(f["frameNo"] > 0 for f in r.json())


async def test_srv17_approve_then_the_server_resumes_the_run(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("approval")
        await s.wait_status(run_id, "waiting-approval")
        r = await s.client.post(
            f"/v1/runs/{run_id}/nodes/task1/approve",
            json={"iteration": 0, "note": "approved by test", "decidedBy": "test-user"},
        )
        assert r.status_code == 200 and r.json() == {"runId": run_id}
        assert await s.wait_status(run_id, "finished") == "finished"
        approval = s.db.approval(run_id, "task1")
        assert approval["status"] == "approved"
        assert approval["note"] == "approved by test"
        assert approval["decided_by"] == "test-user"
        assert s.db.get_output(run_id, "done") == {"value": 1}


async def test_srv20_deny_then_the_run_fails(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("approval")
        await s.wait_status(run_id, "waiting-approval")
        r = await s.client.post(
            f"/v1/runs/{run_id}/nodes/task1/deny",
            json={"iteration": 0, "note": "denied by test", "decidedBy": "test-user"},
        )
        assert r.status_code == 200 and r.json() == {"runId": run_id}
        assert await s.wait_status(run_id, "failed") == "failed"


@pytest.mark.parametrize("action", ["approve", "deny"])
async def test_srv18_19_21_22_decide_unknown_run(tmp_path: Path, action: str) -> None:
    async with server(tmp_path) as s:
        r = await s.client.post(
            f"/v1/runs/non-existent-run-id/nodes/some-node/{action}", json={"iteration": 0}
        )
        err(r, 404, "NOT_FOUND")


async def test_srv23_srv24_sse_content_type(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("slow")
        async with s.client.stream("GET", f"/v1/runs/{run_id}/events") as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/event-stream"
        r = await s.client.get("/v1/runs/non-existent-run-id/events")
        err(r, 404, "NOT_FOUND")
        assert r.headers["content-type"] == "application/json"


async def test_srv25_to_27_list_runs(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        # changed (D9): the server always has its store; DB_NOT_CONFIGURED is never emitted
        r = await s.client.get("/v1/runs")
        assert r.status_code == 200 and r.json() == []
        run_id = await s.start("slow")
        r = await s.client.get("/v1/runs?limit=10&status=running")
        assert r.status_code == 200
        rows = r.json()
        assert [x["runId"] for x in rows] == [run_id]
        assert rows[0]["runState"]["state"] == "running"
        assert rows[0]["workflowPath"] == str(s.wf["slow"].resolve())


async def test_srv28_stale_row_keeps_status(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        old = int(time.time() * 1000) - 60_000
        # a foreign host's owner, so the local sweep does not claim it
        await insert_run(
            s,
            "stale-running",
            workflow_name="stale-flow",
            created_at_ms=old,
            started_at_ms=old,
            heartbeat_at_ms=old,
            runtime_owner_id="pid:1:x@another-host",
        )
        r = await s.client.get("/v1/runs?limit=10")
        row = r.json()[0]
        assert row["runId"] == "stale-running" and row["status"] == "running"
        assert row["runState"]["state"] == "stale"
        assert row["runState"]["unhealthy"]["kind"] == "engine-heartbeat-stale"


async def test_srv29_srv30_srv81_pending_approvals(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        r = await s.client.get("/v1/approval/list")
        # changed (D9): never DB_NOT_CONFIGURED
        assert r.status_code == 200 and r.json() == {"approvals": []}
        now = int(time.time() * 1000)
        await insert_run(
            s,
            "run-older",
            workflow_name="release-flow",
            status="waiting-approval",
            created_at_ms=now - 10_000,
        )
        await insert_run(
            s,
            "run-newer",
            workflow_name="qa-flow",
            status="waiting-approval",
            created_at_ms=now - 9_000,
        )
        for run_id, node, label in (
            ("run-older", "deploy", "Deploy gate"),
            ("run-newer", "review", "Review gate"),
        ):
            await execute(
                s,
                "INSERT INTO _smithers_nodes (run_id, node_id, iteration, state, updated_at_ms,"
                " label) VALUES (?, ?, 0, 'waiting-approval', ?, ?)",
                (run_id, node, now, label),
            )
        for run_id, node, status, at in (
            ("run-newer", "review", "requested", now - 2_000),
            ("run-older", "deploy", "requested", now - 8_000),
            ("run-older", "cleanup", "approved", now - 9_000),
        ):
            await execute(
                s,
                "INSERT INTO _smithers_approvals (run_id, node_id, iteration, status,"
                " requested_at_ms) VALUES (?, ?, 0, ?, ?)",
                (run_id, node, status, at),
            )
        bodies = []
        for path in ("/v1/approvals", "/v1/approval/list", "/approval/list", "/approvals"):
            r = await s.client.get(path)
            assert r.status_code == 200, path
            bodies.append(r.json())
        items = bodies[0]["approvals"]
        assert len(items) == 2
        assert items[0]["runId"] == "run-older" and items[0]["nodeId"] == "deploy"
        assert items[0]["workflowName"] == "release-flow" and items[0]["label"] == "Deploy gate"
        assert items[1]["runId"] == "run-newer" and items[1]["label"] == "Review gate"
        assert 7_000 <= items[0]["waitingMs"] <= 20_000
        assert set(items[0]) == {
            "runId",
            "nodeId",
            "iteration",
            "workflowName",
            "runStatus",
            "label",
            "requestTitle",
            "requestSummary",
            "requestedAtMs",
            "waitingMs",
            "note",
            "decidedBy",
        }
        for body in bodies[1:]:
            assert [(a["runId"], a["nodeId"]) for a in body["approvals"]] == [
                ("run-older", "deploy"),
                ("run-newer", "review"),
            ]


async def test_srv31_srv32_unknown_routes(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        e = err(await s.client.get("/v1/unknown-route"), 404, "NOT_FOUND")
        assert e["message"] == "Route not found"
        err(await s.client.get("/"), 404, "NOT_FOUND")


async def test_srv34_resume_without_run_id(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        r = await s.client.post(
            "/v1/runs", json={"workflowPath": str(s.wf["fast"]), "resume": True}
        )
        err(r, 400, "RUN_ID_REQUIRED")


async def test_srv35_duplicate_run_id(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        body = {"workflowPath": str(s.wf["fast"]), "runId": "duplicate-run-id"}
        assert (await s.client.post("/v1/runs", json=body)).status_code == 200
        err(await s.client.post("/v1/runs", json=body), 409, "RUN_ALREADY_EXISTS")


async def test_srv36_srv67_resume_with_fresh_heartbeat(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        now = int(time.time() * 1000)
        await insert_run(
            s,
            "fresh-heartbeat-run",
            workflow_name="fast",
            started_at_ms=now,
            heartbeat_at_ms=now,
            runtime_owner_id="worker-1",
        )
        r = await s.client.post(
            "/v1/runs",
            json={
                "workflowPath": str(s.wf["fast"]),
                "runId": "fresh-heartbeat-run",
                "resume": True,
            },
        )
        assert r.status_code == 200
        assert r.json() == {"runId": "fresh-heartbeat-run", "status": "running"}
        r = await s.client.post(
            "/v1/runs/fresh-heartbeat-run/resume", json={"workflowPath": str(s.wf["fast"])}
        )
        assert r.json() == {"runId": "fresh-heartbeat-run", "status": "running"}
        assert s.db.list_events("fresh-heartbeat-run") == []


async def test_srv37_cancel_waiting_timer_run(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        (s.root / "wf" / "timer.py").write_text(
            "from smithers_core.workflow.definition import workflow\n"
            "from smithers_core.workflow.nodes import Seq, Timer\n"
            "@workflow('timer')\n"
            "def timer(ctx):\n"
            "    return Seq(Timer('cooldown', '60s', label='Cooldown'))\n"
        )
        r = await s.client.post("/v1/runs", json={"workflowPath": "wf/timer.py"})
        run_id = r.json()["runId"]
        await s.wait_status(run_id, "waiting-timer")
        r = await s.client.post(f"/v1/runs/{run_id}/cancel")
        assert r.status_code == 200
        assert r.json() == {"runId": run_id, "status": "cancelled"}
        assert s.db.run_row(run_id)["status"] == "cancelled"
        types = [e["type"] for e in s.db.list_events(run_id, -1, 1000)]
        assert types.count("TimerCancelled") == 1
        assert types.count("RunCancelled") == 1


async def test_srv38_deliver_a_signal_and_the_run_resumes(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("signal")
        await s.wait_status(run_id, "waiting-event")
        r = await s.client.post(
            f"/v1/runs/{run_id}/signals/deploy.ready",
            json={"data": {"ok": True}, "correlationId": None, "receivedBy": "http-test"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["runId"] == run_id and body["signalName"] == "deploy.ready"
        assert body["correlationId"] is None and body["seq"] == 0
        assert isinstance(body["receivedAtMs"], int)
        signals = s.db.list_signals(run_id)
        assert len(signals) == 1
        assert signals[0]["payloadJson"] == '{"ok":true}'
        assert signals[0]["receivedBy"] == "http-test"
        assert await s.wait_status(run_id, "finished") == "finished"
        assert s.db.get_output(run_id, "done") == {"value": 1}


async def test_srv39_metrics(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        r = await s.client.get("/metrics")
        assert r.status_code == 200
        assert "text/plain" in r.headers["content-type"]
        assert "smithers_" in r.text


async def test_sse_smoke_full_run(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("fast")
        r, body = await read_sse(s.client, f"/v1/runs/{run_id}/events")
        assert r.status_code == 200
        events, _ = parse_sse(body)
        types = [e.data["type"] for e in events]
        assert types[0] == "RunStarted" and types[-1] == "RunFinished"


async def test_an_edited_workflow_takes_effect_when_the_server_resumes_it(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("approval")
        await s.wait_status(run_id, "waiting-approval")
        path = s.wf["approval"]
        path.write_text(path.read_text().replace("OutputA(value=1)", "OutputA(value=2)"))
        r = await s.client.post(f"/v1/runs/{run_id}/nodes/task1/approve")
        assert r.status_code == 200
        await s.wait_status(run_id, "finished")
        assert s.db.get_output(run_id, "done") == {"value": 2}
        types = [e["type"] for e in s.db.list_events(run_id, -1, 1000)]
        assert "WorkflowReloaded" in types


async def test_a_run_whose_file_left_the_root_is_not_resumed(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("approval")
        await s.wait_status(run_id, "waiting-approval")
        outside = tmp_path.parent / f"{tmp_path.name}-outside.py"
        s.wf["approval"].rename(outside)
        os.symlink(outside, s.wf["approval"])  # the stored path now escapes the root
        r = await s.client.post(f"/v1/runs/{run_id}/nodes/task1/approve")
        assert r.status_code == 200
        await anyio.sleep(0.3)
        # parked for a host that can load it; never executed from outside the root
        assert s.db.run_row(run_id)["status"] == "running"
        assert s.db.run_row(run_id)["runtime_owner_id"] is None
        assert s.db.get_output(run_id, "done") is None
