"""The hosts' WebSocket protocol (http/websocket_protocol.py): a lighter idle socket on
uvicorn's sansio protocol, and permessage-deflate without context takeover when turned on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets

from smithers_core.http.binding import serve_app
from smithers_core.http.websocket_protocol import Flag, Inbox
from tests.gateway_helpers import TOKENS, make_gateway, running, ws_client

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_inbox_keeps_order_and_wakes_a_waiting_getter() -> None:
    inbox = Inbox()
    assert inbox.empty()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert await inbox.get() == 1 and await inbox.get() == 2 and inbox.empty()
    got: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def getter() -> None:
            got.append(await inbox.get())

        tg.start_soon(getter)
        tg.start_soon(getter)
        await anyio.wait_all_tasks_blocked()
        inbox.put_nowait("a")
        inbox.put_nowait("b")
    assert sorted(got) == ["a", "b"] and inbox.empty()


async def test_inbox_get_cancelled_loses_nothing() -> None:
    inbox = Inbox()
    with anyio.move_on_after(0.01):
        await inbox.get()
    inbox.put_nowait("kept")
    assert inbox._waiters is None  # nothing held once nobody waits
    assert await inbox.get() == "kept"
    # woken and cancelled in the same iteration: the item stays for the next getter
    task = asyncio.ensure_future(inbox.get())
    await anyio.wait_all_tasks_blocked()
    inbox.put_nowait("x")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await inbox.get() == "x"


async def test_flag_waits_until_set() -> None:
    flag = Flag(True)
    assert flag.is_set() and await flag.wait()
    flag.clear()
    assert not flag.is_set()
    done = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def waiter() -> None:
            await flag.wait()
            done.set()

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()
        flag.set()
    assert done.is_set() and flag._waiters is None
    flag.clear()
    with anyio.move_on_after(0.01):
        await flag.wait()
    assert flag._waiters is None


async def test_accepted_socket_drops_the_handshake() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()
        proto = send.__self__
        assert hasattr(proto, "response")  # needed until the accept is written
        request = proto.request
        assert len(request.headers) > 0
        await send({"type": "websocket.accept"})
        seen.update(
            headers=len(request.headers),
            request=hasattr(proto, "request"),
            response=hasattr(proto, "response"),
            queue=type(proto.queue).__name__,
            writable=type(proto.writable).__name__,
        )
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"].upper()})
        assert (await receive())["type"] == "websocket.disconnect"

    async with anyio.create_task_group() as tg:
        bound = await serve_app(tg, app, lifespan="off")
        try:
            url = f"ws://127.0.0.1:{bound.port}/"
            async with websockets.connect(url, open_timeout=5) as ws:
                await ws.send("hello")
                with anyio.fail_after(5):
                    assert await ws.recv() == "HELLO"
        finally:
            await bound.close(grace_s=5)
    assert seen == {
        "headers": 0,  # websockets' parser keeps the request object; its headers are freed
        "request": False,
        "response": False,
        "queue": "Inbox",
        "writable": "Flag",
    }


async def test_deflate_on_is_negotiated_without_context_takeover(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, ws_per_message_deflate=True)
    async with running(gw), ws_client(gw) as ws:
        header = ws.ws.response.headers["sec-websocket-extensions"]
        assert "permessage-deflate" in header
        assert "server_no_context_takeover" in header
        assert "client_no_context_takeover" in header
        (ext,) = ws.ws.protocol.extensions
        assert ext.local_no_context_takeover and ext.remote_no_context_takeover
        await ws.recv()  # challenge
        hello = await ws.connect()
        assert hello["ok"] is True
        # compressible frames both ways, several in a row (no shared window to rely on)
        for i in range(3):
            res = await ws.request("getRun", {"runId": "x" * 2000 + str(i)})
            assert res["ok"] is False and json.dumps(res)


async def test_deflate_off_declines_a_client_offer(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw), ws_client(gw, compression="deflate") as ws:
        assert ws.ws.protocol.extensions == []
        assert "sec-websocket-extensions" not in ws.ws.response.headers
        await ws.recv()
        assert (await ws.connect())["ok"] is True
