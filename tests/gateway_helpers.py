"""Shared helpers for the gateway tests: a real gateway on an ephemeral port, HTTP and
WebSocket clients speaking the wire protocol, bounded waits."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import websockets

from smithers_core.defaults import auth_none, gateway_methods, gateway_rpc, gateway_ws
from smithers_core.gateway import Gateway
from smithers_core.plugins import PluginHost
from tests import stores
from tests.engine_helpers import engine_options
from tests.fixtures.gateway import workflows as wfs

OP_TOKEN = "op-token"
TOKENS: dict[str, Any] = {
    OP_TOKEN: {"role": "operator", "scopes": ["*"], "userId": "user:will"},
}


def plugin_host(*, token: bool = True) -> PluginHost:
    """Core's defaults (``none`` mode, HTTP and WebSocket RPC) plus (optionally) the token
    plugin, without entry-point discovery."""
    host = PluginHost()
    host.register(auth_none, "core.auth_none")
    host.register(gateway_rpc, "core.gateway_rpc")
    host.register(gateway_ws, "core.gateway_ws")
    host.register(gateway_methods, "core.rpc_methods")
    if token:
        import smithers_auth_token

        host.register(smithers_auth_token, "smithers_auth_token")
    return host


def make_gateway(
    tmp_path: Path, *, tokens: dict[str, Any] | None = None, **options: Any
) -> Gateway:
    auth = options.pop("auth", None)
    if auth is None and tokens is not None:
        auth = {"mode": "token", "tokens": tokens}
    options.setdefault("db", stores.url("gw.db"))
    gw = Gateway(
        plugins=options.pop("plugins", None) or plugin_host(),
        base_dir=tmp_path,
        engine_options=options.pop("engine_options", None) or engine_options(),
        auth=auth,
        **options,
    )
    gw.register("deploy", wfs.deploy)
    gw.register("gated", wfs.gated)
    gw.register("restricted", wfs.restricted)
    gw.register("slow", wfs.slow)
    return gw


@asynccontextmanager
async def running(gw: Gateway, **listen: Any) -> AsyncIterator[Gateway]:
    listen.setdefault("port", 0)
    await gw.listen(**listen)
    try:
        yield gw
    finally:
        await gw.close()


def http(gw: Gateway, token: str | None = None, **kw: Any) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))
    return httpx.AsyncClient(base_url=gw.url or "", headers=headers, timeout=10, **kw)


async def rpc(client: httpx.AsyncClient, method: str, params: Any = None) -> httpx.Response:
    return await client.post(f"/v1/rpc/{method}", json=params if params is not None else {})


def ws_url(gw: Gateway) -> str:
    return (gw.url or "").replace("http://", "ws://") + "/"


class WsClient:
    """A protocol-level client: frames in arrival order, requests correlated by id."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._n = 0

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            frame: dict[str, Any] = json.loads(await self.ws.recv())
        self.frames.append(frame)
        return frame

    async def send(self, frame: Any) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def request(
        self, method: str, params: Any = None, *, frame_id: str | None = None
    ) -> dict[str, Any]:
        self._n += 1
        fid = frame_id or f"r{self._n}"
        frame: dict[str, Any] = {"type": "req", "id": fid, "method": method}
        if params is not None:
            frame["params"] = params
        await self.send(frame)
        return await self.wait_for(lambda f: f.get("type") == "res" and f.get("id") == fid)

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for frame in self.frames:
            if predicate(frame) and not frame.get("_seen"):
                frame["_seen"] = True
                return frame
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting for a frame")
            frame = await self.recv(remaining)
            if predicate(frame):
                frame["_seen"] = True
                return frame

    async def event(self, name: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        return await self.wait_for(
            lambda f: (
                f.get("type") == "event"
                and f.get("event") == name
                and all(f.get("payload", {}).get(k) == v for k, v in match.items())
            ),
            timeout,
        )

    async def connect(self, token: str | None = OP_TOKEN, **params: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "minProtocol": 1,
            "maxProtocol": 1,
            "client": {"id": "test", "version": "1.0.0", "platform": "linux"},
        }
        if token is not None:
            body["auth"] = {"token": token}
        body.update(params)
        return await self.request("connect", body, frame_id="c1")


@asynccontextmanager
async def ws_client(gw: Gateway, **kw: Any) -> AsyncIterator[WsClient]:
    async with websockets.connect(ws_url(gw), open_timeout=5, **kw) as ws:
        yield WsClient(ws)


# -- run-event streams (issue 6) ------------------------------------------------------------
def db_events(db_file: Path, run_id: str) -> list[tuple[int, str]]:
    """``(seq, payload_json)`` of every persisted event of ``run_id``, read with a connection
    of its own (:func:`tests.stores.rows`)."""
    return [
        (int(r[0]), str(r[1]))
        for r in stores.rows(
            db_file,
            "SELECT seq, payload_json FROM _smithers_events WHERE run_id = ? ORDER BY seq",
            run_id,
        )
    ]


def expected_frames(rows: list[tuple[int, str]]) -> list[tuple[int, str, Any]]:
    """``(stream seq, event name, payload)`` a stream must carry for these persisted rows."""
    from smithers_core.gateway.events import map_event

    out = []
    for seq, text in rows:
        name, payload = map_event(json.loads(text))
        out.append((seq + 1, name, payload))
    return out


def stream_view(frames: list[dict[str, Any]]) -> list[tuple[int, str, Any]]:
    return [(f["payload"]["seq"], f["payload"]["event"], f["payload"]["payload"]) for f in frames]


async def create_run(store: Any, run_id: str, status: str = "waiting-event") -> None:
    """A run row written directly (no engine drives it; ``waiting-event`` is never swept)."""

    def change(tx: Any) -> None:
        tx.execute(
            "INSERT INTO _smithers_runs (run_id, workflow_name, status, created_at_ms)"
            " VALUES (?, 'synthetic', ?, 0)",
            (run_id, status),
        )
        tx.emit(run_id, "RunStarted")

    await store.write(change)


async def append_events(
    store: Any, run_id: str, n: int, *, text: str = "line", finish: bool = False
) -> None:
    """``n`` NodeOutput events in one transaction; ``finish`` ends the run (RunFinished)."""

    def change(tx: Any) -> None:
        for i in range(n):
            tx.emit(run_id, "NodeOutput", nodeId="work", text=f"{text} {i}", stream="stdout")
        if finish:
            tx.execute("UPDATE _smithers_runs SET status = 'finished' WHERE run_id = ?", (run_id,))
            tx.emit(run_id, "RunFinished")

    await store.write(change)


async def open_stream(
    gw: Gateway, ws: WsClient, run_id: str, after: int | None = None, **params: Any
) -> dict[str, Any]:
    """``connect`` (subscribed to the run) and ``streamRunEvents``; returns the response."""
    await ws.recv()  # connect.challenge
    await ws.connect(OP_TOKEN, subscribe=[run_id])
    body: dict[str, Any] = {"runId": run_id, **params}
    if after is not None:
        body["afterSeq"] = after
    res = await ws.request("streamRunEvents", body)
    assert res["ok"] is True, res
    return res


async def run_events_until(
    ws: WsClient, last_seq: int, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """``run.event`` frames until the one with ``payload.seq == last_seq`` (bounded wait);
    fails on ``run.error`` or ``run.gap_resync``."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    for frame in ws.frames:
        if frame.get("event") == "run.event" and not frame.get("_seen"):
            frame["_seen"] = True
            out.append(frame)
    while not out or out[-1]["payload"]["seq"] < last_seq:
        frame = await ws.recv(max(0.01, deadline - time.monotonic()))
        name = frame.get("event")
        assert name not in ("run.error", "run.gap_resync"), frame
        if name == "run.event":
            frame["_seen"] = True
            out.append(frame)
    return out
