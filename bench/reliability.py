"""Availability and memory figures of docs/reliability.md (issue 13, items 1-3).

``python -m bench.reliability [preauth] [slow] [pipeline] [options]`` starts a gateway in a
child process (default options, a ``run:read`` token and an operator token), drives it from
this process and prints one JSON line per scenario: clients, duration, and the gateway's RSS
before, at its peak and after. Benchmarks, not tests: they print figures.

- ``preauth``: one peer (127.0.0.2) cycles ``--flood`` unauthenticated sockets (each held
  until the server closes it, retried ``--retry-ms`` after a 503) while 127.0.0.1 logs in
  every 100 ms; reports how many logins were refused and how long they took.
- ``slow``: ``--clients`` sockets holding a ``run:read`` token stop reading while runs log
  4 KiB lines at 500 lines/s; reports when each was disconnected and the counter.
- ``pipeline``: one socket sends ``--calls`` requests without waiting (``getRun`` and
  ``listRuns`` alternately), reads every answer, and repeats for ``--rounds`` rounds; the
  gateway's top retained Python allocations (tracemalloc) are written to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bench.common import Child, emit, raise_nofile
from bench.servers import serve_commands
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Task

OP = "rel-operator"
READER = "rel-reader"
GRANTS = {
    OP: {"role": "operator", "scopes": ["*"], "userId": "user:op"},
    READER: {"role": "viewer", "scopes": ["run:read"], "userId": "user:reader"},
}
SETTLE_S = 5.0  # after a scenario, the gateway idles this long before "after" is read


class ChattyInput(BaseModel):
    n: int = 1000
    rate: int = 500
    size: int = 4096


class Done(BaseModel):
    n: int


def _chatter(t):  # type: ignore[no-untyped-def]
    n, rate, pad = t.input.n, t.input.rate, "x" * t.input.size
    t0 = time.monotonic()
    for i in range(n):
        ahead = t0 + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        t.log(f"{i} {pad}")
    return Done(n=n)


@workflow("chatty", input=ChattyInput)
def chatty(ctx):  # type: ignore[no-untyped-def]
    """One task logging ``n`` lines of ``size`` bytes at ``rate`` lines per second."""
    return Task("chat", _chatter, output=Done)


# --------------------------------------------------------------------------- the gateway


async def gateway(opts: dict[str, Any]) -> None:
    import smithers_auth_token
    from smithers_core.defaults import auth_none, gateway_methods, gateway_rpc, gateway_ws
    from smithers_core.gateway import Gateway
    from smithers_core.plugins import PluginHost

    host = PluginHost()
    host.register(auth_none, "core.auth_none")
    host.register(gateway_rpc, "core.gateway_rpc")
    host.register(gateway_ws, "core.gateway_ws")
    host.register(gateway_methods, "core.rpc_methods")
    host.register(smithers_auth_token, "smithers_auth_token")
    tmp = Path(tempfile.mkdtemp(prefix="bench-rel-"))
    gw = Gateway(
        plugins=host,
        base_dir=tmp,
        db="sqlite:///rel.db",
        auth={"mode": "token", "tokens": GRANTS},
        **opts,
    )
    gw.register("chatty", chatty)
    await gw.listen(port=0, host="127.0.0.1")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def metrics(_arg: str) -> Any:
        out: dict[str, float] = {}
        for line in gw.context.metrics.render().decode().splitlines():
            if line.startswith("smithers_gateway_") and " " in line and "{" not in line:
                name, value = line.split(" ", 1)
                out[name] = float(value)
        return out

    def trim(_arg: str) -> Any:
        import ctypes
        import gc

        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            return {"trimmed": False}
        return {"trimmed": True}

    def tasks(_arg: str) -> Any:
        """Pending tasks of the gateway's loop, grouped by their innermost frames."""
        import collections

        async def count() -> Any:
            where: collections.Counter[str] = collections.Counter()
            for task in asyncio.all_tasks():
                stack = task.get_stack()
                where[" <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in stack[-3:])] += 1
            return {"pending": sum(where.values()), "top": where.most_common(5)}

        return asyncio.run_coroutine_threadsafe(count(), loop).result(30)

    serve_commands(loop, stop, {"metrics": metrics, "trim": trim, "tasks": tasks})
    emit("READY", {"url": gw.url})
    await stop.wait()
    await gw.close()


# --------------------------------------------------------------------------- raw clients


class RawClient:
    """A blocking WebSocket client on a plain socket (sansio ``websockets``): a chosen source
    address, and it reads only when asked, so it can stop reading."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 300) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.sock = socket.create_connection(("127.0.0.1", port), timeout, (source, 0))
        self.proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/"))
        self.pending: list[Any] = []
        self.proto.send_request(self.proto.connect())
        self._flush()

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.proto.data_to_send()))

    def next(self) -> Any:
        """The next handshake response or text frame (as JSON); None at EOF."""
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        while True:
            self.pending += self.proto.events_received()
            while self.pending:
                ev = self.pending.pop(0)
                if isinstance(ev, Response):
                    return ev
                if isinstance(ev, Frame) and ev.opcode is Opcode.TEXT:
                    return json.loads(ev.data)
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                print(f"recv: {exc!r}", file=sys.stderr)
                return None
            if not data:
                return None
            self.proto.receive_data(data)
            self._flush()  # pongs: uvicorn drops a socket that misses its keepalive pings

    def pipeline(self, frames: list[Any], on_progress: Any = None) -> None:
        """Send every frame without waiting for answers (in chunks, reading what has
        arrived in between, as a full-duplex client does), then read until all answered."""
        import select

        from websockets.frames import Frame, Opcode

        sent = answered = 0
        while answered < len(frames):
            if sent < len(frames):
                for frame in frames[sent : sent + 100]:
                    self.proto.send_text(json.dumps(frame).encode())
                sent = min(len(frames), sent + 100)
                self._flush()
            wait: float | None = 0 if sent < len(frames) else 60
            while answered < len(frames):
                readable, _, _ = select.select([self.sock], [], [], wait)
                if not readable:
                    if wait:
                        raise TimeoutError(f"no answer in {wait} s after {answered}")
                    break
                data = self.sock.recv(1 << 20)
                if not data:
                    raise RuntimeError(f"the gateway closed the socket after {answered}")
                self.proto.receive_data(data)
                self._flush()
                for ev in self.proto.events_received():
                    if isinstance(ev, Frame) and ev.opcode is Opcode.TEXT:
                        answered += json.loads(ev.data).get("type") == "res"
                if on_progress is not None:
                    on_progress()

    def login(self, token: str) -> bool:
        if getattr(self.next(), "status_code", 0) != 101:
            return False
        self.next()  # connect.challenge
        params = {
            "minProtocol": 1,
            "maxProtocol": 1,
            "client": {"id": "rel", "version": "1", "platform": "linux"},
            "auth": {"token": token},
        }
        frame = {"type": "req", "id": "c1", "method": "connect", "params": params}
        self.proto.send_text(json.dumps(frame).encode())
        self._flush()
        while True:
            res = self.next()
            if res is None:
                return False
            if isinstance(res, dict) and res.get("id") == "c1":
                return bool(res.get("ok"))

    def close(self) -> None:
        self.sock.close()


async def flood(opts: dict[str, Any]) -> None:
    """Child: ``workers`` sockets from ``source`` cycling unauthenticated until stdin says
    stop; prints ``RESULT {accepted, refused}``."""
    from bench.clients import stdin_event

    port, workers, source = int(opts["port"]), int(opts["workers"]), str(opts["source"])
    retry_s = float(opts.get("retry_ms", 1000)) / 1000
    loop = asyncio.get_running_loop()
    stop = stdin_event(loop, "stop")
    counts = {"accepted": 0, "refused": 0, "errors": 0}
    request = (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )

    async def worker() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(source, 0)
                )
            except OSError:
                counts["errors"] += 1
                await asyncio.sleep(0.1)
                continue
            try:
                writer.write(request)
                status = await reader.readline()
                if b" 101 " in status:
                    counts["accepted"] += 1
                    while await reader.read(65536):  # held until the server closes it
                        pass
                else:
                    counts["refused"] += 1
                    await asyncio.sleep(retry_s)
            except OSError:
                counts["errors"] += 1
            finally:
                writer.close()

    emit("READY", {})
    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    emit("RESULT", counts)


# --------------------------------------------------------------------------- scenarios


class Memory:
    """The gateway's RSS: before, sampled peak, after."""

    def __init__(self, srv: Child) -> None:
        self.srv = srv
        self.before = srv.rss_kib()
        self.peak = self.before

    def sample(self) -> int:
        rss = self.srv.rss_kib()
        self.peak = max(self.peak, rss)
        return rss

    def figures(self) -> dict[str, float]:
        time.sleep(SETTLE_S)
        after = self.srv.rss_kib()
        self.srv.call("trim")
        trimmed = self.srv.rss_kib()
        return {
            "rssBeforeMiB": round(self.before / 1024, 1),
            "rssPeakMiB": round(self.peak / 1024, 1),
            "rssAfterMiB": round(after / 1024, 1),
            "rssAfterTrimMiB": round(trimmed / 1024, 1),
        }


def _start(opts: dict[str, Any] | None = None) -> tuple[Child, str]:
    srv = Child("bench.reliability", "gateway", opts or {}, name="gateway")
    return srv, str(srv.expect("READY", 60)["url"])


def preauth(args: argparse.Namespace) -> dict[str, Any]:
    import websockets.sync.client as wsc

    srv, url = _start()
    port = int(url.rsplit(":", 1)[1])
    fl = Child(
        "bench.reliability",
        "flood",
        {"port": port, "workers": args.flood, "source": "127.0.0.2", "retry_ms": args.retry_ms},
        name="flood",
    )
    try:
        fl.expect("READY", 30)
        mem = Memory(srv)
        if args.tracemalloc:
            srv.call("tm_start")
        time.sleep(2)  # let the flood fill its slots first
        ok = refused = 0
        lat: list[float] = []
        t_end = time.monotonic() + args.duration
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            try:
                with wsc.connect(url.replace("http", "ws") + "/", open_timeout=10) as ws:
                    ws.recv(10)
                    ws.send(
                        json.dumps(
                            {
                                "type": "req",
                                "id": "c1",
                                "method": "connect",
                                "params": {
                                    "minProtocol": 1,
                                    "maxProtocol": 1,
                                    "client": {"id": "login"},
                                    "auth": {"token": OP},
                                },
                            }
                        )
                    )
                    while True:
                        frame = json.loads(ws.recv(10))
                        if frame.get("id") == "c1":
                            break
                    ok += bool(frame.get("ok"))
                    refused += not frame.get("ok")
            except Exception:
                refused += 1
            lat.append(time.monotonic() - t0)
            mem.sample()
            time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
        fl.send("stop")
        flooded = fl.expect("RESULT", 60)
        if args.tracemalloc:
            time.sleep(SETTLE_S)
            path = Path(tempfile.gettempdir()) / "bench-preauth-tracemalloc.txt"
            srv.call("tm_diff " + str(path))
        lat.sort()
        return {
            "scenario": "preauth",
            "floodSockets": args.flood,
            "floodRetryMs": args.retry_ms,
            "durationS": args.duration,
            "logins": ok + refused,
            "loginsRefused": refused,
            "loginP50Ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
            "loginP99Ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
            "flood": flooded,
            **mem.figures(),
            "gatewayTasksAfter": srv.call("tasks")["pending"],
            "gatewayFdsAfter": len(list(Path(f"/proc/{srv.pid}/fd").iterdir())),
        }
    finally:
        fl.close()
        srv.close()


def slow(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    srv, url = _start()
    port = int(url.rsplit(":", 1)[1])
    clients: list[RawClient] = []
    try:
        for _ in range(args.clients):  # one at a time: one peer, 8 pre-auth slots
            clients.append(RawClient(port))
            assert clients[-1].login(READER), "a reader failed to log in"
        mem = Memory(srv)
        headers = {"authorization": f"Bearer {OP}"}
        t0 = time.monotonic()
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            lines = args.duration * 500 // 4
            for _ in range(4):  # four runs, 4 KiB lines, 500 lines/s together
                body = {"workflow": "chatty", "input": {"n": lines, "rate": 125, "size": 4096}}
                r = http.post("/v1/rpc/launchRun", json=body)
                assert r.json()["ok"], r.text
            last_open: float | None = None
            while time.monotonic() - t0 < args.duration:
                mem.sample()
                m = srv.call("metrics")
                if m.get("smithers_gateway_connections_active", 0) == 0 and last_open is None:
                    last_open = time.monotonic() - t0
                time.sleep(0.25)
        m = srv.call("metrics")
        return {
            "scenario": "slow",
            "clients": args.clients,
            "durationS": args.duration,
            "backpressureDisconnects": m.get("smithers_gateway_backpressure_disconnects_total"),
            "connectionsActiveAtEnd": m.get("smithers_gateway_connections_active"),
            "allDisconnectedAfterS": round(last_open, 1) if last_open is not None else None,
            "maxOutboundBytes": 32 * 1024 * 1024,
            "maxOutboundBytesTotal": 128 * 1024 * 1024,
            **mem.figures(),
        }
    finally:
        for c in clients:
            c.close()
        srv.close()


def pipeline(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    srv, url = _start()
    try:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {OP}"}) as http:
            body = {"workflow": "chatty", "input": {"n": 3, "rate": 1000, "size": 16}}
            run_id = http.post("/v1/rpc/launchRun", json=body).json()["payload"]["runId"]
        port = int(url.rsplit(":", 1)[1])
        client = RawClient(port)
        assert client.login(OP)
        mem = Memory(srv)
        if args.tracemalloc:
            srv.call("tm_start")
        after_rounds: list[float] = []
        t0 = time.monotonic()
        for _ in range(args.rounds):
            frames = []
            for i in range(args.calls):
                method = "getRun" if i % 2 == 0 else "listRuns"
                params = {"runId": run_id} if method == "getRun" else {"limit": 5}
                frames.append({"type": "req", "id": f"p{i}", "method": method, "params": params})
            try:
                client.pipeline(frames, on_progress=mem.sample)
            except OSError as exc:
                raise RuntimeError(f"{exc!r}: {srv.call('metrics')}") from exc
            after_rounds.append(round(srv.rss_kib() / 1024, 1))
        elapsed = time.monotonic() - t0
        path = Path(tempfile.gettempdir()) / "bench-pipeline-tracemalloc.txt"
        retained = srv.call("tm_diff " + str(path)) if args.tracemalloc else {"totalKiB": 0}
        client.close()
        return {
            "scenario": "pipeline",
            "calls": args.calls,
            "rounds": args.rounds,
            "durationS": round(elapsed, 1),
            "rssAfterEachRoundMiB": after_rounds,
            "pythonRetainedKiB": round(retained["totalKiB"]) if args.tracemalloc else None,
            "tracemalloc": str(path) if args.tracemalloc else None,
            **mem.figures(),
        }
    finally:
        srv.close()


SCENARIOS = {"preauth": preauth, "slow": slow, "pipeline": pipeline}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("gateway", "flood"):
        raise_nofile()
        opts = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
        asyncio.run((gateway if sys.argv[1] == "gateway" else flood)(opts))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    ap.add_argument("scenario", nargs="*", help="preauth, slow, pipeline (default: all)")
    ap.add_argument("--flood", type=int, default=2000, help="flooding sockets (preauth)")
    ap.add_argument("--retry-ms", type=int, default=1000, help="flood retry after a 503")
    ap.add_argument("--clients", type=int, default=20, help="non-reading sockets (slow)")
    ap.add_argument("--duration", type=int, default=30, help="seconds (preauth, slow)")
    ap.add_argument("--calls", type=int, default=10_000, help="pipelined calls per round")
    ap.add_argument("--rounds", type=int, default=5, help="pipeline rounds")
    ap.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace the gateway's allocations (preauth, pipeline)",
    )
    args = ap.parse_args()
    raise_nofile()
    for name in args.scenario or list(SCENARIOS):
        print(json.dumps(SCENARIOS[name](args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
