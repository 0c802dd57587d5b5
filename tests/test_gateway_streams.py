"""``streamRunEvents`` over a real socket: replay, resume, live order, gap_resync, epoch,
caps and stream heartbeats (reference 4.6, D10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.engine_helpers import wait_for
from tests.gateway_helpers import (
    OP_TOKEN,
    TOKENS,
    WsClient,
    http,
    make_gateway,
    rpc,
    running,
    ws_client,
)

pytestmark = pytest.mark.anyio


async def _finished_run(gw: Any) -> tuple[str, int]:
    async with http(gw, OP_TOKEN) as c:
        run_id = (await rpc(c, "launchRun", {"workflow": "deploy"})).json()["payload"]["runId"]

        async def done() -> bool:
            run = (await rpc(c, "getRun", {"runId": run_id})).json()["payload"]
            return bool(run["status"] == "finished")

        await wait_for(done, 5, "run to finish")
    count = len(gw.runtime.db.list_events(run_id, -1, 10_000))
    return run_id, count


async def _stream_events(ws: WsClient, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        out.append(await ws.event("run.event"))
    return out


async def test_replay_and_resume(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw:
        run_id, count = await _finished_run(gw)
        epoch = gw.runtime.db.epoch
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect(OP_TOKEN, subscribe=[run_id])
            res = await ws.request("streamRunEvents", {"runId": run_id, "afterSeq": 0})
            sub = res["payload"]
            assert sub == {
                "streamId": sub["streamId"],
                "runId": run_id,
                "afterSeq": 0,
                "currentSeq": count,
                "epoch": epoch,
            }
            events = await _stream_events(ws, count)
            assert [e["payload"]["seq"] for e in events] == list(range(1, count + 1))
            first = events[0]["payload"]
            assert first["type"] == "RunEvent" and first["apiVersion"] == "v1"
            assert first["streamId"] == sub["streamId"] and first["epoch"] == epoch
            assert first["event"] == "run.started" and first["runId"] == run_id
            last = events[-1]["payload"]
            assert last["event"] == "run.completed"
            assert last["payload"] == {"runId": run_id, "status": "finished"}

        # Reconnect and resume after seq 3: only the rest is replayed.
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect(OP_TOKEN, subscribe=[run_id])
            await ws.request("streamRunEvents", {"runId": run_id, "afterSeq": 3, "epoch": epoch})
            events = await _stream_events(ws, count - 3)
            assert [e["payload"]["seq"] for e in events] == list(range(4, count + 1))
            assert not [f for f in ws.frames if f.get("event") == "run.gap_resync"]


async def test_gap_resync_for_old_cursor_and_other_epoch(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS, event_window_size=3)) as gw:
        run_id, count = await _finished_run(gw)
        assert count > 4
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect()
            await ws.request("streamRunEvents", {"runId": run_id, "afterSeq": 0})
            gap = await ws.event("run.gap_resync")
            assert gap["payload"]["fromSeq"] == 1 and gap["payload"]["toSeq"] == count - 3
            assert gap["payload"]["type"] == "GapResync"
            assert gap["payload"]["snapshot"]["runId"] == run_id
            assert gap["payload"]["snapshot"]["workflowKey"] == "deploy"
            events = await _stream_events(ws, 3)
            assert [e["payload"]["seq"] for e in events] == [count - 2, count - 1, count]
            # Frames arrive strictly as gap_resync, then replay.
            order = [f.get("event") for f in ws.frames if f.get("type") == "event"]
            assert order.index("run.gap_resync") < order.index("run.event")

        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect()
            await ws.request("streamRunEvents", {"runId": run_id, "afterSeq": 2, "epoch": "old"})
            gap = await ws.event("run.gap_resync")
            assert gap["payload"]["fromSeq"] == 1 and gap["payload"]["toSeq"] == count


async def test_live_events_arrive_only_on_the_stream(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, stream_heartbeat_ms=50)
    async with running(gw), http(gw, OP_TOKEN) as c, ws_client(gw) as ws:
        await ws.recv()
        await ws.connect()
        run_id = (await rpc(c, "launchRun", {"workflow": "gated"})).json()["payload"]["runId"]
        await ws.event("approval.requested", runId=run_id)
        res = await ws.request("streamRunEvents", {"runId": run_id})
        assert res["payload"]["afterSeq"] is None
        current = res["payload"]["currentSeq"]
        beat = await ws.event("run.heartbeat")
        assert beat["payload"]["streamId"] == res["payload"]["streamId"]
        assert beat["payload"]["type"] == "Heartbeat"
        mark = len(ws.frames)
        await rpc(c, "submitApproval", {"runId": run_id, "nodeId": "gate", "approved": True})
        decided = await ws.wait_for(
            lambda f: f.get("event") == "run.event" and f["payload"]["event"] == "approval.decided"
        )
        assert decided["payload"]["seq"] > current
        assert decided["payload"]["payload"]["approved"] is True
        # The raw broadcast of this run is not sent to a connection that streams it.
        later = ws.frames[mark:]
        assert not [
            f
            for f in later
            if f.get("event") not in ("run.event", "run.heartbeat", "tick")
            and f.get("payload", {}).get("runId") == run_id
        ]


async def test_stream_errors_and_caps(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, max_run_streams_per_connection=1)
    async with running(gw):
        run_id, count = await _finished_run(gw)
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect()
            res = await ws.request("streamRunEvents", {})
            assert res["error"]["code"] == "InvalidRunId"
            res = await ws.request("streamRunEvents", {"runId": run_id, "afterSeq": -1})
            assert res["error"]["code"] == "SeqOutOfRange"
            res = await ws.request("streamRunEvents", {"runId": run_id, "afterSeq": count + 1})
            assert res["error"] == {
                "version": "v1",
                "code": "SeqOutOfRange",
                "message": f"afterSeq {count + 1} is newer than current seq {count}",
            }
            res = await ws.request("streamRunEvents", {"runId": "ghost"})
            assert res["error"]["code"] == "RunNotFound"
            assert (await ws.request("streamRunEvents", {"runId": run_id}))["ok"] is True
            res = await ws.request("streamRunEvents", {"runId": run_id})
            assert res["error"] == {
                "version": "v1",
                "code": "RateLimited",
                "message": "Gateway run-event subscriber limit reached (connection cap of 1).",
                "scope": "connection",
                "limit": 1,
            }
        await wait_for(lambda: not gw.run_streams.streams, 5, "streams released on close")


async def test_slow_stream_consumer_is_disconnected(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, run_stream_queue_limit=2)
    async with running(gw):
        run_id, _count = await _finished_run(gw)
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect()
            res = await ws.request("streamRunEvents", {"runId": run_id, "afterSeq": 0})
            err = await ws.event("run.error")
            assert err["payload"]["streamId"] == res["payload"]["streamId"]
            assert err["payload"]["error"]["code"] == "BackpressureDisconnect"
            assert err["payload"]["error"]["message"] == (
                "Run event stream outbound queue exceeded 2 frames; disconnecting slow consumer."
            )
            # The socket stays open; the stream is gone.
            assert (await ws.request("health"))["ok"] is True
            assert not gw.run_streams.streams
