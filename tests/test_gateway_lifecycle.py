"""Gateway lifecycle: many concurrent sockets, close() suspending runs, listen() idempotent."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import anyio
import pytest
import websockets

from tests import stores
from tests.engine_helpers import wait_for
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import OP_TOKEN, TOKENS, http, make_gateway, rpc, running, ws_url

pytestmark = pytest.mark.anyio


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def test_200_concurrent_websocket_clients_call_get_run(tmp_path: Path) -> None:
    _raise_nofile()
    clients = 200
    # Every client is on 127.0.0.1, one peer: its pre-auth cap must admit a whole batch.
    gw = make_gateway(
        tmp_path, tokens=TOKENS, max_pre_auth_connections=64, max_pre_auth_connections_per_peer=32
    )
    async with running(gw), http(gw, OP_TOKEN) as c:
        run_id = (await rpc(c, "launchRun", {"workflow": "deploy"})).json()["payload"]["runId"]
        results: list[str] = []
        opened = anyio.Semaphore(32)  # open in batches below the pre-auth cap (D13)
        all_connected = anyio.Event()
        connected = [0]

        async def client(i: int) -> None:
            async with opened:
                ws = await websockets.connect(ws_url(gw), open_timeout=10)
                await ws.recv()  # connect.challenge
                await ws.send(
                    json.dumps(
                        {
                            "type": "req",
                            "id": "c",
                            "method": "connect",
                            "params": {
                                "minProtocol": 1,
                                "maxProtocol": 1,
                                "client": {"id": f"c{i}", "version": "1", "platform": "test"},
                                "auth": {"token": OP_TOKEN},
                            },
                        }
                    )
                )
                while json.loads(await ws.recv()).get("id") != "c":
                    pass
            try:
                connected[0] += 1
                if connected[0] == clients:
                    all_connected.set()
                await all_connected.wait()  # every socket is open at the same time
                await ws.send(
                    json.dumps(
                        {
                            "type": "req",
                            "id": f"g{i}",
                            "method": "getRun",
                            "params": {"runId": run_id},
                        }
                    )
                )
                while True:
                    frame = json.loads(await ws.recv())
                    if frame.get("id") == f"g{i}":
                        assert frame["ok"] is True
                        results.append(frame["payload"]["runId"])
                        return
            finally:
                await ws.close()

        with anyio.fail_after(25):
            async with anyio.create_task_group() as tg:
                for i in range(clients):
                    tg.start_soon(client, i)
        assert results == [run_id] * clients
        await wait_for(
            lambda: gw.context.sockets.authed == 0 and not gw.context.sockets.connections,
            5,
            "sockets to close",
        )


async def test_close_suspends_running_runs_and_they_resume(tmp_path: Path) -> None:
    wfs.RELEASE.clear()
    gw = make_gateway(tmp_path, tokens=TOKENS)
    gw.register("blocked", wfs.blocked)
    async with running(gw), http(gw, OP_TOKEN) as c:
        run_id = (await rpc(c, "launchRun", {"workflow": "blocked"})).json()["payload"]["runId"]

        async def started() -> bool:
            nodes = (await rpc(c, "listNodeStates", {"runId": run_id})).json()["payload"]
            return any(n["state"] == "in-progress" for n in nodes)

        await wait_for(started, 5, "the task to start")
    # close() suspended the run: still running, no owner, no heartbeat, no RunCancelled.
    store = stores.open_store(tmp_path, "gw.db")
    try:
        row = store.read(
            lambda conn: dict(
                conn.execute("SELECT * FROM _smithers_runs WHERE run_id = ?", (run_id,)).fetchone()
            )
        )
        types = store.read(
            lambda conn: [
                r[0]
                for r in conn.execute(
                    "SELECT type FROM _smithers_events WHERE run_id = ? ORDER BY seq", (run_id,)
                )
            ]
        )
    finally:
        store.close()
    assert row["status"] == "running"
    assert row["runtime_owner_id"] is None and row["heartbeat_at_ms"] is None
    assert "RunCancelled" not in types and "RunFinished" not in types

    # A new gateway on the same store picks the run up again and finishes it.
    wfs.RELEASE.clear()
    gw2 = make_gateway(tmp_path, tokens=TOKENS)
    gw2.register("blocked", wfs.blocked)
    async with running(gw2), http(gw2, OP_TOKEN) as c:
        r = await rpc(c, "resumeRun", {"runId": run_id})
        assert r.json()["payload"] == {"runId": run_id, "status": "resume_requested"}

        async def in_progress() -> bool:
            nodes = (await rpc(c, "listNodeStates", {"runId": run_id})).json()["payload"]
            return any(n["state"] == "in-progress" for n in nodes)

        await wait_for(in_progress, 5, "the task to restart")
        wfs.RELEASE["blocked"].set()

        async def finished() -> bool:
            run = (await rpc(c, "getRun", {"runId": run_id})).json()["payload"]
            return bool(run["status"] == "finished")

        await wait_for(finished, 5, "the resumed run to finish")


async def test_listen_is_idempotent_and_close_twice(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    first = await gw.listen(port=0)
    try:
        assert await gw.listen(port=0) is first
        assert gw.url == first.url
    finally:
        await gw.close()
    await gw.close()
    assert gw.url is None


async def test_close_closes_sockets(tmp_path: Path) -> None:
    from websockets.exceptions import ConnectionClosed

    from tests.gateway_helpers import ws_client

    gw = make_gateway(tmp_path, tokens=TOKENS)
    await gw.listen(port=0)
    try:
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect()
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(gw.close)
                    with pytest.raises(ConnectionClosed) as info:
                        while True:
                            await ws.ws.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1001
    finally:
        await gw.close()
