"""SSE of start_server (SRV-91..96 with D9's contract): resume, fan-out, keep-alive, latency."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import httpx
import pytest

from smithers_core.hosts.server import serve_server
from tests.engine_helpers import engine_options
from tests.fixtures.server.helpers import copy_workflows, parse_sse, read_sse, server
from tests.test_server_api import err

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def all_seqs(s: object, run_id: str) -> list[int]:
    return [e["seq"] for e in s.db.list_events(run_id, -1, 100_000)]  # type: ignore[attr-defined]


async def test_srv91_preamble_and_headers(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("slow")
        async with s.client.stream("GET", f"/v1/runs/{run_id}/events") as r:
            first = b""
            async for chunk in r.aiter_bytes():
                first += chunk
                if len(first) >= 13:
                    break
            assert first.startswith(b"retry: 1000\n\n")
            assert r.headers["content-type"] == "text/event-stream"
            assert r.headers["cache-control"] == "no-cache"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-accel-buffering"] == "no"


async def test_srv92_srv94_frame_format_and_auto_close(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("fast")
        _r, body = await read_sse(s.client, f"/v1/runs/{run_id}/events")
        blocks = [b for b in body.split("\n\n") if b]
        assert blocks[0] == "retry: 1000"
        for i, block in enumerate(blocks[1:]):
            lines = block.split("\n")
            # changed (D9): frames carry an id line (upstream start_server has none)
            assert lines[0] == "event: smithers"
            assert lines[1].startswith("data: ")
            assert lines[2] == f"id: {i}"
            data = json.loads(lines[1][6:])
            assert {"type", "runId", "timestampMs"} <= set(data) and data["runId"] == run_id
        events, _ = parse_sse(body)
        assert events[0].data["type"] == "RunStarted"
        assert events[-1].data["type"] == "RunFinished"
        assert [e.seq for e in events] == all_seqs(s, run_id)


async def test_srv93_after_seq_and_204(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("fast")
        await s.wait_status(run_id, "finished")
        seqs = all_seqs(s, run_id)
        _r, body = await read_sse(s.client, f"/v1/runs/{run_id}/events?afterSeq=2")
        assert [e.seq for e in parse_sse(body)[0]] == [q for q in seqs if q > 2]
        # D9: a terminal run with nothing after the cursor answers 204
        r = await s.client.get(f"/v1/runs/{run_id}/events?afterSeq={seqs[-1]}")
        assert r.status_code == 204 and r.content == b""
        # Last-Event-ID wins over afterSeq
        _r, body = await read_sse(
            s.client,
            f"/v1/runs/{run_id}/events?afterSeq=0",
            headers={"last-event-id": str(seqs[-2])},
        )
        assert [e.seq for e in parse_sse(body)[0]] == [seqs[-1]]


async def test_srv96_invalid_cursor_is_400_before_the_stream(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("slow")
        for url, headers in (
            (f"/v1/runs/{run_id}/events?afterSeq=abc", {}),
            (f"/v1/runs/{run_id}/events?afterSeq=1.5", {}),
            (f"/v1/runs/{run_id}/events", {"last-event-id": "x"}),
        ):
            r = await s.client.get(url, headers=headers)
            err(r, 400, "INVALID_REQUEST")
            assert r.headers["content-type"] == "application/json"


async def test_srv95_keep_alive(tmp_path: Path) -> None:
    async with server(tmp_path, sse_keepalive_ms=100) as s:
        run_id = await s.start("slow")
        buf = ""
        began = time.monotonic()
        with anyio.fail_after(5):
            async with s.client.stream("GET", f"/v1/runs/{run_id}/events") as r:
                async for chunk in r.aiter_text():
                    buf += chunk
                    if buf.count(": keep-alive\n\n") >= 2:
                        break
        assert time.monotonic() - began >= 0.18
        _events, comments = parse_sse(buf + "\n\n")
        assert comments.count(": keep-alive") >= 2


async def test_resume_with_after_seq_and_last_event_id_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("many")
        await s.wait_status(run_id, "waiting-approval")
        url = f"/v1/runs/{run_id}/events"
        # 1. read the first 3 events, then drop the connection
        _r, body = await read_sse(s.client, url, stop_after=3)
        part1 = parse_sse(body)[0][:3]
        assert [e.seq for e in part1] == [0, 1, 2]
        await s.client.post(f"/v1/runs/{run_id}/nodes/gate/approve")
        # 2. resume with afterSeq while the run is executing; stop part-way again
        _r, body = await read_sse(s.client, f"{url}?afterSeq={part1[-1].seq}", stop_after=20)
        part2 = parse_sse(body)[0]
        assert part2 and part2[0].seq == 3
        # 3. resume with Last-Event-ID (it wins over a stale afterSeq) and read to the end
        _r, body = await read_sse(
            s.client, f"{url}?afterSeq=0", headers={"last-event-id": str(part2[-1].seq)}
        )
        part3 = parse_sse(body)[0]
        got = [e.seq for e in part1 + part2 + part3]
        assert got == all_seqs(s, run_id) == list(range(len(got)))
        assert part3[-1].data["type"] == "RunFinished"
        assert s.db.run_row(run_id)["status"] == "finished"


async def test_fifty_concurrent_clients_receive_every_event(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        run_id = await s.start("many")
        await s.wait_status(run_id, "waiting-approval")
        results: list[list[int]] = []
        opened = 0
        all_open = anyio.Event()

        async def client() -> None:
            nonlocal opened
            buf = ""
            async with s.client.stream("GET", f"/v1/runs/{run_id}/events") as r:
                assert r.status_code == 200
                counted = False
                async for chunk in r.aiter_text():
                    buf += chunk
                    if not counted and "\nid: " in buf:
                        counted = True
                        opened += 1
                        if opened == 50:
                            all_open.set()
            results.append([e.seq for e in parse_sse(buf)[0]])

        with anyio.fail_after(25):  # 50 streams on a loaded 2-core machine
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(client)
                await all_open.wait()
                r = await s.client.post(f"/v1/runs/{run_id}/nodes/gate/approve")
                assert r.status_code == 200
        expected = all_seqs(s, run_id)
        assert len(results) == 50
        assert all(seqs == expected for seqs in results)
        assert len(expected) > 90
        for _ in range(100):  # the server closes its side just after the client's EOF
            text = (await s.client.get("/metrics")).text
            if "smithers_sse_streams_active 0.0" in text:
                break
            await anyio.sleep(0.01)
        assert "smithers_sse_streams_active 0.0" in text


async def test_streams_are_woken_by_commits_not_a_poll(tmp_path: Path) -> None:
    # the cross-process poller is set to 5 s: only in-process commit wake-ups are fast
    async with server(tmp_path, sse_poll_ms=5000) as s:
        run_id = await s.start("many")
        await s.wait_status(run_id, "waiting-approval")
        delays: list[float] = []
        buf = ""
        with anyio.fail_after(8):
            async with s.client.stream("GET", f"/v1/runs/{run_id}/events") as r:
                approved = False
                async for chunk in r.aiter_text():
                    buf += chunk
                    now_ms = time.time() * 1000
                    *blocks, buf = buf.split("\n\n")
                    for block in blocks:
                        for line in block.split("\n"):
                            if not line.startswith("data: "):
                                continue
                            event = json.loads(line[6:])
                            if approved:
                                delays.append(now_ms - event["timestampMs"])
                            elif event["type"] == "NodeWaitingApproval":
                                approved = True
                                await s.client.post(f"/v1/runs/{run_id}/nodes/gate/approve")
        assert len(delays) > 50
        delays.sort()
        p95 = delays[int(len(delays) * 0.95) - 1]
        assert p95 < 250, p95


async def test_closing_the_server_ends_open_streams(tmp_path: Path) -> None:
    copy_workflows(tmp_path)
    bodies: list[str] = []
    done = anyio.Event()
    async with httpx.AsyncClient(timeout=10) as client, anyio.create_task_group() as tg:
        async with serve_server(port=0, root_dir=str(tmp_path), options=engine_options()) as srv:
            r = await client.post(f"{srv.url}/v1/runs", json={"workflowPath": "wf/slow.py"})
            run_id = r.json()["runId"]

            async def reader() -> None:
                _r, body = await read_sse(client, f"{srv.url}/v1/runs/{run_id}/events")
                bodies.append(body)
                done.set()

            tg.start_soon(reader)
            deadline = time.monotonic() + 10
            while not srv.app.streams.open and time.monotonic() < deadline:
                await anyio.sleep(0.01)
            assert srv.app.streams.open == {run_id: 1}
            began = time.monotonic()
        # the workflow sleeps 60 s: closing ends the stream without waiting for the run
        # (the bound leaves room for a loaded 2-core machine)
        assert time.monotonic() - began < 5
        with anyio.fail_after(5):
            await done.wait()
    assert "RunStarted" in bodies[0]
