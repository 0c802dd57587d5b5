"""``streamRunEvents`` over a real socket: replay, resume, live order, gap_resync, epoch,
caps and stream heartbeats (reference 4.6, D10)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import websockets

from tests.engine_helpers import wait_for
from tests.gateway_helpers import (
    OP_TOKEN,
    TOKENS,
    WsClient,
    append_events,
    create_run,
    db_events,
    expected_frames,
    http,
    make_gateway,
    open_stream,
    rpc,
    run_events_until,
    running,
    stream_view,
    ws_client,
    ws_url,
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


async def test_reconnect_after_the_window_was_exceeded_gets_every_event(tmp_path: Path) -> None:
    # Upstream answers run.gap_resync when a cursor predates its in-memory window. Issue 6
    # replaces that: the window only caches, replay falls back to the event table, so a
    # client away longer than event_window_size still gets every event and no gap_resync.
    gw = make_gateway(tmp_path, tokens=TOKENS, event_window_size=5)
    async with running(gw):
        store = gw.runtime.store
        await create_run(store, "r-window")
        for _ in range(6):
            await append_events(store, "r-window", 5)
        await append_events(store, "r-window", 1, finish=True)
        rows = db_events(tmp_path / "gw.db", "r-window")
        count = len(rows)
        assert count == 33
        for after in (0, 1, 17):
            async with ws_client(gw) as ws:
                await open_stream(gw, ws, "r-window", after)
                got = await run_events_until(ws, count)
                assert stream_view(got) == expected_frames(rows)[after:]
                assert got[-1]["payload"]["event"] == "run.completed"
                assert not [f for f in ws.frames if f.get("event") == "run.gap_resync"]


async def test_gap_resync_only_when_events_are_gone(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, event_window_size=5)
    async with running(gw), http(gw, OP_TOKEN) as c:
        store = gw.runtime.store
        await create_run(store, "r-gone")
        for _ in range(4):
            await append_events(store, "r-gone", 5)
        await append_events(store, "r-gone", 1, finish=True)
        count = len(db_events(tmp_path / "gw.db", "r-gone"))
        # D10: production never deletes event rows (the epoch would change); simulate it.
        await store.write(
            lambda tx: tx.execute(
                "DELETE FROM _smithers_events WHERE run_id = 'r-gone' AND seq BETWEEN 1 AND 8"
            )
        )
        record = (await rpc(c, "getRun", {"runId": "r-gone"})).json()["payload"]
        rows = db_events(tmp_path / "gw.db", "r-gone")
        async with ws_client(gw) as ws:
            await open_stream(gw, ws, "r-gone", 1)  # saw stream seq 1 (db seq 0) only
            gap = await ws.event("run.gap_resync")
            assert gap["payload"] == {
                "apiVersion": "v1",
                "type": "GapResync",
                "streamId": gap["payload"]["streamId"],
                "runId": "r-gone",
                "fromSeq": 2,
                "toSeq": 9,
                "snapshot": record,
                "epoch": gw.runtime.db.epoch,
            }
            assert record["runId"] == "r-gone" and record["status"] == "finished"
            got = await run_events_until(ws, count)
            assert stream_view(got) == expected_frames(rows)[1:]
            assert got[0]["payload"]["seq"] == 10
            order = [f.get("event") for f in ws.frames if f.get("type") == "event"]
            assert order.index("run.gap_resync") < order.index("run.event")
        # A cursor after the hole replays without any gap_resync.
        async with ws_client(gw) as ws:
            await open_stream(gw, ws, "r-gone", 9)
            got = await run_events_until(ws, count)
            assert [f["payload"]["seq"] for f in got] == list(range(10, count + 1))
            assert not [f for f in ws.frames if f.get("event") == "run.gap_resync"]
        # A second hole: one gap_resync up to the newest missing seq, then contiguous replay.
        await store.write(
            lambda tx: tx.execute(
                "DELETE FROM _smithers_events WHERE run_id = 'r-gone' AND seq BETWEEN 12 AND 13"
            )
        )
        async with ws_client(gw) as ws:
            await open_stream(gw, ws, "r-gone", 1)
            gap = await ws.event("run.gap_resync")
            assert (gap["payload"]["fromSeq"], gap["payload"]["toSeq"]) == (2, 14)
            got = await run_events_until(ws, count)
            assert [f["payload"]["seq"] for f in got] == list(range(15, count + 1))
            assert len([f for f in ws.frames if f.get("event") == "run.gap_resync"]) == 1
        # Another epoch is another history: gap_resync from seq 1, then live events only.
        async with ws_client(gw) as ws:
            await open_stream(gw, ws, "r-gone", 2, epoch="another-store")
            gap = await ws.event("run.gap_resync")
            assert (gap["payload"]["fromSeq"], gap["payload"]["toSeq"]) == (1, count)
            assert gap["payload"]["snapshot"]["runId"] == "r-gone"


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
        assert beat["payload"]["epoch"] == gw.runtime.db.epoch
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


async def test_stream_over_http_is_invalid_request(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        await create_run(gw.runtime.store, "r-http")
        res = await rpc(c, "streamRunEvents", {"runId": "r-http"})
        assert res.status_code == 400
        assert res.json()["error"]["code"] == "INVALID_REQUEST"
        assert res.json()["error"]["message"] == (
            "streamRunEvents is only supported over websocket connections"
        )


@asynccontextmanager
async def _stalled_client(gw: Any) -> AsyncIterator[WsClient]:
    """A client whose socket stops being read once the test stops calling ``recv``: a tiny
    receive buffer and a one-message client queue, so the gateway's writes block quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    sock.setblocking(False)
    async with websockets.connect(
        ws_url(gw), sock=sock, max_queue=1, open_timeout=5, close_timeout=1
    ) as ws:
        yield WsClient(ws)


async def test_slow_consumer_is_cut_off_while_a_healthy_one_keeps_receiving(
    tmp_path: Path,
) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, run_stream_queue_limit=50)
    async with running(gw):
        store = gw.runtime.store
        await create_run(store, "r-bp")
        async with ws_client(gw) as healthy, _stalled_client(gw) as slow:
            await open_stream(gw, healthy, "r-bp", 1)
            slow_res = await open_stream(gw, slow, "r-bp", 1)
            slow_id = slow_res["payload"]["streamId"]
            # The healthy client reads each chunk before the next is written (it keeps up);
            # the stalled one never reads, so its socket fills and its stream queue grows.
            received: list[dict[str, Any]] = []
            last = 1
            chunks = 0
            while slow_id in gw.run_streams.streams:  # bounded: at most 500 chunks
                assert chunks < 500, "the stalled stream was never cut off"
                await append_events(store, "r-bp", 10, text="x" * 20_000)
                chunks += 1
                last += 10
                received += await run_events_until(healthy, last)
            # The healthy stream goes on after the cut, to the run's end.
            for _ in range(5):
                await append_events(store, "r-bp", 10)
            await append_events(store, "r-bp", 0, finish=True)
            received += await run_events_until(healthy, last + 51)
            rows = db_events(tmp_path / "gw.db", "r-bp")
            assert stream_view(received) == expected_frames(rows)[1:]
            assert [f["payload"]["event"] for f in received].count("run.completed") == 1
            assert gw.run_streams.per_run == {"r-bp": 1}

            # The stalled client, once it reads again: a contiguous prefix, then run.error.
            err = await slow.event("run.error", timeout=30)
            assert err["payload"] == {
                "streamId": slow_id,
                "runId": "r-bp",
                "error": {
                    "version": "v1",
                    "code": "BackpressureDisconnect",
                    "message": "Run event stream outbound queue exceeded 50 frames;"
                    " disconnecting slow consumer.",
                },
                "epoch": gw.runtime.db.epoch,
            }
            seqs = [f["payload"]["seq"] for f in slow.frames if f.get("event") == "run.event"]
            assert seqs == list(range(2, 2 + len(seqs)))
            assert (await slow.request("health"))["ok"] is True  # the socket stays open
            assert not [
                f for f in slow.frames[slow.frames.index(err) :] if f.get("event") == "run.event"
            ]


async def test_a_long_replay_is_paced_not_cut_off(tmp_path: Path) -> None:
    # Replayed events wait in the store until the socket drains, so a healthy client
    # replaying far more than run_stream_queue_limit events is never disconnected.
    gw = make_gateway(tmp_path, tokens=TOKENS, run_stream_queue_limit=4, event_window_size=7)
    async with running(gw):
        store = gw.runtime.store
        await create_run(store, "r-long")
        for _ in range(10):
            await append_events(store, "r-long", 30)
        await append_events(store, "r-long", 0, finish=True)
        rows = db_events(tmp_path / "gw.db", "r-long")
        async with ws_client(gw) as ws:
            await open_stream(gw, ws, "r-long", 0)
            got = await run_events_until(ws, len(rows))
            assert stream_view(got) == expected_frames(rows)
            assert not [f for f in ws.frames if f.get("event") == "run.error"]


async def test_a_stalled_replay_waits_until_live_events_pile_up(tmp_path: Path) -> None:
    # A client that stops reading during a replay is not cut off for the replay itself (the
    # history waits in the store), but once more than run_stream_queue_limit live events are
    # waiting behind the stalled replay, the stream gets BackpressureDisconnect.
    gw = make_gateway(tmp_path, tokens=TOKENS, run_stream_queue_limit=10)
    async with running(gw):
        store = gw.runtime.store
        await create_run(store, "r-stall")
        for _ in range(30):
            await append_events(store, "r-stall", 10, text="y" * 20_000)
        async with _stalled_client(gw) as slow:
            res = await open_stream(gw, slow, "r-stall", 0)
            stream = gw.run_streams.streams[res["payload"]["streamId"]]
            await wait_for(lambda: stream.drained is not None, 10, "the replay to stall")
            assert stream.open
            await append_events(store, "r-stall", 5)
            assert stream.open  # 5 live events waiting: under the limit
            await append_events(store, "r-stall", 6)
            await wait_for(lambda: not stream.open, 5, "the stalled stream to be cut off")
            err = await slow.event("run.error", timeout=30)
            assert err["payload"]["error"]["code"] == "BackpressureDisconnect"
            seqs = [f["payload"]["seq"] for f in slow.frames if f.get("event") == "run.event"]
            assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < 301


async def test_caps_in_upstream_order_with_scope_and_limit(tmp_path: Path) -> None:
    tokens = {**TOKENS, "other": {"role": "operator", "scopes": ["*"], "userId": "user:ann"}}
    gw = make_gateway(
        tmp_path,
        tokens=tokens,
        max_run_streams=3,
        max_run_streams_per_user=2,
        max_run_streams_per_run=1,
    )

    def limited(res: dict[str, Any], scope: str, limit: int) -> bool:
        return bool(res["error"]["code"] == "RateLimited") and (
            res["error"]["scope"],
            res["error"]["limit"],
        ) == (scope, limit)

    async with running(gw):
        for run_id in ("c1", "c2", "c3", "c4"):
            await create_run(gw.runtime.store, run_id)
        async with ws_client(gw) as a, ws_client(gw) as b, ws_client(gw) as c:
            for ws, token in ((a, OP_TOKEN), (b, OP_TOKEN), (c, "other")):
                await ws.recv()
                await ws.connect(token)
            assert (await a.request("streamRunEvents", {"runId": "c1"}))["ok"]
            assert limited(await a.request("streamRunEvents", {"runId": "c1"}), "run", 1)
            assert (await a.request("streamRunEvents", {"runId": "c2"}))["ok"]
            assert limited(await b.request("streamRunEvents", {"runId": "c3"}), "user", 2)
            assert (await c.request("streamRunEvents", {"runId": "c3"}))["ok"]
            assert limited(await c.request("streamRunEvents", {"runId": "c4"}), "global", 3)
            assert gw.run_streams.per_run == {"c1": 1, "c2": 1, "c3": 1}
        await wait_for(lambda: not gw.run_streams.streams, 5, "streams released on close")
        assert gw.run_streams.per_run == {}


async def test_streams_of_one_run_share_one_encoding(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw:
        store = gw.runtime.store
        await create_run(store, "r-share")
        async with ws_client(gw) as a, ws_client(gw) as b:
            await open_stream(gw, a, "r-share", 1)
            await open_stream(gw, b, "r-share", 1)
            await append_events(store, "r-share", 3, finish=True)
            got_a = await run_events_until(a, 5)
            got_b = await run_events_until(b, 5)
        assert [(2 + i) for i in range(4)] == [f["payload"]["seq"] for f in got_a]
        for fa, fb in zip(got_a, got_b, strict=True):
            pa = {k: v for k, v in fa["payload"].items() if k not in ("streamId", "stateVersion")}
            pb = {k: v for k, v in fb["payload"].items() if k not in ("streamId", "stateVersion")}
            assert pa == pb
        assert ("r-share", 4) in gw.run_streams._fragments  # encoded once, reused


async def test_live_streams_of_a_run_share_one_reader(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw:
        store = gw.runtime.store
        await create_run(store, "r-follow")
        streams = gw.run_streams
        async with ws_client(gw) as a, ws_client(gw) as b, ws_client(gw) as c:
            for ws in (a, b, c):
                await open_stream(gw, ws, "r-follow")

            async def all_joined() -> bool:
                follower = streams.followers.get("r-follow")
                return follower is not None and len(follower.members) == 3

            await wait_for(all_joined, 5, "three streams on the run's follower")
            assert list(streams.followers) == ["r-follow"]  # one reader, not three
            for _ in range(3):
                await append_events(store, "r-follow", 40)
            await append_events(store, "r-follow", 1, finish=True)
            last = len(gw.runtime.db.list_events("r-follow", -1, 10_000))
            for ws in (a, b, c):
                got = await run_events_until(ws, last)
                assert [f["payload"]["seq"] for f in got] == list(range(2, last + 1))

            async def follower_gone() -> bool:
                return "r-follow" not in streams.followers

            await wait_for(follower_gone, 5, "the follower of a finished run to stop")
            assert len(streams.streams) == 3  # the streams themselves stay open until closed


class _Socket:
    """Stands in for a connection: records the stream seq of each frame pushed to it."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def push_event(self, name: str, text: str, version: int, after: Any = None) -> None:
        self.seqs.append(json.loads(text)["seq"])


async def test_a_stream_joining_mid_page_gets_the_rest_of_that_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smithers_core.eventhub import StoredEvent
    from smithers_core.gateway import streams as streams_module
    from smithers_core.gateway.streams import RunFollower, RunStream, RunStreams

    ctx = SimpleNamespace(
        sockets=SimpleNamespace(state_version=0),
        settings=SimpleNamespace(run_stream_queue_limit=99),
    )
    streams = RunStreams(ctx)  # type: ignore[arg-type]
    early = RunStream("early", "r", _Socket(), "u", cursor=-1)  # type: ignore[arg-type]
    # "late" read events 0..4 on its own and joins while the follower pauses mid-page
    late = RunStream("late", "r", _Socket(), "u", cursor=4)  # type: ignore[arg-type]
    follower = RunFollower("r", -1, {"early": early})
    pauses = 0

    async def pause() -> None:
        nonlocal pauses
        pauses += 1
        if pauses == 1:
            assert follower.cursor < late.cursor  # so _join would admit it now
            follower.members["late"] = late

    monkeypatch.setattr(streams_module, "YIELD_EVERY", 1)
    monkeypatch.setattr(streams_module, "pause", pause)
    page = [StoredEvent("r", seq, "NodeOutput", 0, '{"type":"NodeOutput"}') for seq in range(10)]
    await streams._fan_out(follower, page, "}", 99)
    assert early.conn.seqs == list(range(1, 11))  # type: ignore[attr-defined]
    assert late.conn.seqs == list(range(6, 11))  # type: ignore[attr-defined]
    assert follower.cursor == 9 and pauses >= 1
