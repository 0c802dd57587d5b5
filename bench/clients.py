"""Load-generator processes: ``python -m bench.clients KIND '{json opts}'``.

Each opens its sockets in batches of at most 64 (the gateway's ``max_pre_auth_connections``),
prints ``READY {json}``, waits for ``go`` on stdin where the kind needs it, and prints
``RESULT {json}``. The same client code drives the system under test and its baseline.
Latencies travel as histograms (0.1 ms buckets) so processes can be merged exactly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import threading
import time
from collections import Counter
from typing import Any

from bench.common import BATCH, emit, raise_nofile


def hist_add(h: Counter[int], seconds: float) -> None:
    h[max(0, int(seconds * 10_000))] += 1  # 0.1 ms buckets


def stdin_event(loop: asyncio.AbstractEventLoop, word: str) -> asyncio.Event:
    """An event set when ``word`` (or EOF) arrives on stdin."""
    ev = asyncio.Event()

    def reader() -> None:
        for line in sys.stdin:
            if line.strip() in (word, "quit"):
                break
        loop.call_soon_threadsafe(ev.set)

    threading.Thread(target=reader, daemon=True).start()
    return ev


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/"


# Browsers and node `ws` offer permessage-deflate by default (client_max_window_bits);
# websockets' "deflate" sends the same offer. The server decides whether to accept it.
OFFER = "deflate"


def deflated(socks: list[Any]) -> int:
    """How many of ``socks`` negotiated permessage-deflate."""
    return sum(1 for ws in socks if ws.protocol.extensions)


async def ws_open(
    url: str, token: str, *, subscribe: list[str] | None = None, compression: str | None = OFFER
) -> Any:
    """Open a socket (offering permessage-deflate unless ``compression`` is None) and
    authenticate with ``connect`` (the gateway's handshake)."""
    from websockets.asyncio.client import connect

    ws = await connect(
        ws_url(url),
        compression=compression,
        max_size=2**24,
        max_queue=None,
        open_timeout=30,
        close_timeout=2,
        ping_interval=None,
    )
    await asyncio.wait_for(ws.recv(), 30)  # connect.challenge
    params: dict[str, Any] = {
        "minProtocol": 1,
        "maxProtocol": 1,
        "client": {"id": "bench", "version": "1.0.0", "platform": "linux"},
        "auth": {"token": token},
    }
    if subscribe:
        params["subscribe"] = subscribe
    await ws.send(json.dumps({"type": "req", "id": "c1", "method": "connect", "params": params}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame.get("type") == "res" and frame.get("id") == "c1":
            if not frame.get("ok") or frame.get("payload") is None:
                raise RuntimeError(f"connect refused: {frame}")
            return ws


# Two client processes may connect at once: each keeps at most half of the gateway's
# max_pre_auth_connections unauthenticated.
PER_PROCESS_BATCH = BATCH // 2


async def open_many(n: int, make: Any) -> list[Any]:
    """``n`` sockets from ``make(i)``, at most PER_PROCESS_BATCH handshakes at a time."""
    out: list[Any] = []
    for start in range(0, n, PER_PROCESS_BATCH):
        stop = min(n, start + PER_PROCESS_BATCH)
        out += await asyncio.gather(*(make(i) for i in range(start, stop)))
    return out


def token_for(opts: dict[str, Any], i: int) -> str:
    tokens: list[str] = opts["tokens"]
    per = int(opts.get("per_token", 32))
    return tokens[(int(opts.get("offset", 0)) + i) // per % len(tokens)]


# --------------------------------------------------------------------------- WebSocket RPC


async def ws_rpc(opts: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    go = stdin_event(loop, "go")
    n, inflight, duration = int(opts["sockets"]), int(opts["inflight"]), float(opts["duration"])
    socks = await open_many(n, lambda i: ws_open(opts["url"], token_for(opts, i)))
    emit("READY", {"sockets": len(socks)})
    await asyncio.wait_for(go.wait(), 120)
    params = json.dumps({"runId": opts["runId"]})
    hist: Counter[int] = Counter()
    counts = [0]
    errors = [0]
    t_end = time.monotonic() + duration

    async def drive(ws: Any) -> None:
        ids = itertools.count()
        sent: dict[str, float] = {}

        def send_one() -> Any:
            rid = f"q{next(ids)}"
            sent[rid] = time.monotonic()
            return ws.send(f'{{"type":"req","id":"{rid}","method":"getRun","params":{params}}}')

        for _ in range(inflight):
            await send_one()
        async for raw in ws:
            now = time.monotonic()
            frame = json.loads(raw)
            t0 = sent.pop(frame.get("id"), None) if frame.get("type") == "res" else None
            if t0 is None:
                continue
            if not frame.get("ok"):
                errors[0] += 1
            if now > t_end:
                if not sent:
                    break
                continue
            counts[0] += 1
            hist_add(hist, now - t0)
            await send_one()

    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(drive(ws) for ws in socks)), duration + 60)
    elapsed = min(time.monotonic(), t_end) - t0
    emit(
        "RESULT",
        {
            "responses": counts[0],
            "elapsed": elapsed,
            "errors": errors[0],
            "hist": hist,
            "deflate": deflated(socks),
        },
    )
    for ws in socks:
        await ws.close()


# --------------------------------------------------------------------------- event fan-out


async def fanout(opts: dict[str, Any]) -> None:
    """Subscribers that only count frames and timestamps. mode ``stream``: streamRunEvents and
    count task.output lines (latency from the emit time in the line); mode ``subscribe``:
    connect {subscribe:[runId]} and record when run.completed arrives."""
    n, run_id, expect = int(opts["sockets"]), opts["runId"], int(opts.get("expect", 0))
    mode, timeout = opts.get("mode", "stream"), float(opts.get("timeout", 60))
    sub = [run_id] if mode == "subscribe" else None
    socks = await open_many(n, lambda i: ws_open(opts["url"], token_for(opts, i), subscribe=sub))
    if mode == "stream":
        for ws in socks:
            req = {
                "type": "req",
                "id": "s1",
                "method": "streamRunEvents",
                "params": {"runId": run_id},
            }
            await ws.send(json.dumps(req))
    hist: Counter[int] = Counter()
    counts = [0] * n
    resyncs = [0]
    first = [float("inf")]
    last = [0.0]
    completed: list[float] = []
    errors: list[str] = []
    ready = [0]
    all_ready = asyncio.Event()

    async def reader(k: int, ws: Any) -> None:
        acked = mode != "stream"
        if acked:
            ready[0] += 1
            if ready[0] == n:
                all_ready.set()
        async for raw in ws:
            now = time.time()
            frame = json.loads(raw)
            if frame.get("type") == "res":
                if not acked and frame.get("id") == "s1":
                    if not frame.get("ok"):
                        raise RuntimeError(f"streamRunEvents refused: {frame}")
                    acked = True
                    ready[0] += 1
                    if ready[0] == n:
                        all_ready.set()
                continue
            event = frame.get("event")
            if mode == "subscribe":
                if event == "run.completed" and frame["payload"].get("runId") == run_id:
                    completed.append(now)
                    return
                continue
            if event == "run.gap_resync":
                resyncs[0] += 1
                continue
            if event == "run.error":  # e.g. BackpressureDisconnect: the stream is over
                errors.append(frame["payload"].get("error", {}).get("code", "?"))
                return
            if event != "run.event":
                continue
            p = frame["payload"]
            if p.get("event") != "task.output":
                continue
            hist_add(hist, now - float(p["payload"]["output"].split(" ", 1)[0]))
            counts[k] += 1
            first[0] = min(first[0], now)
            last[0] = max(last[0], now)
            if counts[k] >= expect:
                return

    tasks = [asyncio.create_task(reader(k, ws)) for k, ws in enumerate(socks)]
    await asyncio.wait_for(all_ready.wait(), 60)
    emit("READY", {"sockets": n})
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    for t in _done:
        if t.exception() is not None:
            emit("ERROR", repr(t.exception()))
    emit(
        "RESULT",
        {
            "deliveries": sum(counts),
            "complete": sum(c >= expect for c in counts),
            "first": first[0] if first[0] != float("inf") else None,
            "last": last[0],
            "resyncs": resyncs[0],
            "hist": hist,
            "completed": completed,
            "streamErrors": errors,
            "timedOut": len(pending),
            "deflate": deflated(socks),
        },
    )
    await asyncio.gather(*(ws.close() for ws in socks), return_exceptions=True)


# --------------------------------------------------------------------------- idle sockets


async def idle(opts: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    quit_ev = stdin_event(loop, "quit")
    # "offer": the client offers permessage-deflate (as browsers and node's ws do by default)
    comp = "deflate" if opts.get("offer", opts.get("deflate")) else None
    socks = await open_many(
        int(opts["sockets"]), lambda i: ws_open(opts["url"], token_for(opts, i), compression=comp)
    )
    emit(
        "READY", {"sockets": len(socks), "deflate": sum(1 for s in socks if s.protocol.extensions)}
    )
    await asyncio.wait_for(quit_ev.wait(), 600)
    await asyncio.gather(*(ws.close() for ws in socks), return_exceptions=True)
    emit("RESULT", {})


# --------------------------------------------------------------------------- SSE


async def sse(opts: dict[str, Any]) -> None:
    """Raw-socket SSE readers: count NodeOutput events until RunFinished."""
    host, port = "127.0.0.1", int(opts["port"])
    n, path, expect = int(opts["sockets"]), opts["path"], int(opts["expect"])
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {opts['token']}"
        "\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    hist: Counter[int] = Counter()
    counts = [0] * n
    last = [0.0]

    async def open_one(_i: int) -> Any:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
        w.write(req)
        buf = b""
        while b"retry:" not in buf:
            chunk = await asyncio.wait_for(r.read(65536), 30)
            if not chunk:
                raise RuntimeError("SSE stream closed during the preamble")
            buf += chunk
        return r, w

    conns = await open_many(n, open_one)
    emit("READY", {"sockets": n})

    async def reader(k: int, r: Any) -> None:
        buf = b""
        while True:
            chunk = await r.read(262_144)
            if not chunk:
                return
            now = time.time()
            buf += chunk
            *blocks, buf = buf.split(b"\n\n")
            for block in blocks:
                for line in block.split(b"\n"):
                    if not line.startswith(b"data: "):
                        continue
                    ev = json.loads(line[6:])
                    if ev.get("type") == "NodeOutput":
                        hist_add(hist, now - float(ev["text"].split(" ", 1)[0]))
                        counts[k] += 1
                        last[0] = max(last[0], now)
                    elif ev.get("type") in ("RunFinished", "RunFailed"):
                        return
            if counts[k] >= expect:
                return

    tasks = [asyncio.create_task(reader(k, r)) for k, (r, _w) in enumerate(conns)]
    _done, pending = await asyncio.wait(tasks, timeout=float(opts.get("timeout", 60)))
    for t in pending:
        t.cancel()
    emit(
        "RESULT",
        {
            "deliveries": sum(counts),
            "complete": sum(c >= expect for c in counts),
            "last": last[0],
            "hist": hist,
            "timedOut": len(pending),
        },
    )
    for _r, w in conns:
        w.close()


# --------------------------------------------------------------------------- run throughput


async def throughput(opts: dict[str, Any]) -> None:
    """``runs`` launchRun calls over one authenticated socket, ``concurrency`` runs in flight;
    completion is the run.completed broadcast the same (unfiltered) socket receives."""
    loop = asyncio.get_running_loop()
    go = stdin_event(loop, "go")
    ws = await ws_open(opts["url"], opts["tokens"][0])
    runs, conc = int(opts["runs"]), int(opts["concurrency"])
    pending_res: dict[str, asyncio.Future[Any]] = {}
    done_at: dict[str, float] = {}
    waiters: dict[str, asyncio.Future[float]] = {}
    seen: dict[str, dict[str, float]] = {}
    launched: dict[str, tuple[float, float]] = {}  # run id -> (launch sent, reply received)

    async def pump() -> None:
        async for raw in ws:
            now = time.monotonic()
            frame = json.loads(raw)
            if frame.get("type") == "res":
                fut = pending_res.pop(frame.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(frame)
            elif frame.get("type") == "event" and isinstance(frame.get("payload"), dict):
                rid = frame["payload"].get("runId")
                if rid is None:
                    continue
                # each event name's first receipt per run: the latency breakdown
                seen.setdefault(rid, {}).setdefault(str(frame.get("event")), now)
                if frame.get("event") != "run.completed":
                    continue
                done_at[rid] = now
                w = waiters.pop(rid, None)
                if w is not None and not w.done():
                    w.set_result(now)

    pump_task = asyncio.create_task(pump())
    emit("READY", {})
    await asyncio.wait_for(go.wait(), 120)
    counter = itertools.count()
    lat: list[float] = []
    errors = [0]

    async def worker() -> None:
        while next(counter) < runs:
            rid = f"l{len(pending_res)}-{time.monotonic_ns()}"
            fut: asyncio.Future[Any] = loop.create_future()
            pending_res[rid] = fut
            t0 = time.monotonic()
            req = {
                "type": "req",
                "id": rid,
                "method": "launchRun",
                "params": {"workflow": opts.get("workflow", "one"), "input": {}},
            }
            await ws.send(json.dumps(req))
            res = await asyncio.wait_for(fut, 60)
            if not res.get("ok"):
                errors[0] += 1
                continue
            run_id = res["payload"]["runId"]
            launched[run_id] = (t0, time.monotonic())
            if run_id in done_at:
                t1 = done_at[run_id]
            else:
                w: asyncio.Future[float] = loop.create_future()
                waiters[run_id] = w
                t1 = await asyncio.wait_for(w, 60)
            lat.append(t1 - t0)

    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(conc))), 600)
    elapsed = time.monotonic() - t0
    pump_task.cancel()
    lat.sort()
    hist: Counter[int] = Counter()
    for v in lat:
        hist_add(hist, v)
    phases: dict[str, list[float]] = {"launchRun reply": []}
    for rid, (sent, replied) in launched.items():
        phases["launchRun reply"].append((replied - sent) * 1000)
        for name, at in seen.get(rid, {}).items():
            phases.setdefault(name, []).append((at - sent) * 1000)
    breakdown = {
        name: {"p50": sorted(v)[len(v) // 2], "n": len(v)} for name, v in phases.items() if v
    }
    emit(
        "RESULT",
        {
            "completed": len(lat),
            "elapsed": elapsed,
            "errors": errors[0],
            "hist": hist,
            "breakdown": breakdown,
        },
    )
    await ws.close()


KINDS = {"ws_rpc": ws_rpc, "fanout": fanout, "idle": idle, "sse": sse, "throughput": throughput}


def main() -> None:
    raise_nofile()
    kind, opts = sys.argv[1], json.loads(sys.argv[2])
    try:
        asyncio.run(KINDS[kind](opts))
    except Exception as exc:
        emit("ERROR", f"{kind}: {type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main()
