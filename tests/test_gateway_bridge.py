"""Runs executed by another process sharing the store reach the gateway's sockets through
the EventHub's poller (reference 10, D10): same mapping, one run.completed, no history."""

from __future__ import annotations

from pathlib import Path

import pytest

from smithers_core.store.sqlite import SqliteStore
from tests.engine_helpers import Harness
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import OP_TOKEN, TOKENS, http, make_gateway, rpc, running, ws_client

pytestmark = pytest.mark.anyio


async def test_events_of_another_store_are_broadcast(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, out_of_process_event_bridge_poll_ms=30)
    async with running(gw), ws_client(gw) as ws:
        await ws.recv()
        await ws.connect()
        # A second store and engine on the same file stand in for another process.
        other = SqliteStore("sqlite:///gw.db", base_dir=tmp_path).open()
        try:
            async with Harness(tmp_path, wfs.deploy, store=other) as h:
                run_id, status = await h.start(wfs.deploy, {"sha": "zzz"})
                assert status == "finished"
            started = await ws.event("node.started", runId=run_id)
            assert started["payload"] == {"runId": run_id, "nodeId": "ship", "state": "in-progress"}
            done = await ws.event("run.completed", runId=run_id)
            assert done["payload"] == {"runId": run_id, "status": "finished"}
            await ws.request("health")
            names = [
                f.get("event") for f in ws.frames if f.get("payload", {}).get("runId") == run_id
            ]
            assert names.count("run.completed") == 1
            assert names[0] == "run.started"
        finally:
            other.close()
        async with http(gw, OP_TOKEN) as c:
            run = (await rpc(c, "getRun", {"runId": run_id})).json()["payload"]
            assert run["workflowKey"] == "deploy" and run["system"] is True  # no gateway stamp
            listed = (await rpc(c, "listRuns", {"filter": {"includeSystem": True}})).json()
            assert run_id in [r["runId"] for r in listed["payload"]]
            hidden = (await rpc(c, "listRuns", {})).json()["payload"]
            assert run_id not in [r["runId"] for r in hidden]
