"""start_server, behaviours from upstream code and recommended fixes (SRV-40..100).

Deliberate changes are marked ``# changed (D7/D9)``.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from smithers_core.errors import SmithersError
from smithers_core.hosts.server import serve_server, start_server
from tests import stores
from tests.engine_helpers import engine_options
from tests.fixtures.server.helpers import copy_workflows, server
from tests.test_server_api import err, insert_run

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


# -- auth (SRV-40..48) ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"x-smithers-key": "secret"}, 404),  # SRV-40
        ({"authorization": "bearer secret"}, 404),  # SRV-41
        ({"authorization": "BEARER secret"}, 404),
        ({"authorization": "secret"}, 404),  # SRV-42
        ({"x-smithers-key": "Bearer secret"}, 404),
        ({"authorization": "Bearer wrong", "x-smithers-key": "secret"}, 401),  # SRV-43
        ({"authorization": "Bearer nope"}, 401),  # SRV-44
        ({"authorization": "Bearer"}, 401),
        ({}, 401),
    ],
)
async def test_srv40_to_44_auth_headers(
    tmp_path: Path, headers: dict[str, str], status: int
) -> None:
    async with server(tmp_path, auth_token="secret") as s:
        r = await s.client.get("/v1/runs/nope", headers=headers)
        assert r.status_code == status, r.text
        if status == 401:
            assert r.content == (
                b'{"error":{"code":"UNAUTHORIZED",'
                b'"message":"Missing or invalid authorization token"}}'
            )
            assert "www-authenticate" not in r.headers
        else:
            assert r.json()["error"]["code"] == "NOT_FOUND"


async def test_srv45_auth_before_routing(tmp_path: Path) -> None:
    async with server(tmp_path, auth_token="secret") as s:
        err(await s.client.get("/v1/unknown"), 401, "UNAUTHORIZED")
        err(await s.client.get("/metrics"), 401, "UNAUTHORIZED")


async def test_srv46_env_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMITHERS_API_KEY", "envsecret")
    async with server(tmp_path, auth_token=None) as s:
        err(await s.client.get("/v1/runs"), 401, "UNAUTHORIZED")
        r = await s.client.get("/v1/runs", headers={"authorization": "Bearer envsecret"})
        assert r.status_code == 200  # changed (D9): no DB_NOT_CONFIGURED


async def test_srv47_empty_token_disables_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMITHERS_API_KEY", "envsecret")
    async with server(tmp_path, auth_token="") as s:
        assert (await s.client.get("/v1/runs")).status_code == 200


async def test_srv48_health_is_unauthenticated(tmp_path: Path) -> None:
    async with server(tmp_path, auth_token="secret") as s:
        r = await s.client.get("/health")
        assert r.status_code == 200 and r.json() == {"ok": True}


# -- headers and envelope (SRV-50, 51) --------------------------------------------------------
async def test_srv50_json_headers(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        r = await s.client.get("/v1/unknown-route")
        assert r.headers["content-type"] == "application/json"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.content == b'{"error":{"code":"NOT_FOUND","message":"Route not found"}}'


async def test_srv51_method_mismatch_is_404(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        for method, path in (
            ("GET", "/v1/runs/x/cancel"),
            ("DELETE", "/v1/runs"),
            ("POST", "/metrics"),
            ("GET", "/v1/runs/"),
            ("OPTIONS", "/v1/runs"),
        ):
            r = await s.client.request(method, path)
            e = err(r, 404, "NOT_FOUND")
            assert e["message"] == "Route not found", (method, path)


# -- body limits (SRV-52..55) ---------------------------------------------------------------
async def test_srv52_413_details_and_the_exact_edge(tmp_path: Path) -> None:
    async with server(tmp_path, max_body_bytes=100) as s:
        base = b'{"workflowPath":"wf/nope.py","pad":"'
        exact = base + b"x" * (100 - len(base) - 2) + b'"}'
        assert len(exact) == 100
        r = await s.client.post("/v1/runs", content=exact)
        err(r, 404, "WORKFLOW_NOT_FOUND")  # passed the limit; the file does not exist
        over = base + b"x" * (101 - len(base) - 2) + b'"}'
        r = await s.client.post("/v1/runs", content=over)
        e = err(r, 413, "PAYLOAD_TOO_LARGE")
        assert e["details"] == {"maxBytes": 100}
        assert e["message"] == "Request body exceeds 100 bytes"


async def test_413_while_streaming_without_content_length(tmp_path: Path) -> None:
    async with server(tmp_path, max_body_bytes=100) as s:
        chunk = b"14\r\n" + b"x" * 20 + b"\r\n"
        out = await anyio.to_thread.run_sync(
            raw_request,
            s.running.port,
            b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 6,
        )
        assert out.startswith(b"HTTP/1.1 413 ")
        assert b'"details":{"maxBytes":100}' in out


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
        return out


async def test_srv53_content_length_precheck_on_a_raw_socket(tmp_path: Path) -> None:
    async with server(tmp_path, max_body_bytes=100) as s:
        began = time.monotonic()
        out = await anyio.to_thread.run_sync(
            raw_request,
            s.running.port,
            b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
        )
        assert out.startswith(b"HTTP/1.1 413 ")
        assert b'"code":"PAYLOAD_TOO_LARGE"' in out
        assert time.monotonic() - began < 3  # answered without waiting for the body


async def test_srv54_empty_body(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        e = err(await s.client.post("/v1/runs"), 400, "INVALID_REQUEST")
        assert e["message"] == "workflowPath must be a string"


async def test_srv55_json_depth(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        deep = '{"workflowPath": ' + "[" * 32 + "]" * 32 + "}"
        e = err(await s.client.post("/v1/runs", content=deep), 400, "INVALID_REQUEST")
        assert e["details"] == {"maxDepth": 32}
        assert e["message"].startswith("request body exceeds the maximum JSON depth of 32")
        ok = '{"workflowPath": ' + "[" * 31 + "]" * 31 + "}"
        e = err(await s.client.post("/v1/runs", content=ok), 400, "INVALID_REQUEST")
        assert "details" not in e and e["message"] == "workflowPath must be a string"
        # changed (issue 13): any depth is the depth error, found without recursing into it
        huge = "[" * 100_000 + "]" * 100_000
        e = err(await s.client.post("/v1/runs", content=huge), 400, "INVALID_REQUEST")
        assert e["details"] == {"maxDepth": 32}


# -- POST /v1/runs validation (SRV-56..65) ----------------------------------------------------
async def test_srv56_to_58_validation(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        p = str(s.wf["fast"])
        bad = [
            {"workflowPath": 123},
            {"workflowPath": ""},
            [],
            "str",
            {"workflowPath": p, "input": []},
            {"workflowPath": p, "input": None},
            {"workflowPath": p, "input": "x"},
            {"workflowPath": p, "config": {"maxConcurrency": 0}},
            {"workflowPath": p, "config": {"maxConcurrency": -1}},
            {"workflowPath": p, "config": {"maxConcurrency": "abc"}},
            {"workflowPath": p, "config": {"maxConcurrency": None}},
        ]
        for body in bad:
            err(await s.client.post("/v1/runs", json=body), 400, "INVALID_REQUEST")
        for value in (2, "4"):
            r = await s.client.post(
                "/v1/runs", json={"workflowPath": p, "config": {"maxConcurrency": value}}
            )
            assert r.status_code == 200, r.text
        r = await s.client.post("/v1/runs", json={"workflowPath": p, "config": "ignored"})
        assert r.status_code == 200


async def test_input_is_validated_against_the_workflow_model(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        p = str(s.wf["typed"])
        r = await s.client.post("/v1/runs", json={"workflowPath": p, "input": {"n": "x"}})
        e = err(r, 400, "INVALID_INPUT")  # changed (issue 13): the model's field errors
        assert e["details"]["issues"]
        assert (await s.client.get("/v1/runs")).json() == []  # nothing was written
        r = await s.client.post("/v1/runs", json={"workflowPath": p, "input": {"n": 5}})
        run_id = r.json()["runId"]
        await s.wait_status(run_id, "finished")
        assert s.db.get_output(run_id, "task1") == {"value": 5}


async def test_srv59_path_sandbox(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    evil = tmp_path / "app-evil"
    evil.mkdir()
    (evil / "w.py").write_text("x = 1\n")
    async with server(tmp_path, root_dir=str(root)) as s:
        for path in ("../outside.py", "/etc/x.py", str(evil / "w.py"), "wf/../../x.py"):
            r = await s.client.post("/v1/runs", json={"workflowPath": path})
            e = err(r, 400, "WORKFLOW_PATH_OUTSIDE_ROOT")
            assert e["message"] == "Workflow path must be within server root directory"
        # a relative path resolves against the root, not the working directory
        r = await s.client.post("/v1/runs", json={"workflowPath": "wf/fast.py"})
        assert r.status_code == 200


async def test_symlink_escape_of_root_dir(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    copy_workflows(outside)
    root.mkdir()
    os.symlink(outside / "wf" / "fast.py", root / "link.py")
    os.symlink(outside / "wf", root / "linkdir")
    async with server(tmp_path, root_dir=str(root)) as s:
        for path in ("link.py", "linkdir/fast.py", str(root / "link.py")):
            r = await s.client.post("/v1/runs", json={"workflowPath": path})
            err(r, 400, "WORKFLOW_PATH_OUTSIDE_ROOT")
        # a symlink that stays inside the root is fine
        os.symlink(root / "wf" / "fast.py", root / "inside.py")
        r = await s.client.post("/v1/runs", json={"workflowPath": "inside.py"})
        assert r.status_code == 200


async def test_srv60_validation_precedes_the_sandbox(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        r = await s.client.post("/v1/runs", json={"workflowPath": "../x.py", "input": []})
        err(r, 400, "INVALID_REQUEST")


async def test_srv61_load_precedes_run_id_required(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        r = await s.client.post("/v1/runs", json={"workflowPath": "nope.py", "resume": True})
        err(r, 404, "WORKFLOW_NOT_FOUND")  # changed (issue 13): upstream answers 500


async def test_srv62_srv66_resume_unknown(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        p = str(s.wf["fast"])
        r = await s.client.post("/v1/runs", json={"workflowPath": p, "runId": "no", "resume": 1})
        err(r, 404, "RUN_NOT_FOUND")
        err(
            await s.client.post("/v1/runs/nope/resume", json={"workflowPath": p}),
            404,
            "RUN_NOT_FOUND",
        )


async def test_srv64_duplicate_start_race(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        body = {"workflowPath": str(s.wf["slow"]), "runId": "race"}
        results: list[int] = []

        async def post() -> None:
            results.append((await s.client.post("/v1/runs", json=body)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(post)
        assert sorted(results) == [200] + [409] * 7
        assert [e["type"] for e in s.db.list_events("race")].count("RunStarted") == 1


async def test_srv65_run_id_validation(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        p = str(s.wf["fast"])
        for run_id in (123, "x" * 257, "", ["a"]):
            r = await s.client.post("/v1/runs", json={"workflowPath": p, "runId": run_id})
            err(r, 400, "INVALID_REQUEST")


async def test_srv68_resume_validates_like_start(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        err(await s.client.post("/v1/runs/x/resume", json={}), 400, "INVALID_REQUEST")


# -- cancel (SRV-69..73) ------------------------------------------------------------------------
async def test_srv69_to_73_cancel_by_status(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        now = int(time.time() * 1000)
        await insert_run(s, "done", status="finished", finished_at_ms=now)
        err(await s.client.post("/v1/runs/done/cancel"), 409, "RUN_NOT_ACTIVE")
        # changed (D7 Q9): stale running and waiting-event runs are cancellable
        await insert_run(
            s,
            "stale",
            started_at_ms=now - 60_000,
            heartbeat_at_ms=now - 60_000,
            runtime_owner_id="pid:1:x@another-host",
        )
        r = await s.client.post("/v1/runs/stale/cancel")
        assert r.json() == {"runId": "stale", "status": "cancelled"}
        await insert_run(s, "ev", status="waiting-event")
        r = await s.client.post("/v1/runs/ev/cancel")
        assert r.json() == {"runId": "ev", "status": "cancelled"}
        await insert_run(s, "appr", status="waiting-approval")
        r = await s.client.post("/v1/runs/appr/cancel")
        assert r.status_code == 200
        row = s.db.run_row("appr")
        assert row["status"] == "cancelled" and row["finished_at_ms"] is not None
        assert row["heartbeat_at_ms"] is None
        assert [e["type"] for e in s.db.list_events("appr")].count("RunCancelled") == 1
        # SRV-73: a healthy run owned by another process is asked to stop
        await insert_run(s, "remote", started_at_ms=now, heartbeat_at_ms=now, runtime_owner_id="w")
        r = await s.client.post("/v1/runs/remote/cancel")
        assert r.json() == {"runId": "remote", "status": "cancelling"}
        row = s.db.run_row("remote")
        assert row["cancel_requested_at_ms"] is not None and row["status"] == "running"


# -- status, list, frames (SRV-74..80) --------------------------------------------------------
async def test_srv74_status_body_shape(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("approval")
        await s.wait_status(run_id, "waiting-approval")
        body = (await s.client.get(f"/v1/runs/{run_id}")).json()
        assert list(body) == [
            "runId",
            "workflowName",
            "status",
            "startedAtMs",
            "finishedAtMs",
            "runState",
            "summary",
        ]
        assert body["workflowName"] == "approval" and body["finishedAtMs"] is None
        assert body["summary"] == {"pending": 1, "waiting-approval": 1}
        assert body["runState"]["state"] == "waiting-approval"
        assert body["runState"]["blocked"]["kind"] == "approval"
        assert body["runState"]["blocked"]["nodeId"] == "task1"
        assert body["runState"]["computedAt"].endswith("Z")


async def test_srv75_run_state_of_terminal_statuses(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        expect = {
            "cancelled": "cancelled",
            "finished": "succeeded",
            "continued": "succeeded",
            "failed": "failed",
        }
        for status in expect:
            await insert_run(s, f"r-{status}", status=status)
        for status, state in expect.items():
            view = (await s.client.get(f"/v1/runs/r-{status}")).json()["runState"]
            assert view["state"] == state
            assert "blocked" not in view and "unhealthy" not in view


async def test_srv76_to_78_list(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        for raw in ("0", "abc", "-1"):
            e = err(await s.client.get(f"/v1/runs?limit={raw}"), 400, "INVALID_REQUEST")
            assert e["message"] == f'Expected a positive integer, got "{raw}"'
        now = int(time.time() * 1000)
        await insert_run(s, "A", created_at_ms=now - 3000, status="waiting-event")
        await insert_run(s, "B", created_at_ms=now - 2000, status="continued")
        await insert_run(s, "C", created_at_ms=now - 1000, status="finished")
        ids = [r["runId"] for r in (await s.client.get("/v1/runs")).json()]
        assert ids == ["C", "B", "A"]
        ids = [r["runId"] for r in (await s.client.get("/v1/runs?limit=2")).json()]
        assert ids == ["C", "B"]
        ids = [r["runId"] for r in (await s.client.get("/v1/runs?limit=1.5")).json()]
        assert ids == ["C"]
        # changed (D7 Q11): the status filter matches exactly
        ids = [r["runId"] for r in (await s.client.get("/v1/runs?status=continued")).json()]
        assert ids == ["B"]
        assert (await s.client.get("/v1/runs?status=running")).json() == []


async def test_srv79_srv80_frames_order_filter_validation(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        await insert_run(s, "fr", status="finished")
        for n in range(5):
            await s.running.runtime.store.write(
                lambda tx, n=n: tx.execute(
                    "INSERT INTO _smithers_frames (run_id, frame_no, created_at_ms, xml_json,"
                    " xml_hash) VALUES ('fr', ?, 1, '{}', 'h')",
                    (n,),
                )
            )
        r = await s.client.get("/v1/runs/fr/frames?limit=2&afterFrameNo=1")
        assert [f["frameNo"] for f in r.json()] == [4, 3]
        r = await s.client.get("/v1/runs/fr/frames?afterFrameNo=-1")
        assert [f["frameNo"] for f in r.json()] == [4, 3, 2, 1, 0]
        err(await s.client.get("/v1/runs/fr/frames?limit=0"), 400, "INVALID_REQUEST")
        e = err(await s.client.get("/v1/runs/fr/frames?afterFrameNo=abc"), 400, "INVALID_REQUEST")
        assert e["message"] == 'Expected a number, got "abc"'
        err(await s.client.get("/v1/runs/nope/frames?limit=0"), 404, "NOT_FOUND")


# -- approve / deny (SRV-82..84) ----------------------------------------------------------------
async def test_srv82_approve_node_not_waiting(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("approval")
        await s.wait_status(run_id, "waiting-approval")
        # changed (D7): 409 NODE_NOT_WAITING instead of 500 SERVER_ERROR
        err(await s.client.post(f"/v1/runs/{run_id}/nodes/done/approve"), 409, "NODE_NOT_WAITING")
        await s.client.post(f"/v1/runs/{run_id}/nodes/task1/approve", json=None)
        err(await s.client.post(f"/v1/runs/{run_id}/nodes/task1/deny"), 409, "NODE_NOT_WAITING")
        err(
            await s.client.post(f"/v1/runs/{run_id}/nodes/task1/approve", json={"iteration": "x"}),
            400,
            "INVALID_REQUEST",
        )


async def test_srv83_approval_side_effects(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("approval")
        await s.wait_status(run_id, "waiting-approval")
        r = await s.client.post(
            f"/v1/runs/{run_id}/nodes/task1/approve", json={"note": "ok", "decidedBy": "u"}
        )
        assert r.status_code == 200
        approval = s.db.approval(run_id, "task1")
        assert (approval["status"], approval["note"], approval["decided_by"]) == (
            "approved",
            "ok",
            "u",
        )
        # changed (D7 Q2): the run goes back to running and is resumed at once
        await s.wait_status(run_id, "finished")
        types = [e["type"] for e in s.db.list_events(run_id, -1, 1000)]
        assert types.count("ApprovalGranted") == 1


async def test_srv84_body_errors_precede_the_lookup(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        r = await s.client.post("/v1/runs/nope/nodes/n/approve", content=b"{")
        err(r, 400, "INVALID_JSON")


async def test_null_body_is_an_empty_object(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("approval")
        await s.wait_status(run_id, "waiting-approval")
        r = await s.client.post(f"/v1/runs/{run_id}/nodes/task1/deny", content=b"null")
        assert r.status_code == 200


async def test_allowed_users_approval_is_forbidden_to_the_token_holder(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        (s.root / "wf" / "users.py").write_text(
            "from smithers_core.workflow.definition import workflow\n"
            "from smithers_core.workflow.nodes import Approval, Seq\n"
            "@workflow('users')\n"
            "def users(ctx):\n"
            "    return Seq(Approval('gate', allowed_users=['alice']))\n"
        )
        run_id = (await s.client.post("/v1/runs", json={"workflowPath": "wf/users.py"})).json()[
            "runId"
        ]
        await s.wait_status(run_id, "waiting-approval")
        r = await s.client.post(
            f"/v1/runs/{run_id}/nodes/gate/approve", json={"decidedBy": "alice"}
        )
        err(r, 403, "FORBIDDEN")  # D9: decidedBy never satisfies allowed_users


# -- signals (SRV-85..90) -------------------------------------------------------------------
async def test_srv85_to_89_signals(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        await insert_run(s, "sig", status="waiting-event")
        r = await s.client.post("/signal/sig/deploy.ready", json={"data": 1})
        assert r.status_code == 200 and r.json()["signalName"] == "deploy.ready"
        assert r.json()["seq"] == 0
        r = await s.client.post("/v1/runs/sig/signals/other", json={"data": 2})
        assert r.json()["seq"] == 1 and isinstance(r.json()["receivedAtMs"], int)
        r = await s.client.post("/v1/runs/sig/signals/x", json={})
        assert r.status_code == 200
        r = await s.client.post("/v1/runs/sig/signals/y", json={"correlationId": 5})
        assert r.json()["correlationId"] is None
        signals = {x["signalName"]: x for x in s.db.list_signals("sig")}
        assert signals["x"]["payloadJson"] == "{}"
        r = await s.client.post("/v1/runs/sig/signals/%20go%20", json={})
        assert r.json()["signalName"] == "go"
        r = await s.client.post("/v1/runs/sig/signals/a%2Fb", json={})
        assert r.json()["signalName"] == "a/b"
        # changed (issue 13): an empty name and a malformed escape are 400, not upstream's 500
        err(await s.client.post("/v1/runs/sig/signals/%20", json={}), 400, "INVALID_REQUEST")
        r = await s.client.post("/v1/runs/sig/signals/%E0%A4%A", json={})
        assert err(r, 400, "INVALID_REQUEST")["message"] == "URI malformed"
        err(await s.client.post("/v1/runs/nope/signals/x", json={}), 404, "NOT_FOUND")


async def test_srv90_signal_to_a_terminal_run(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        await insert_run(s, "fin", status="finished")
        # changed (D7 Q5): a terminal run takes no more signals
        err(await s.client.post("/v1/runs/fin/signals/x", json={}), 409, "RUN_NOT_ACTIVE")


# -- metrics (SRV-97, 98) -------------------------------------------------------------------
async def test_srv97_srv98_metrics(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        await s.client.get("/v1/runs/nope")
        r = await s.client.get("/metrics")
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert r.headers["cache-control"] == "no-store"
        assert "# TYPE " in r.text
        # changed (D9): prometheus_client counters end in _total
        line = (
            'smithers_http_requests_total{method="GET",route="/v1/runs/:runId",'
            'status_class="4xx",status_code="404"} 1.0'
        )
        assert line in r.text.splitlines()
        assert not re.search(r"_created(\{| )", r.text)  # D9: no _created series


async def test_route_labels_come_from_the_matched_route(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        await s.client.get("/v1/runs/x/cancel")  # a wrong method matches no route
        await s.client.get("/nope")
        await s.client.post("/v1/runs/x-y/cancel")
        lines = (await s.client.get("/metrics")).text.splitlines()
        assert (
            'smithers_http_requests_total{method="GET",route="unmatched",'
            'status_class="4xx",status_code="404"} 2.0'
        ) in lines
        assert (
            'smithers_http_requests_total{method="POST",route="/v1/runs/:runId/cancel",'
            'status_class="4xx",status_code="404"} 1.0'
        ) in lines


async def test_metrics_runs_by_status_and_sse_gauge(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("fast")
        await s.wait_status(run_id, "finished")
        slow = await s.start("slow")
        async with s.client.stream("GET", f"/v1/runs/{slow}/events") as stream:
            assert stream.status_code == 200
            text = (await s.client.get("/metrics")).text
            assert "smithers_sse_streams_active 1.0" in text
        assert "smithers_runs_total 2.0" in text
        assert "smithers_runs_finished_total 1.0" in text
        assert "smithers_runs_failed_total 0.0" in text
        assert "smithers_runs_active 1.0" in text


# -- options (SRV-99, 100, bind) ------------------------------------------------------------
def test_srv99_default_port_and_sync_start_server(tmp_path: Path) -> None:
    copy_workflows(tmp_path)
    try:
        handle = start_server(root_dir=str(tmp_path), options=engine_options())
    except SmithersError as exc:
        if exc.code == "SERVER_BIND_FAILED":
            pytest.skip("port 7331 is busy")
        raise
    try:
        assert handle.port == 7331 and handle.url == "http://127.0.0.1:7331"
        r = httpx.post(f"{handle.url}/v1/runs", json={"workflowPath": "wf/fast.py"})
        assert r.status_code == 200
    finally:
        handle.close()
    handle.close()  # idempotent
    # D9: the default store lives in root_dir (on the PostgreSQL leg: $SMITHERS_DB)
    assert stores.rows(tmp_path / "smithers.db", "SELECT COUNT(*) FROM _smithers_runs") == [(1,)]


def test_start_server_port_zero_and_bind_errors(tmp_path: Path) -> None:
    handle = start_server(port=0, root_dir=str(tmp_path))
    try:
        assert handle.port > 0
        assert httpx.get(f"{handle.url}/health").json() == {"ok": True}
        with pytest.raises(SmithersError) as info:
            start_server(port=handle.port, root_dir=str(tmp_path))
        assert info.value.code == "SERVER_BIND_FAILED"
    finally:
        handle.close()
    with pytest.raises(SmithersError) as info:
        start_server(port=0, host="0.0.0.0", root_dir=str(tmp_path), auth_token="")
    assert info.value.code == "SERVER_INSECURE_BIND"


async def test_srv100_close_suspends_runs(tmp_path: Path) -> None:
    copy_workflows(tmp_path)
    kw: dict[str, Any] = {"root_dir": str(tmp_path), "options": engine_options()}
    async with (
        serve_server(port=0, **kw) as running,
        httpx.AsyncClient(base_url=running.url) as client,
    ):
        r = await client.post("/v1/runs", json={"workflowPath": "wf/slow.py"})
        run_id = r.json()["runId"]
        db = running.runtime.db
        for _ in range(200):
            if db.list_attempts(run_id):
                break
            await anyio.sleep(0.01)
    # changed (D6): closing suspends (never cancels); a new server resumes the run
    async with serve_server(port=0, **kw) as running:
        row = running.runtime.db.run_row(run_id)
        assert row["status"] == "running"
        types = [e["type"] for e in running.runtime.db.list_events(run_id, -1, 1000)]
        assert "RunCancelled" not in types
        for _ in range(300):
            if running.runtime.db.run_row(run_id)["runtime_owner_id"] == (
                running.runtime.engine.owner_id
            ):
                break
            await anyio.sleep(0.01)
        assert running.runtime.db.run_row(run_id)["runtime_owner_id"] == (
            running.runtime.engine.owner_id
        )
