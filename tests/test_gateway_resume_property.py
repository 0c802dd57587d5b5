"""Property test over one real gateway per module (issue 6, D12): for random event sequences
and random disconnect points, a client that reconnects with its last seen seq receives
exactly the persisted sequence, in order, with no gap_resync (compared against the
``_smithers_events`` table).

The gateway runs on its own event loop in a thread (like ``test_gateway_fuzz``); each example
runs its clients and producers on that loop through the portal, so the tests here are
synchronous functions and need no anyio marker. The window is tiny, so replays cross from
the event table into the in-memory window.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from smithers_core.gateway import Gateway
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Seq, Task
from tests import stores
from tests.gateway_helpers import (
    OP_TOKEN,
    TOKENS,
    WsClient,
    append_events,
    create_run,
    expected_frames,
    http,
    make_gateway,
    open_stream,
    rpc,
    stream_view,
    ws_client,
)


class LogInput(BaseModel):
    lines: int = 1


class Logged(BaseModel):
    n: int


def _log_lines(t):  # type: ignore[no-untyped-def]
    for i in range(t.input.lines):
        t.log(f"line {i}")
    return Logged(n=t.input.lines)


@workflow("logger", input=LogInput)
def logger(ctx):  # type: ignore[no-untyped-def]
    return Seq(Task("log", _log_lines, output=Logged))


@dataclass
class Served:
    gw: Gateway
    portal: anyio.from_thread.BlockingPortal


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One gateway per store for the whole module, on its own event loop in a thread (the
    module is not in ``BOTH_STORES``: this fixture is what runs it on both)."""
    tmp: Path = tmp_path_factory.mktemp("resume")
    db = stores.module_url(request, "gw.db")
    ready = threading.Event()
    gateways: list[Gateway] = []
    stop: list[anyio.Event] = []

    async def serve() -> None:
        gw = make_gateway(tmp, tokens=TOKENS, event_window_size=8, db=db)
        gw.register("logger", logger)
        await gw.listen(port=0)
        gateways.append(gw)
        done = anyio.Event()
        stop.append(done)
        ready.set()
        try:
            await done.wait()
        finally:
            await gw.close()

    with anyio.from_thread.start_blocking_portal() as portal:
        future = portal.start_task_soon(serve)
        assert ready.wait(10)
        yield Served(gateways[0], portal)
        portal.call(stop[0].set)
        future.result(10)


async def _read_until(ws: WsClient, got: list[dict[str, Any]], stop_after: int | None) -> bool:
    """Append this connection's ``run.event`` frames to ``got``; stop after ``stop_after`` of
    them (a disconnect point) or at ``run.completed``. True once the run is complete."""
    n = 0
    while stop_after is None or n < stop_after:
        frame = await ws.recv(10)
        name = frame.get("event")
        assert name not in ("run.gap_resync", "run.error"), frame
        if name != "run.event":
            continue
        got.append(frame)
        n += 1
        if frame["payload"]["event"] == "run.completed":
            return True
    return False


async def _client(gw: Gateway, run_id: str, points: list[int]) -> list[dict[str, Any]]:
    """Connect, read, drop the socket at each disconnect point, reconnect with the last seen
    seq; the last connection reads to the end of the run."""
    got: list[dict[str, Any]] = []
    stops: list[int | None] = [*points, None]
    for stop_after in stops:
        cursor = got[-1]["payload"]["seq"] if got else 0
        async with ws_client(gw) as ws:
            await open_stream(gw, ws, run_id, cursor, epoch=gw.runtime.db.epoch)
            if await _read_until(ws, got, stop_after):
                return got
    raise AssertionError("unreachable: the last connection reads to the end")


chunks = st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=12)
disconnects = st.lists(st.integers(min_value=1, max_value=25), max_size=4)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    source=st.sampled_from(["store", "workflow"]),
    sizes=chunks,
    points=disconnects,
    before=st.integers(min_value=0, max_value=3),
)
def test_reconnecting_with_the_last_seen_seq_yields_exactly_the_persisted_sequence(
    served: Served, source: str, sizes: list[int], points: list[int], before: int
) -> None:
    gw = served.gw

    async def scenario() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        with anyio.fail_after(30):
            if source == "workflow":
                async with http(gw, OP_TOKEN) as c:
                    res = await rpc(
                        c, "launchRun", {"workflow": "logger", "input": {"lines": sum(sizes)}}
                    )
                    run_id = res.json()["payload"]["runId"]
                got = await _client(gw, run_id, points)
            else:
                run_id = "prop-" + uuid.uuid4().hex
                store = gw.runtime.store
                await create_run(store, run_id)
                for size in sizes[:before]:  # some history exists before the first connect
                    await append_events(store, run_id, size)

                async def produce() -> None:
                    for size in sizes[before:]:
                        await append_events(store, run_id, size)
                    await append_events(store, run_id, 0, finish=True)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(produce)
                    got = await _client(gw, run_id, points)
        rows = await gw.runtime.store.aread(
            lambda c: [
                (int(r[0]), str(r[1]))
                for r in c.execute(
                    "SELECT seq, payload_json FROM _smithers_events WHERE run_id = ? ORDER BY seq",
                    (run_id,),
                )
            ]
        )
        assert stream_view(got) == expected_frames(rows)
        return got

    got = served.portal.call(scenario)
    seqs = [f["payload"]["seq"] for f in got]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [f["payload"]["event"] for f in got].count("run.completed") == 1
