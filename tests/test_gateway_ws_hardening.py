"""WebSocket availability and memory (issue 13 items 1, 2 and 17): pre-auth slots per peer,
outbound caps that count the transport and a gateway-wide budget, and per-socket ordering."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from tests.gateway_helpers import (
    OP_TOKEN,
    TOKENS,
    make_gateway,
    running,
    ws_client,
)

pytestmark = pytest.mark.anyio

READER = "reader-token"
GRANTS: dict[str, Any] = {
    **TOKENS,
    READER: {"role": "viewer", "scopes": ["run:read"], "userId": "user:reader"},
}
FLOOD = "127.0.0.2"  # another loopback address on Linux: the flooding peer


def _port(gw: Any) -> int:
    return int((gw.url or "").rsplit(":", 1)[1])


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _metric(gw: Any, name: str) -> float:
    for line in gw.context.metrics.render().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)
    assert predicate(), what


class RawSocket:
    """A WebSocket client on a plain socket: bound to a chosen source address, with a small
    receive buffer, and reading only when told to (a client that stops reading)."""

    def __init__(self, sock: socket.socket, proto: ClientProtocol) -> None:
        self.sock = sock
        self.proto = proto
        self.pending: list[Any] = []

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1", rcvbuf: int = 0) -> RawSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source, 0))
        sock.setblocking(False)
        try:
            with anyio.fail_after(10):
                try:
                    sock.connect(("127.0.0.1", port))
                except BlockingIOError:
                    await anyio.wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect failed")
            proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/"))
            proto.send_request(proto.connect())
            raw = cls(sock, proto)
            await raw.flush()
            return raw
        except BaseException:
            sock.close()
            raise

    async def flush(self) -> None:
        data = b"".join(self.proto.data_to_send())
        with anyio.fail_after(10):
            while data:
                try:
                    sent = self.sock.send(data)
                except BlockingIOError:
                    await anyio.wait_writable(self.sock)
                    continue
                data = data[sent:]

    async def next_event(self, timeout: float = 10) -> Any:
        """The next handshake response, text frame (decoded JSON) or None at EOF."""
        with anyio.fail_after(timeout):
            while True:
                self.pending += self.proto.events_received()
                while self.pending:
                    event = self.pending.pop(0)
                    if isinstance(event, Response):
                        return event
                    if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                        return json.loads(event.data)
                    if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                        return event
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    await anyio.wait_readable(self.sock)
                    continue
                except ConnectionResetError:
                    return None
                if not data:
                    return None
                self.proto.receive_data(data)

    async def handshake(self) -> int:
        """The upgrade's status (101 accepted, 503 refused), 0 when the connection was
        dropped before any answer."""
        response = await self.next_event()
        if response is None:
            return 0
        assert isinstance(response, Response)
        return response.status_code

    async def login(self, token: str) -> dict[str, Any]:
        challenge = await self.next_event()
        assert isinstance(challenge, dict), challenge
        assert challenge["event"] == "connect.challenge"
        params = {
            "minProtocol": 1,
            "maxProtocol": 1,
            "client": {"id": "raw", "version": "1", "platform": "linux"},
            "auth": {"token": token},
        }
        frame = {"type": "req", "id": "c1", "method": "connect", "params": params}
        self.proto.send_text(json.dumps(frame).encode())
        await self.flush()
        while True:
            res = await self.next_event()
            if isinstance(res, dict) and res.get("type") == "res":
                return res

    def close(self) -> None:
        self.sock.close()


async def _login(gw: Any) -> bool:
    """One login from 127.0.0.1 with the official flow: True when ``connect`` succeeds."""
    try:
        async with ws_client(gw) as ws:
            await ws.recv()
            return bool((await ws.connect())["ok"])
    except InvalidStatus:
        return False


# -- item 1: pre-auth slots ------------------------------------------------------------------


async def test_pre_auth_cap_per_peer_at_its_edge(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, max_pre_auth_connections_per_peer=3)
    async with running(gw):
        port = _port(gw)
        held = [await RawSocket.open(port, FLOOD) for _ in range(4)]
        try:
            statuses = [await s.handshake() for s in held]
            assert statuses[:3] == [101, 101, 101] and statuses[3] in (0, 503)
            assert gw.context.sockets.preauth == 3
            # Now that the peer holds all its slots, its next connection is dropped before a
            # byte of HTTP is parsed (no 503 to build).
            extra = await RawSocket.open(port, FLOOD)
            held.append(extra)
            assert await extra.handshake() == 0
            # Authenticating frees the peer's slot for the next socket.
            assert (await held[0].login(OP_TOKEN))["ok"] is True
            await _wait(lambda: gw.context.sockets.preauth == 2, 5, "slot released")
            again = await RawSocket.open(port, FLOOD)
            held.append(again)
            assert await again.handshake() == 101
            assert await _login(gw)  # another peer is not affected at all
        finally:
            for s in held:
                s.close()


async def test_a_flooding_peer_never_refuses_another_peers_login(tmp_path: Path) -> None:
    """127.0.0.2 cycles unauthenticated sockets as fast as it can while 127.0.0.1 logs in
    30 times: every login succeeds, and the flood never holds more than its per-peer cap
    (refused: a 503, or the connection dropped at once)."""
    gw = make_gateway(tmp_path, tokens=TOKENS, max_pre_auth_connections=16)
    stop = anyio.Event()
    flood = {"accepted": 0, "refused": 0, "peak": 0}

    async def flood_one() -> None:
        while not stop.is_set():
            s = await RawSocket.open(_port(gw), FLOOD)
            try:
                status = await s.handshake()
                flood["accepted" if status == 101 else "refused"] += 1
                flood["peak"] = max(flood["peak"], gw.context.sockets.pre_auth.held(FLOOD))
                if status == 101:
                    await anyio.sleep(0.05)  # hold the slot a moment, then cycle it
            finally:
                s.close()

    async with running(gw), anyio.create_task_group() as tg:
        for _ in range(24):  # more flooding sockets than the whole pre-auth pool
            tg.start_soon(flood_one)
        await _wait(lambda: flood["refused"] > 0, 10, "the flood reached its cap")
        results = [await _login(gw) for _ in range(30)]
        stop.set()
    assert results == [True] * 30
    assert flood["refused"] > 0 and flood["accepted"] > 0
    assert flood["peak"] <= 8  # the default per-peer cap, well under the pool of 16


async def test_many_flooding_peers_share_the_pool_and_a_newcomer_takes_a_slot(
    tmp_path: Path,
) -> None:
    gw = make_gateway(
        tmp_path,
        tokens=TOKENS,
        max_pre_auth_connections=4,
        max_pre_auth_connections_per_peer=2,
    )
    async with running(gw):
        port = _port(gw)
        a = [await RawSocket.open(port, "127.0.0.2") for _ in range(2)]
        b = [await RawSocket.open(port, "127.0.0.3") for _ in range(2)]
        held = a + b
        try:
            assert [await s.handshake() for s in held] == [101] * 4
            for s in held:
                assert (await s.next_event())["event"] == "connect.challenge"
            assert gw.context.sockets.preauth == 4  # the pool is full
            # A peer holding as many slots as the biggest holder is refused...
            c = await RawSocket.open(port, "127.0.0.2")
            held.append(c)
            assert await c.handshake() in (0, 503)
            # ...a newcomer takes the oldest slot of the biggest holder, and logs in.
            assert await _login(gw)
            closed = await a[0].next_event()
            assert isinstance(closed, Frame) and closed.opcode is Opcode.CLOSE
            assert closed.data[:2] == (1013).to_bytes(2, "big")
            assert b"try again later" in closed.data
            assert gw.context.sockets.pre_auth.held("127.0.0.2") == 1
        finally:
            for s in held:
                s.close()


# -- item 2: outbound memory -----------------------------------------------------------------


async def test_non_reading_sockets_are_all_disconnected_by_the_cap(tmp_path: Path) -> None:
    """20 sockets holding a run:read token stop reading under a steady event stream: the
    per-socket cap (which counts the transport's buffer) closes every one of them, each is
    counted in ``backpressure_disconnects_total``, and memory stays bounded."""
    cap = 256 * 1024
    gw = make_gateway(tmp_path, tokens=GRANTS, max_outbound_bytes=cap)
    async with running(gw):
        port = _port(gw)
        sockets = gw.context.sockets
        stalled = []
        try:
            for _ in range(20):
                s = await RawSocket.open(port, rcvbuf=4096)
                stalled.append(s)
                assert await s.handshake() == 101
                assert (await s.login(READER))["ok"] is True
            assert sockets.authed == 20
            rss_before = _rss_kib()
            peak = rss_before
            peak_queued = 0
            blob = "x" * 8192
            with anyio.fail_after(30):
                i = 0
                while sockets.connections:
                    gw.context.broadcast("cron.triggered", {"cronId": f"c{i}", "blob": blob})
                    i += 1
                    peak_queued = max(
                        peak_queued,
                        max(
                            (c.queued_bytes + c.buffered_bytes() for c in sockets.connections),
                            default=0,
                        ),
                    )
                    peak = max(peak, _rss_kib())
                    await anyio.sleep(0.002)
            assert _metric(gw, "smithers_gateway_backpressure_disconnects_total") == 20
            assert sockets.outbound.total == 0
            assert peak_queued <= cap
            # 20 sockets x 256 KiB queued at most, plus the transports' buffers: the bound
            # documented in docs/reliability.md (a generous 48 MiB for allocator noise).
            assert (peak - rss_before) < 48 * 1024, (rss_before, peak)
        finally:
            for s in stalled:
                s.close()


async def test_the_gateway_wide_budget_closes_the_slowest_reader(tmp_path: Path) -> None:
    budget = 512 * 1024
    gw = make_gateway(
        tmp_path,
        tokens=GRANTS,
        max_outbound_bytes=32 * 1024 * 1024,
        max_outbound_bytes_total=budget,
    )
    async with running(gw), ws_client(gw) as reader:
        await reader.recv()
        assert (await reader.connect(READER))["ok"]
        slow = await RawSocket.open(_port(gw), rcvbuf=4096)
        try:
            assert await slow.handshake() == 101
            assert (await slow.login(READER))["ok"] is True
            sockets = gw.context.sockets
            blob = "y" * 8192
            got = 0
            peak_total = 0
            with anyio.fail_after(30):
                i = 0
                while sockets.authed == 2:
                    gw.context.broadcast("cron.triggered", {"cronId": f"c{i}", "blob": blob})
                    i += 1
                    peak_total = max(peak_total, sockets.outbound.total)
                    frame = await reader.recv()  # the reading socket keeps up
                    got += frame.get("event") == "cron.triggered"
            assert peak_total <= budget
            assert _metric(gw, "smithers_gateway_backpressure_disconnects_total") == 1
            # The reading socket stays open and keeps receiving.
            gw.context.broadcast("cron.triggered", {"cronId": "after"})
            await reader.event("cron.triggered", cronId="after")
            assert got >= i - 1  # every broadcast (a tick may have taken one recv)
        finally:
            slow.close()


# -- item 17: a later request sees an earlier one's effects --------------------------------


async def test_pipelined_launch_then_stream_sees_the_run(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw), ws_client(gw) as ws:
        await ws.recv()
        await ws.connect()
        run_id = "pipelined-1"
        launch = {"workflow": "deploy", "input": {"sha": "x1"}, "runId": run_id}
        # No await between the two: both frames are on the wire before either answer.
        await ws.send({"type": "req", "id": "l", "method": "launchRun", "params": launch})
        await ws.send(
            {"type": "req", "id": "s", "method": "streamRunEvents", "params": {"runId": run_id}}
        )
        await ws.send({"type": "req", "id": "g", "method": "getRun", "params": {"runId": run_id}})
        launched = await ws.wait_for(lambda f: f.get("id") == "l")
        stream = await ws.wait_for(lambda f: f.get("id") == "s")
        got = await ws.wait_for(lambda f: f.get("id") == "g")
        assert launched["ok"] is True, launched
        assert stream["ok"] is True, stream
        assert stream["payload"]["runId"] == run_id
        assert got["ok"] is True and got["payload"]["runId"] == run_id
        order = [f["id"] for f in ws.frames if f.get("type") == "res"]
        assert order.index("l") < min(order.index("s"), order.index("g"))
        await ws.event("run.event", timeout=10, runId=run_id)


async def test_independent_reads_still_pipeline(tmp_path: Path) -> None:
    """Reads with no write before them are not serialised: a slow read does not hold up a
    later one (``listRuns`` answers while ``getRun`` of an unknown run is pending or not)."""
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw), ws_client(gw) as ws:
        await ws.recv()
        await ws.connect()
        conn = next(iter(gw.context.sockets.connections))
        for i in range(50):
            await ws.send({"type": "req", "id": f"h{i}", "method": "listRuns", "params": {}})
        for i in range(50):
            res = await ws.wait_for(lambda f, i=i: f.get("id") == f"h{i}")
            assert res["ok"] is True
        assert conn.pending_write is None


# -- item 3: what a pipelining socket holds --------------------------------------------------


async def test_a_socket_runs_at_most_max_inflight_requests_at_once(tmp_path: Path) -> None:
    """10 pipelined slow reads with ``max_inflight_requests=2``: at most 2 run at once (the
    socket is not read meanwhile), every one is answered, and once they are done the socket
    holds no task set (a Python set never shrinks after a burst)."""
    gates = [anyio.Event() for _ in range(10)]
    started: list[int] = []
    running_now = [0, 0]  # current, peak

    async def hold(params: dict[str, Any], ctx: Any) -> Any:
        i = int(params["i"])
        started.append(i)
        running_now[0] += 1
        running_now[1] = max(running_now[1], running_now[0])
        await gates[i].wait()
        running_now[0] -= 1
        return {"i": i}

    gw = make_gateway(tmp_path, tokens=TOKENS, max_inflight_requests=2)
    gw.extend("slow", {"resources": {"hold": hold}})
    async with running(gw), ws_client(gw) as ws:
        await ws.recv()
        await ws.connect()
        conn = next(iter(gw.context.sockets.connections))
        for i in range(10):
            await ws.send(
                {"type": "req", "id": f"x{i}", "method": "ext.slow.hold", "params": {"i": i}}
            )
        for i in range(10):
            await _wait(lambda i=i: len(started) >= min(i + 2, 10), 5, f"call {i} started")
            gates[i].set()
            res = await ws.wait_for(lambda f, i=i: f.get("id") == f"x{i}")
            assert res["ok"] is True and res["payload"] == {"i": i}
        assert running_now[1] == 2
        assert started == list(range(10))
        await _wait(lambda: conn.tasks is None and conn.inflight == 0, 5, "tasks released")
