"""create_serve_app: one workflow, one run (reference/server.md appendix C and D).

The runtime here has no resolver, so resuming after approve/deny/signal is the app's own
doing (with the workflow it was given). Changes from upstream are marked ``# changed``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from smithers_core.errors import SmithersError
from smithers_core.hosts.serve import create_serve_app, serve_up
from smithers_core.http.binding import BoundServer, serve_app
from smithers_core.runtime import Runtime
from smithers_core.workflow.loader import load_workflow
from tests import stores
from tests.engine_helpers import engine_options
from tests.fixtures.server.helpers import copy_workflows, parse_sse, read_sse
from tests.test_server_api import err

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


@dataclass
class Served:
    client: httpx.AsyncClient
    rt: Runtime
    run_id: str
    abort: anyio.Event

    async def wait_status(self, *statuses: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            r = await self.client.get("/")
            if r.status_code == 200:
                last = r.json()["status"]
                if last in statuses:
                    return str(last)
            await anyio.sleep(0.02)
        raise AssertionError(f"never reached {statuses} (last {last})")


@asynccontextmanager
async def serve(
    tmp_path: Path,
    name: str,
    *,
    auth_token: str | None = "",
    metrics: bool = True,
    launch: bool = True,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Served]:
    paths = copy_workflows(tmp_path)
    workflow = load_workflow(paths[name])
    async with (
        Runtime(
            stores.url("smithers.db"),
            base_dir=tmp_path,
            options=engine_options(),
            root_dir=str(tmp_path),
            sse_poll_ms=50,
        ) as rt,
        anyio.create_task_group() as tg,
    ):
        run_id = "missing-run"
        if launch:
            run_id = (await rt.service.launch(workflow, {}))["runId"]
        abort = anyio.Event()
        app = create_serve_app(workflow, rt, run_id, abort, auth_token, metrics)
        bound = await serve_app(tg, app, port=0, lifespan="off")
        try:
            async with httpx.AsyncClient(
                base_url=bound.url, headers=headers or {}, timeout=10
            ) as client:
                yield Served(client, rt, run_id, abort)
        finally:
            bound.server.force_exit = True
            await bound.close()


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if re.match(rf"^{re.escape(name)}(\{{| )", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_s01_s02_status(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow") as s:
        r = await s.client.get("/")
        assert r.status_code == 200
        body = r.json()
        assert body["runId"] == s.run_id and body["workflowName"] == "slow"
        assert body["status"] == "running" and "summary" in body
        assert "runState" not in body
        assert r.headers["content-type"] == "application/json"
        assert "cache-control" not in r.headers  # SRV-S33
    async with serve(tmp_path, "fast") as s:
        assert await s.wait_status("finished") == "finished"


async def test_s03_to_s07_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMITHERS_API_KEY", raising=False)
    async with serve(tmp_path, "slow", auth_token="secret") as s:
        r = await s.client.get("/health")
        assert r.status_code == 200 and r.json() == {"ok": True}
        err(await s.client.get("/"), 401, "UNAUTHORIZED")
        ok = [
            {"authorization": "Bearer secret"},
            {"x-smithers-key": "secret"},
            {"authorization": "secret"},
            {"authorization": "bearer secret"},
            {"x-smithers-key": "wrong", "authorization": "Bearer secret"},
        ]
        for headers in ok:
            r = await s.client.get("/", headers=headers)
            assert r.status_code == 200 and r.json()["runId"] == s.run_id, headers
        r = await s.client.get("/", headers={"x-smithers-key": "Bearer secret"})
        err(r, 401, "UNAUTHORIZED")
        err(await s.client.get("/nope"), 401, "UNAUTHORIZED")  # SRV-S31
    async with serve(tmp_path, "slow", auth_token=None) as s:
        assert (await s.client.get("/")).status_code == 200
        assert (await s.client.get("/health")).status_code == 200


async def test_s42_env_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMITHERS_API_KEY", "envsecret")
    async with serve(tmp_path, "slow", auth_token=None) as s:
        err(await s.client.get("/"), 401, "UNAUTHORIZED")  # D9 follows the API page
        r = await s.client.get("/", headers={"authorization": "Bearer envsecret"})
        assert r.status_code == 200


async def test_s08_approve_resumes_the_run(tmp_path: Path) -> None:
    async with serve(tmp_path, "approval") as s:
        await s.wait_status("waiting-approval")
        r = await s.client.post(
            "/approve/task1",
            json={"iteration": 0, "note": "approved by test", "decidedBy": "test-user"},
        )
        assert r.status_code == 200 and r.json() == {"runId": s.run_id}
        assert await s.wait_status("finished") == "finished"
        assert s.rt.db.get_output(s.run_id, "done") == {"value": 1}


async def test_s09_deny(tmp_path: Path) -> None:
    async with serve(tmp_path, "approval") as s:
        await s.wait_status("waiting-approval")
        r = await s.client.post("/deny/task1", json={"iteration": 0, "note": "no"})
        assert r.status_code == 200 and r.json() == {"runId": s.run_id}
        assert await s.wait_status("failed") == "failed"


async def test_s10_s11_cancel(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow") as s:
        r = await s.client.post("/cancel")
        assert r.status_code == 200
        assert r.json() == {"runId": s.run_id, "status": "cancelling"}
        assert s.abort.is_set()
        assert await s.wait_status("cancelled") == "cancelled"
        err(await s.client.post("/cancel"), 409, "RUN_NOT_ACTIVE")


async def test_s12_to_s14_sse(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow") as s:
        async with s.client.stream("GET", "/events") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            buf = ""
            with anyio.fail_after(2):
                async for chunk in r.aiter_text():
                    buf += chunk
                    if "event: smithers" in buf and "\n\n" in buf.split("event: smithers")[1]:
                        break
            assert "data: " in buf
        async with s.client.stream("GET", "/events?afterSeq=999999") as r:
            assert r.status_code == 200 and "text/event-stream" in r.headers["content-type"]


async def test_s35_sse_frames_and_close(tmp_path: Path) -> None:
    async with serve(tmp_path, "fast") as s:
        _r, body = await read_sse(s.client, "/events")
        # changed (D9): one SSE implementation, so serve mode has the retry preamble too
        assert body.startswith("retry: 1000\n\n")
        events, comments = parse_sse(body)
        assert [e.seq for e in events] == list(range(len(events)))
        assert events[-1].data["type"] == "RunFinished"
        assert comments == []
        r = await s.client.get(f"/events?afterSeq={events[-1].seq}")
        assert r.status_code == 204


async def test_s36_invalid_after_seq(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow") as s:
        # changed (D9): a non-integer cursor is 400 (upstream serve restarts from 0)
        err(await s.client.get("/events?afterSeq=abc"), 400, "INVALID_REQUEST")


async def test_s15_s16_s37_frames(tmp_path: Path) -> None:
    async with serve(tmp_path, "approval") as s:
        await s.wait_status("waiting-approval")
        for query, most in (("", 50), ("?limit=1", 1), ("?limit=0", 50), ("?limit=abc", 50)):
            r = await s.client.get(f"/frames{query}")
            assert r.status_code == 200 and isinstance(r.json(), list)
            assert 1 <= len(r.json()) <= most
        assert len((await s.client.get("/frames?limit=-3")).json()) <= 1
        assert (await s.client.get("/frames?afterFrameNo=999")).json() == []


async def test_s17_s18_s41_metrics(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow") as s:
        r = await s.client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "smithers_" in r.text
    async with serve(tmp_path, "slow", metrics=False) as s:
        err(await s.client.get("/metrics"), 404, "NOT_FOUND")


async def test_s19_s23_run_counters_after_a_clean_run(tmp_path: Path) -> None:
    async with serve(tmp_path, "fast") as s:
        await s.wait_status("finished")
        text = (await s.client.get("/metrics")).text
        # changed (D9): counters end in _total
        for name in (
            "smithers_runs_finished_total",
            "smithers_nodes_started_total",
            "smithers_nodes_finished_total",
            "smithers_events_emitted_total",
        ):
            assert metric_sum(text, name) >= 1, name
        assert metric_sum(text, "smithers_runs_failed_total") == 0
        assert metric_sum(text, "smithers_nodes_failed_total") == 0


async def test_s20_http_counters_skip_health(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow") as s:
        before = (await s.client.get("/metrics")).text
        for path in ("/", "/health", "/frames"):
            await s.client.get(path)
        after = (await s.client.get("/metrics")).text
        name = "smithers_http_requests_total"
        assert metric_sum(after, name) - metric_sum(before, name) == 3  # /, /frames, /metrics
        assert 'route="/health"' not in after


@pytest.mark.parametrize(("action", "counter"), [("approve", "granted"), ("deny", "denied")])
async def test_s21_s22_approval_counters(tmp_path: Path, action: str, counter: str) -> None:
    async with serve(tmp_path, "approval") as s:
        await s.wait_status("waiting-approval")
        await s.client.post(f"/{action}/task1")
        await s.wait_status("finished", "failed")
        text = (await s.client.get("/metrics")).text
        assert metric_sum(text, "smithers_approvals_requested_total") >= 1
        assert metric_sum(text, f"smithers_approvals_{counter}_total") >= 1


async def test_s24_s34_unknown_routes(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow") as s:
        for method, path in (("GET", "/v1/unknown-route"), ("POST", "/"), ("GET", "/cancel")):
            e = err(await s.client.request(method, path), 404, "NOT_FOUND")
            assert e["message"] == "Route not found"


async def test_s30_missing_run_row(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow", launch=False) as s:
        e = err(await s.client.get("/"), 404, "RUN_NOT_FOUND")
        assert e["message"] == "Run not found"
        err(await s.client.post("/cancel"), 404, "RUN_NOT_FOUND")
        err(await s.client.get("/events"), 404, "RUN_NOT_FOUND")  # changed: upstream hangs


async def test_frames_never_check_the_run(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow", launch=False) as s:
        r = await s.client.get("/frames?limit=abc&afterFrameNo=-5")
        assert r.status_code == 200 and r.json() == []  # upstream serve: no run lookup


async def test_s38_s39_approve_body_and_not_waiting(tmp_path: Path) -> None:
    async with serve(tmp_path, "approval") as s:
        await s.wait_status("waiting-approval")
        # changed (D7): 409 NODE_NOT_WAITING instead of 500 SERVER_ERROR
        err(await s.client.post("/approve/ghost", json={}), 409, "NODE_NOT_WAITING")
        r = await s.client.post("/approve/task1", content=b"not json")
        assert r.status_code == 200 and r.json() == {"runId": s.run_id}


async def test_s40_cancel_a_waiting_approval_run(tmp_path: Path) -> None:
    async with serve(tmp_path, "approval") as s:
        await s.wait_status("waiting-approval")
        r = await s.client.post("/cancel")
        assert r.json() == {"runId": s.run_id, "status": "cancelled"}
        assert (await s.client.get("/")).json()["status"] == "cancelled"
        _r, body = await read_sse(s.client, "/events")
        assert parse_sse(body)[0][-1].data["type"] == "RunCancelled"


async def test_signals_route_and_alias_resume_the_run(tmp_path: Path) -> None:
    async with serve(tmp_path, "signal") as s:
        await s.wait_status("waiting-event")
        r = await s.client.post("/signal/other", json={"data": {"x": 1}})
        assert r.status_code == 200 and r.json()["seq"] == 0
        assert r.headers["content-type"] == "application/json"
        r = await s.client.post("/signals/deploy.ready", json={"data": {"ok": True}})
        body = r.json()
        assert body["signalName"] == "deploy.ready" and body["seq"] == 1
        assert body["runId"] == s.run_id and body["correlationId"] is None
        assert await s.wait_status("finished") == "finished"
        assert s.rt.db.get_output(s.run_id, "done") == {"value": 1}
        err(await s.client.post("/signals/late", json={}), 409, "RUN_NOT_ACTIVE")


async def test_serve_up_binds_and_serves_until_cancelled(tmp_path: Path) -> None:
    paths = copy_workflows(tmp_path)
    workflow = load_workflow(paths["fast"])
    async with Runtime(
        stores.url("smithers.db"), base_dir=tmp_path, options=engine_options()
    ) as rt:
        run_id = (await rt.service.launch(workflow, {}))["runId"]
        bound_box: list[BoundServer] = []
        ready = anyio.Event()

        def on_ready(bound: BoundServer) -> None:
            bound_box.append(bound)
            ready.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: serve_up(
                    rt,
                    workflow,
                    run_id,
                    host="127.0.0.1",
                    port=0,
                    auth_token="t",
                    metrics=False,
                    ready=on_ready,
                )
            )
            with anyio.fail_after(5):
                await ready.wait()
            url = bound_box[0].url
            async with httpx.AsyncClient(base_url=url, headers={"x-smithers-key": "t"}) as c:
                for _ in range(250):
                    if (await c.get("/")).json()["status"] == "finished":
                        break
                    await anyio.sleep(0.02)
                # it keeps serving after the run ends
                assert (await c.get("/")).json()["status"] == "finished"
                assert (await c.get("/metrics")).status_code == 404
            tg.cancel_scope.cancel()
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health")
        with pytest.raises(SmithersError) as info:
            await serve_up(rt, workflow, run_id, host="0.0.0.0", port=0, auth_token="")
        assert info.value.code == "SERVER_INSECURE_BIND"


async def test_create_serve_app_accepts_a_threading_event(tmp_path: Path) -> None:
    import threading

    paths = copy_workflows(tmp_path)
    workflow = load_workflow(paths["slow"])
    async with Runtime(stores.url("s.db"), base_dir=tmp_path, options=engine_options()) as rt:
        run_id = (await rt.service.launch(workflow, {}))["runId"]
        abort = threading.Event()
        app = create_serve_app(workflow, rt, run_id, abort, auth_token="")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post("/cancel")
            assert r.status_code == 200 and abort.is_set()
