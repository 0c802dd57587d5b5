"""The serve app's ``abort`` works both ways (D9): setting it from outside cancels the served
run (an ``anyio.Event`` or a ``threading.Event``), and ``POST /cancel`` sets it."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import httpx
import pytest

from smithers_core.hosts.serve import create_serve_app
from smithers_core.runtime import Runtime
from smithers_core.workflow.loader import load_workflow
from tests import stores
from tests.engine_helpers import engine_options, wait_for
from tests.fixtures.server.helpers import copy_workflows
from tests.test_serve_app import serve

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_setting_abort_from_outside_cancels_the_run(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow") as s:
        assert await s.wait_status("running") == "running"
        s.abort.set()  # nobody calls /cancel
        assert await s.wait_status("cancelled", timeout=10) == "cancelled"
        events = s.rt.db.list_events(s.run_id, -1, 1000)
        assert [e["type"] for e in events].count("RunCancelled") == 1


async def test_cancel_route_sets_abort_and_cancels_once(tmp_path: Path) -> None:
    async with serve(tmp_path, "slow") as s:
        assert await s.wait_status("running") == "running"
        r = await s.client.post("/cancel")
        assert r.status_code == 200 and s.abort.is_set()
        assert await s.wait_status("cancelled", timeout=10) == "cancelled"
        events = s.rt.db.list_events(s.run_id, -1, 1000)
        assert [e["type"] for e in events].count("RunCancelled") == 1


async def test_abort_after_the_run_ended_changes_nothing(tmp_path: Path) -> None:
    async with serve(tmp_path, "fast") as s:
        assert await s.wait_status("finished") == "finished"
        s.abort.set()
        assert (await s.client.get("/")).json()["status"] == "finished"
        # the watcher ran and gave up quietly: the app still answers, the run is unchanged
        r = await s.client.get("/")
        assert r.status_code == 200 and r.json()["status"] == "finished"


async def test_a_threading_event_set_from_another_thread_cancels(tmp_path: Path) -> None:
    paths = copy_workflows(tmp_path)
    workflow = load_workflow(paths["slow"])
    async with Runtime(stores.url("s.db"), base_dir=tmp_path, options=engine_options()) as rt:
        run_id = (await rt.service.launch(workflow, {}))["runId"]
        abort = threading.Event()
        app = create_serve_app(workflow, rt, run_id, abort, auth_token="")
        assert app.abort_watch is not None and app.abort_watch.started
        await anyio.to_thread.run_sync(abort.set)
        await wait_for(lambda: rt.db.run_status(run_id) == "cancelled", 10, "cancelled")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/")).json()["status"] == "cancelled"
