"""``GET /v1/api/stream`` (reference 9.3): ``change`` events naming collections, coalescing,
heartbeats, resuming with ``Last-Event-ID`` / ``lastEventId``, ``reset`` when the id predates
the ring, the per-subscriber queue bound, the 429 caps, runs of another process, shutdown."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from smithers_rest.stream import ChangeStream, StreamLimits

from tests import stores
from tests.engine_helpers import Harness
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import http, running
from tests.rest_helpers import SseReader, open_changes, rest_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

CRON = {"workflow": "deploy", "pattern": "0 8 * * *"}


async def test_a_launch_produces_a_change_naming_runs(tmp_path: Path) -> None:
    async with running(rest_gateway(tmp_path)) as gw, open_changes(gw) as changes:
        opening = await changes.next()
        assert opening.event == "heartbeat" and opening.data == {"seq": 0}
        assert opening.comments == ["heartbeat"]
        headers = changes.response.headers
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert headers["cache-control"] == "no-cache, no-transform"
        assert headers["x-accel-buffering"] == "no"
        assert headers["x-smithers-api-version"] == "v1"
        async with http(gw, "op-token") as op:
            answer = (await op.post("/v1/api/runs", json={"workflow": "deploy"})).json()
        change = await changes.until("change")
        assert change.id == change.data["seq"] == answer["seq"]
        assert "runs" in change.data["collections"]
        assert change.data["collections"] == sorted(change.data["collections"])


async def test_changes_are_coalesced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMITHERS_REST_STREAM_COALESCE_MS", "1000")
    async with running(rest_gateway(tmp_path)) as gw, open_changes(gw) as changes:
        await changes.until("heartbeat")
        async with http(gw, "op-token") as op:
            first = (await op.post("/v1/api/crons", json={**CRON, "cronId": "a"})).json()
            second = (await op.post("/v1/api/crons", json={**CRON, "cronId": "b"})).json()
            assert first["seq"] == second["seq"] == 1
            change = await changes.until("change")
            assert change.data == {"seq": 1, "collections": ["crons"]}
            # a change made over WebSocket RPC or HTTP RPC is reported the same way
            await op.post("/v1/rpc/cronDelete", json={"cronId": "a"})
            assert (await changes.until("change")).data == {"seq": 2, "collections": ["crons"]}


async def test_heartbeats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMITHERS_REST_STREAM_HEARTBEAT_MS", "100")
    async with running(rest_gateway(tmp_path)) as gw, open_changes(gw) as changes:
        for _ in range(3):
            beat = await changes.next(timeout=2)
            assert beat.event == "heartbeat" and beat.comments == ["heartbeat"]
            assert beat.data == {"seq": 0} and beat.id is None


async def test_resume_after_a_dropped_connection(tmp_path: Path) -> None:
    async with running(rest_gateway(tmp_path)) as gw, http(gw, "op-token") as op:
        async with open_changes(gw) as changes:
            await changes.until("heartbeat")
            await op.post("/v1/api/crons", json={**CRON, "cronId": "a"})
            seen = await changes.until("change")
        # disconnected: two more changes happen (another client sees them)
        async with open_changes(gw) as watcher:
            await watcher.until("heartbeat")
            await op.post("/v1/api/crons", json={**CRON, "cronId": "b"})
            assert (await watcher.until("change")).id == (seen.id or 0) + 1
            await op.delete("/v1/api/crons/a")
            last = await watcher.until("change")
        assert last.id == (seen.id or 0) + 2
        for headers, url in (
            ({"Last-Event-ID": str(seen.id)}, "/v1/api/stream"),
            ({}, f"/v1/api/stream?lastEventId={seen.id}"),
        ):
            async with (
                http(gw, "op-token", headers=headers) as client,
                client.stream("GET", url) as response,
            ):
                reader = SseReader(response)
                replayed = [await reader.next(), await reader.next()]
                assert [(e.event, e.id) for e in replayed] == [
                    ("change", seen.id + 1),  # type: ignore[operator]
                    ("change", last.id),
                ]
                assert (await reader.next()).event == "heartbeat"
        # an id that is current replays nothing
        async with open_changes(gw, **{"Last-Event-ID": str(last.id)}) as current:
            assert (await current.next()).event == "heartbeat"


async def test_reset_when_the_id_predates_the_ring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMITHERS_REST_STREAM_RING_FRAMES", "2")
    async with running(rest_gateway(tmp_path)) as gw, http(gw, "op-token") as op:
        async with open_changes(gw) as changes:
            await changes.until("heartbeat")
            for n in range(4):
                await op.post("/v1/api/crons", json={**CRON, "cronId": f"c{n}"})
                assert (await changes.until("change")).id == n + 1
        for stale in ("1", "0", "99"):  # before the ring (frames 3 and 4), or from the future
            async with open_changes(gw, **{"Last-Event-ID": stale}) as resumed:
                reset = await resumed.next()
                assert (reset.event, reset.data, reset.id) == ("reset", {"seq": 4}, 4)
                assert (await resumed.next()).event == "heartbeat"
        async with open_changes(gw, **{"Last-Event-ID": "2"}) as resumed:
            assert [(await resumed.next()).id for _ in range(2)] == [3, 4]
        for bad in ("-1", "abc", "1.5"):
            response = await op.get("/v1/api/stream", headers={"Last-Event-ID": bad})
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "INVALID_REQUEST"
        response = await op.get("/v1/api/stream?lastEventId=x")
        assert response.status_code == 400


def test_an_overflowing_subscriber_is_reset() -> None:
    """A queue past 256 frames (here 3) or 64 KiB is cleared and holds one ``reset``."""

    async def main() -> None:
        stream = ChangeStream(StreamLimits(queue_frames=3, queue_bytes=10_000))
        stream.running = True
        sub = stream.admit("u", None)
        for _ in range(3):
            stream.mark(frozenset({"runs"}))
            stream.flush()
        assert len(sub.frames) == 3
        stream.mark(frozenset({"runs"}))
        stream.flush()
        assert list(sub.frames) == [b'id: 4\nevent: reset\ndata: {"seq":4}\n\n']
        big = ChangeStream(StreamLimits(queue_bytes=200))
        big.running = True
        slow = big.admit("u", None)
        for _ in range(4):  # each change frame is ~60 bytes
            big.mark(frozenset({"runs", "nodes"}))
            big.flush()
        assert slow.queued_bytes <= 200 and b"reset" in b"".join(slow.frames)
        await stream.stop()
        await big.stop()

    anyio.run(main)


async def test_subscriber_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (StreamLimits().max_streams, StreamLimits().max_per_user) == (256, 32)
    assert StreamLimits().max_per_request_id == 2
    monkeypatch.setenv("SMITHERS_REST_STREAM_MAX_STREAMS", "4")
    monkeypatch.setenv("SMITHERS_REST_STREAM_MAX_PER_USER", "3")

    async def refused(token: str, scope: str, limit: int, **headers: str) -> None:
        async with http(gw, token, headers=headers) as client:
            response = await client.get("/v1/api/stream")
        assert response.status_code == 429
        assert response.json() == {
            "ok": False,
            "error": {
                "code": "RateLimited",
                "message": f"Gateway SSE subscriber limit reached ({scope} cap of {limit}).",
                "details": {"scope": scope, "limit": limit},
            },
        }

    async with running(rest_gateway(tmp_path)) as gw:
        tab = {"x-request-id": "tab-1"}
        async with open_changes(gw, **tab), open_changes(gw, **tab):
            await refused("op-token", "request", 2, **tab)
            async with open_changes(gw):
                await refused("op-token", "user", 3)
                async with open_changes(gw, "other"):
                    await refused("reader", "global", 4)
            # one closed: room again
            async with open_changes(gw, "reader") as again:
                assert (await again.next()).event == "heartbeat"
        async with http(gw, "crons-only") as client:
            response = await client.get("/v1/api/stream")
        assert response.status_code == 403
        assert response.json()["error"] == {
            "code": "FORBIDDEN",
            "message": "Missing required scope run:read for /v1/api/stream",
            "details": {"requiredScope": "run:read"},
        }


async def test_runs_of_another_process_appear(tmp_path: Path) -> None:
    gw = rest_gateway(tmp_path, out_of_process_event_bridge_poll_ms=30)
    async with running(gw), open_changes(gw) as changes:
        await changes.until("heartbeat")
        # a second store and engine on the same file stand in for another process
        other = stores.open_store(tmp_path, "gw.db")
        try:
            async with Harness(tmp_path, wfs.deploy, store=other) as h:
                _run_id, status = await h.start(wfs.deploy, {"sha": "zzz"})
                assert status == "finished"
        finally:
            other.close()
        collections: set[str] = set()
        with anyio.fail_after(5):
            while "runs" not in collections:
                collections |= set((await changes.until("change")).data["collections"])
        assert {"run_events", "nodes"} <= collections


async def test_closing_the_gateway_ends_open_streams(tmp_path: Path) -> None:
    gw = rest_gateway(tmp_path)
    await gw.listen(port=0)
    try:
        async with open_changes(gw) as changes:
            await changes.until("heartbeat")
            with anyio.fail_after(10):
                await gw.close()
            with pytest.raises(StopAsyncIteration):
                with anyio.fail_after(5):
                    await changes.next()
    finally:
        await gw.close()
