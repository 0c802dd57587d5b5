"""``listen(path=...)``: the gateway on a Unix socket (reference 1.2) with the same auth as TCP,
an owner-only socket file, stale files replaced, live sockets and other files left alone, and
the file removed on stop only while it is still ours."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets

from smithers_core.errors import SmithersError
from tests import stores
from tests.gateway_helpers import OP_TOKEN, TOKENS, make_gateway, running

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@asynccontextmanager
async def uds_client(path: str, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    transport = httpx.AsyncHTTPTransport(uds=path)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://localhost", headers=headers, timeout=10
    ) as c:
        yield c


async def ws_connect(path: str, token: str) -> dict[str, Any]:
    """The answer to ``connect`` with ``token`` over a WebSocket on the Unix socket."""
    params = {
        "minProtocol": 1,
        "maxProtocol": 1,
        "client": {"id": "t", "version": "1", "platform": "linux"},
        "auth": {"token": token},
    }
    async with websockets.unix_connect(path, "ws://localhost/", open_timeout=5) as ws:
        json.loads(await ws.recv())  # connect.challenge
        await ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": params}))
        with anyio.fail_after(5):  # events (the launched run's) may come before the answer
            while True:
                answer: dict[str, Any] = json.loads(await ws.recv())
                if answer.get("type") == "res":
                    return answer


async def test_unix_socket_auth_and_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.sock")
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw, path=path):
        assert gw.url == f"unix:{path}"
        mode = os.lstat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert not [n for n in os.listdir(tmp_path) if n.startswith(".sm-")]
        async with uds_client(path) as anon:
            assert (await anon.get("/health")).status_code == 200  # public, as on TCP
            r = await anon.post("/v1/rpc/listRuns", json={})
            assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        async with uds_client(path, "wrong") as bad:
            assert (await bad.post("/v1/rpc/listRuns", json={})).status_code == 401
        async with uds_client(path, OP_TOKEN) as op:
            r = await op.post("/v1/rpc/launchRun", json={"workflow": "deploy"})
            assert r.status_code == 200 and r.json()["payload"]["workflow"] == "deploy"
        # WebSocket over the same socket: connect needs a valid token
        assert (await ws_connect(path, "wrong"))["error"]["code"] == "UNAUTHORIZED"
        hello = await ws_connect(path, OP_TOKEN)
        assert hello["ok"] is True and hello["payload"]["protocol"] == 1
    assert not os.path.exists(path)  # removed on stop


async def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # a crashed host's leftover: the file exists, nobody listens
    dead.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw, path=path), uds_client(path) as c:
        assert (await c.get("/health")).status_code == 200
    assert not os.path.exists(path)


async def _listen_error(gw: Any, path: str) -> SmithersError:
    """The SmithersError ``listen(path=...)`` fails with (the gateway's task group may wrap
    it in an exception group; issue 13 item 11 makes start-up errors plain)."""
    try:
        await gw.listen(path=path)
    except BaseException as exc:
        found = exc
        while isinstance(found, BaseExceptionGroup) and len(found.exceptions) == 1:
            found = found.exceptions[0]
        assert isinstance(found, SmithersError), exc
        return found
    raise AssertionError("listen() succeeded")


async def test_live_socket_and_other_files_are_never_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.sock")
    first = make_gateway(tmp_path, tokens=TOKENS)
    async with running(first, path=path):
        second = make_gateway(tmp_path, tokens=TOKENS, db=stores.url("other.db"))
        error = await _listen_error(second, path)
        assert error.code == "SERVER_BIND_FAILED"
        assert "another server is listening" in error.message
        async with uds_client(path) as c:  # the first one still serves
            assert (await c.get("/health")).status_code == 200

    plain = tmp_path / "notes.txt"
    plain.write_text("keep me")
    gw = make_gateway(tmp_path, tokens=TOKENS)
    error = await _listen_error(gw, str(plain))
    assert error.code == "SERVER_BIND_FAILED"
    assert "not a socket" in error.message
    assert plain.read_text() == "keep me"


async def test_stop_leaves_a_successors_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "gw.sock"
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw, path=str(path)):
        path.unlink()
        path.write_text("a successor's file")
    assert path.read_text() == "a successor's file"
