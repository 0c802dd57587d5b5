"""Runs executed by another process sharing the store reach the gateway's sockets through
the EventHub's poller (reference 10, D10): same mapping, one run.completed, no history."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from websockets.exceptions import ConnectionClosed

from tests import stores
from tests.engine_helpers import Harness, wait_for
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import (
    OP_TOKEN,
    TOKENS,
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
)

pytestmark = pytest.mark.anyio


async def test_events_of_another_store_are_broadcast(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, out_of_process_event_bridge_poll_ms=30)
    async with running(gw), ws_client(gw) as ws:
        await ws.recv()
        await ws.connect()
        # A second store and engine on the same file stand in for another process.
        other = stores.open_store(tmp_path, "gw.db")
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


STREAMED_WF = """
import time
from pathlib import Path
from pydantic import BaseModel
from smithers_core import Seq, Task, workflow

HERE = Path(__file__).parent

class Input(BaseModel):
    lines: int = 10
    gates: list[str] = []

class Out(BaseModel):
    n: int

def work(t):
    n = 0
    for phase, gate in enumerate([None, *t.input.gates]):
        if gate is not None:
            deadline = time.time() + 30
            while not (HERE / gate).exists() and time.time() < deadline:
                time.sleep(0.01)
        for i in range(t.input.lines):
            t.log(f"{phase}:{i}")
            n += 1
    return Out(n=n)

@workflow("streamed", input=Input)
def streamed(ctx):
    return Seq(Task("work", work, output=Out))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}
    env.update(SMITHERS_TIMER_TICK_MS="50", SMITHERS_CANCEL_POLL_MS="50")
    return env


async def _smithers_up(tmp_path: Path, run_id: str, body: dict[str, Any]) -> Process:
    """``smithers up wf.py`` in a subprocess on the gateway's SQLite file."""
    (tmp_path / "wf.py").write_text(STREAMED_WF)
    return await anyio.open_process(
        [
            sys.executable,
            "-m",
            "smithers_core",
            "up",
            "wf.py",
            "--quiet",
            "--run-id",
            run_id,
            "--input",
            json.dumps(body),
            "--db",
            stores.abs_url(tmp_path, "gw.db"),
        ],
        cwd=tmp_path,
        env=_env(),
    )


async def _finish(proc: Process) -> None:
    with anyio.fail_after(30):
        code = await proc.wait()
    assert code == 0, (await proc.stderr.receive(65536)).decode() if proc.stderr else code


async def test_a_run_of_smithers_up_streams_to_a_websocket_client_once(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, out_of_process_event_bridge_poll_ms=30)
    async with running(gw), ws_client(gw) as watcher, ws_client(gw) as streamer:
        await watcher.recv()
        await watcher.connect()  # unfiltered: raw broadcasts of every run
        await streamer.recv()
        await streamer.connect(subscribe=["r-up"])
        proc = await _smithers_up(tmp_path, "r-up", {"lines": 25, "gates": ["go"]})
        try:
            # The run exists once its first event was bridged; the stream starts from seq 0
            # and follows the run live once the gate opens.
            await watcher.event("run.started", timeout=30, runId="r-up")
            res = await streamer.request("streamRunEvents", {"runId": "r-up", "afterSeq": 0})
            assert res["ok"] is True, res
            (tmp_path / "go").write_text("1")
            got: list[dict[str, Any]] = []
            while not got or got[-1]["payload"]["event"] != "run.completed":
                frame = await streamer.wait_for(lambda f: f.get("event") == "run.event", 30)
                got.append(frame)
        finally:
            (tmp_path / "go").write_text("1")
            await _finish(proc)
        rows = db_events(tmp_path / "gw.db", "r-up")
        assert stream_view(got) == expected_frames(rows)
        assert sum(1 for v in stream_view(got) if v[1] == "task.output") == 50
        assert not [f for f in streamer.frames if f.get("event") in ("run.gap_resync", "run.error")]
        # The unfiltered watcher got each persisted event once, as a raw broadcast.
        await watcher.event("run.completed", timeout=10, runId="r-up")
        raw = [f for f in watcher.frames if f.get("payload", {}).get("runId") == "r-up"]
        assert [(f["event"], f["payload"]) for f in raw] == [
            (n, p) for _, n, p in expected_frames(rows)
        ]


async def test_gateway_restart_mid_run_resumes_the_cursor_without_loss(tmp_path: Path) -> None:
    options: dict[str, Any] = {"tokens": TOKENS, "out_of_process_event_bridge_poll_ms": 30}
    proc = await _smithers_up(tmp_path, "r-re", {"lines": 10, "gates": ["down", "up"]})
    got: list[dict[str, Any]] = []
    try:
        gw_a = make_gateway(tmp_path, **options)
        async with running(gw_a):
            epoch = gw_a.runtime.db.epoch
            async with ws_client(gw_a) as ws:
                with anyio.fail_after(30):
                    while gw_a.runtime.db.run_row("r-re") is None:
                        await gw_a.runtime.hub.wait("r-re", 0.05)
                await open_stream(gw_a, ws, "r-re", 0)
                while not got or got[-1]["payload"]["payload"].get("output") != "0:9":
                    got.append(await ws.wait_for(lambda f: f.get("event") == "run.event", 30))
                await gw_a.close()  # the client's socket drops under it
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        # Gateway A is gone; the run goes on in its own process meanwhile.
        (tmp_path / "down").write_text("1")
        with anyio.fail_after(30):
            while sum(1 for r in db_events(tmp_path / "gw.db", "r-re") if '"1:9"' in r[1]) == 0:
                await anyio.sleep(0.02)  # no gateway is up to await on: poll the file, bounded
        gw_b = make_gateway(tmp_path, **options)
        async with running(gw_b):
            assert gw_b.runtime.db.epoch == epoch
            async with ws_client(gw_b) as ws:
                cursor = got[-1]["payload"]["seq"]
                res = await open_stream(gw_b, ws, "r-re", cursor, epoch=epoch)
                assert res["payload"]["currentSeq"] > cursor
                (tmp_path / "up").write_text("1")  # the rest streams live from gateway B
                while got[-1]["payload"]["event"] != "run.completed":
                    got.append(await ws.wait_for(lambda f: f.get("event") == "run.event", 30))
                assert not [f for f in ws.frames if f.get("event") == "run.gap_resync"]
    finally:
        for gate in ("down", "up"):
            (tmp_path / gate).write_text("1")
        await _finish(proc)
    rows = db_events(tmp_path / "gw.db", "r-re")
    assert stream_view(got) == expected_frames(rows)
    assert sum(1 for v in stream_view(got) if v[1] == "task.output") == 30


async def test_bridge_off_stops_raw_broadcasts_of_other_processes_not_streams(
    tmp_path: Path,
) -> None:
    gw = make_gateway(
        tmp_path,
        tokens=TOKENS,
        out_of_process_event_bridge=False,
        out_of_process_event_bridge_poll_ms=30,
        event_window_size=5,
        max_run_windows=7,
        terminal_window_grace_ms=60_000,
    )
    async with running(gw), ws_client(gw) as watcher, ws_client(gw) as streamer:
        hub = gw.runtime.hub
        assert (hub.poll_ms, hub.windows.size, hub.windows.max_windows) == (30, 5, 7)
        assert hub.windows.grace_s == 60
        await watcher.recv()
        await watcher.connect()
        other = stores.open_store(tmp_path, "gw.db")
        try:
            async with Harness(tmp_path, wfs.deploy, store=other) as h:
                run_id, status = await h.start(wfs.deploy, {"sha": "off"})
                assert status == "finished"
        finally:
            other.close()
        # The poller fed the run (its window exists), but no tap broadcast it raw ...
        await wait_for(lambda: hub.windows.first_seq(run_id) is not None, 5, "the poller")
        assert (await watcher.request("health"))["ok"] is True
        assert not [f for f in watcher.frames if f.get("payload", {}).get("runId") == run_id]
        # ... while streamRunEvents reads the store and streams it all.
        await open_stream(gw, streamer, run_id, 0)
        rows = db_events(tmp_path / "gw.db", run_id)
        got = await run_events_until(streamer, len(rows))
        assert stream_view(got) == expected_frames(rows)
