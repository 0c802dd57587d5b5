"""Server processes: ``python -m bench.servers KIND '{json opts}'``.

Each prints ``READY {json}`` once bound on 127.0.0.1, then serves stdin commands
(``threads``, ``prof_start``, ``prof_stop PATH``, ``broadcast N``, ``quit``) answering
``OK {json}``. Kinds: ``gateway`` (system under test), ``server`` (start_server), and the
baselines ``bare_http`` (Starlette + uvicorn), ``bare_ws`` (websockets), ``starlette_ws``
(Starlette + uvicorn WebSocket) and ``bare_sse`` (Starlette SSE).

Every kind runs on uvloop unless its options say ``"loop": "asyncio"``; the uvicorn baselines
use httptools unless they say ``"http": "h11"`` (uvicorn[standard], what a user deploys).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import command_loop, emit, raise_nofile, thread_cpu

TOKEN = "bench-token"  # baselines' token; the gateway gets bench-token-<i>


def token_grants(count: int) -> dict[str, Any]:
    return {
        f"{TOKEN}-{i}": {"role": "operator", "scopes": ["*"], "userId": f"user:bench{i}"}
        for i in range(count)
    }


class Profiling:
    """pyinstrument on the event-loop thread, started and stopped by commands."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.profiler: Any = None

    def _call(self, fn: Any) -> Any:
        fut: Any = asyncio.run_coroutine_threadsafe(_as_coro(fn), self.loop)
        return fut.result(30)

    def start(self, _arg: str) -> Any:
        from pyinstrument import Profiler

        def go() -> None:
            self.profiler = Profiler(interval=0.001, async_mode="disabled")
            self.profiler.start()

        self._call(go)
        return {}

    def stop(self, arg: str) -> Any:
        def go() -> Any:
            self.profiler.stop()
            text = self.profiler.output_text(unicode=False, color=False, show_all=False)
            Path(arg).write_text(text)
            return {"path": arg}

        return self._call(go)


async def _as_coro(fn: Any) -> Any:
    return fn()


class Sampler:
    """All-thread stack sampler (pyinstrument sees one thread): every 2 ms, each thread's
    innermost smithers_core frame and innermost frame; idle waits are counted apart."""

    IDLE = ("wait", "get", "select", "poll", "_worker", "acquire", "sleep", "readline")

    def __init__(self) -> None:
        self.stop_ev = threading.Event()
        self.thread: threading.Thread | None = None
        self.counts: dict[str, Any] = {}

    def _run(self) -> None:
        import collections
        import sys as _sys

        me = threading.get_ident()
        names = {}
        while not self.stop_ev.wait(0.002):
            for t in threading.enumerate():
                names[t.ident] = t.name
            for ident, frame in _sys._current_frames().items():
                if ident == me:
                    continue
                name = names.get(ident, "?")
                if name.startswith("bench-"):
                    continue
                leaf = f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name})"
                own = None
                f: Any = frame
                while f is not None:
                    if "smithers_core" in f.f_code.co_filename:
                        where = f.f_code.co_filename.split("smithers_core/")[-1]
                        own = f"{f.f_code.co_name} ({where})"
                        break
                    f = f.f_back
                c = self.counts.setdefault(
                    name,
                    {
                        "samples": 0,
                        "idle": 0,
                        "own": collections.Counter(),
                        "leaf": collections.Counter(),
                    },
                )
                c["samples"] += 1
                if own is None and frame.f_code.co_name in self.IDLE:
                    c["idle"] += 1
                    continue
                c["own"][own or "(outside smithers_core)"] += 1
                c["leaf"][leaf] += 1

    def start(self, _arg: str) -> Any:
        self.counts = {}
        self.stop_ev.clear()
        self.thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self.thread.start()
        return {}

    def stop(self, arg: str) -> Any:
        self.stop_ev.set()
        if self.thread is not None:
            self.thread.join(5)
        lines = []
        for name, c in sorted(self.counts.items(), key=lambda kv: -kv[1]["samples"]):
            busy = c["samples"] - c["idle"]
            lines.append(f"== {name}: {c['samples']} samples, {busy} busy")
            for key, n in c["own"].most_common(12):
                lines.append(f"   {n:6d}  {100 * n / max(1, busy):5.1f}%  {key}")
            lines.append("   leaf frames:")
            for key, n in c["leaf"].most_common(6):
                lines.append(f"   {n:6d}  {100 * n / max(1, busy):5.1f}%  {key}")
        Path(arg).write_text("\n".join(lines) + "\n")
        return {"path": arg}


class Tracemalloc:
    """Python allocations grown between ``tm_start`` and ``tm_diff PATH`` (top 25 lines)."""

    def __init__(self) -> None:
        self.first: Any = None

    def start(self, _arg: str) -> Any:
        import tracemalloc

        tracemalloc.start(1)
        self.first = tracemalloc.take_snapshot()
        return {}

    def diff(self, arg: str) -> Any:
        import gc
        import tracemalloc

        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(self.first, "lineno")
        total = sum(st.size_diff for st in stats)
        lines = [f"total Python allocations grown: {total / 1024:.0f} KiB"]
        lines += [str(st) for st in stats[:25]]
        Path(arg).write_text("\n".join(lines) + "\n")
        tracemalloc.stop()
        return {"path": arg, "totalKiB": total / 1024}


def serve_commands(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, extra: Any) -> None:
    prof = Profiling(loop)
    tm = Tracemalloc()
    sampler = Sampler()
    handlers = {
        "sample_start": sampler.start,
        "sample_stop": sampler.stop,
        "tm_start": tm.start,
        "tm_diff": tm.diff,
        "threads": lambda _a: thread_cpu(),
        "prof_start": prof.start,
        "prof_stop": prof.stop,
        "quit": lambda _a: loop.call_soon_threadsafe(stop.set),
        **extra,
    }
    threading.Thread(target=command_loop, args=(handlers,), name="bench-cmd", daemon=True).start()


# --------------------------------------------------------------------------- gateway


async def gateway(opts: dict[str, Any]) -> None:
    import httpx

    import smithers_auth_token
    from bench import workflows as wfs
    from smithers_core.defaults import auth_none, gateway_methods, gateway_rpc, gateway_ws
    from smithers_core.gateway import Gateway
    from smithers_core.plugins import PluginHost

    tmp = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    host = PluginHost()
    host.register(auth_none, "core.auth_none")
    host.register(gateway_rpc, "core.gateway_rpc")
    host.register(gateway_ws, "core.gateway_ws")
    host.register(gateway_methods, "core.rpc_methods")
    host.register(smithers_auth_token, "smithers_auth_token")
    caps = int(opts.get("stream_caps", 1024))
    gw = Gateway(
        plugins=host,
        base_dir=tmp,
        db=str(opts.get("db") or "sqlite:///bench.db"),  # a PostgreSQL URL for its rows
        auth={"mode": "token", "tokens": token_grants(int(opts.get("tokens", 64)))},
        max_connections=int(opts.get("max_connections", 4000)),
        # every bench client is on 127.0.0.1: one peer opening batches of BATCH sockets
        max_pre_auth_connections_per_peer=64,
        max_run_streams=caps,
        max_run_streams_per_user=caps,
        max_run_streams_per_connection=8,
        max_run_streams_per_run=caps,
        run_stream_queue_limit=int(opts.get("queue_limit", 1000)),
        max_outbound_bytes_total=int(opts.get("outbound_total", 128 * 1024 * 1024)),
        ws_per_message_deflate=bool(opts.get("deflate", False)),
    )
    for wf in (wfs.one, wfs.logger, wfs.sig):
        gw.register(wf.name, wf)
    await gw.listen(port=0, host="127.0.0.1")
    url = gw.url or ""
    ready: dict[str, Any] = {"port": int(url.rsplit(":", 1)[1]), "url": url, "tmp": str(tmp)}
    ready["stack"] = loop_name()  # its HTTP protocol is its own choice
    if opts.get("seed", True):
        # a finished run whose getRun answer is about 1.3 KB
        async with httpx.AsyncClient(
            base_url=url, headers={"authorization": f"Bearer {TOKEN}-0"}, timeout=10
        ) as c:
            r = await c.post(
                "/v1/rpc/launchRun", json={"workflow": "one", "input": {"note": "n" * 240}}
            )
            run_id = r.json()["payload"]["runId"]
            for _ in range(500):
                r = await c.post("/v1/rpc/getRun", json={"runId": run_id})
                if r.json()["payload"]["status"] == "finished":
                    break
                await asyncio.sleep(0.01)
            ready.update(runId=run_id, getRun=r.json()["payload"], getRunBytes=len(r.content))
            h = await c.post("/v1/rpc/health", json={})
            ready.update(health=h.json()["payload"], healthBytes=len(h.content))
    stop = asyncio.Event()
    serve_commands(asyncio.get_running_loop(), stop, {})
    emit("READY", ready)
    await stop.wait()
    await gw.close()
    shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- start_server


async def server(opts: dict[str, Any]) -> None:
    from smithers_core.hosts.server import start_server

    tmp = Path(tempfile.mkdtemp(prefix="bench-srv-"))
    (tmp / "wf").mkdir()
    (tmp / "wf" / "sse_logger.py").write_text(
        "from bench.workflows import sse_logger  # noqa: F401\n"
    )
    handle = start_server(port=0, root_dir=str(tmp), db=f"sqlite:///{tmp}/srv.db", auth_token=TOKEN)
    stop = asyncio.Event()
    serve_commands(asyncio.get_running_loop(), stop, {})
    ready = {"port": handle.port, "url": handle.url, "workflowPath": "wf/sse_logger.py"}
    emit("READY", {**ready, "stack": "start_server (its own loop)"})
    await stop.wait()
    handle.close()
    shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- baselines


def loop_factory(name: str) -> Any:
    """``uvloop`` (the default) or ``asyncio`` (None: the standard loop)."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise RuntimeError("uvloop is missing: pip install -e '.[bench]'") from exc
    return uvloop.new_event_loop


def loop_name() -> str:
    mod = type(asyncio.get_running_loop()).__module__
    return "uvloop" if mod.startswith("uvloop") else "asyncio"


def _uvicorn(app: Any, deflate: bool = False, http: str = "httptools") -> Any:
    import uvicorn

    cfg = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=http,
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="off",
        ws_per_message_deflate=deflate,
    )
    return uvicorn.Server(cfg)


async def _serve_uvicorn(app: Any, opts: dict[str, Any], extra: Any = None) -> None:
    http = str(opts.get("http", "httptools"))
    srv = _uvicorn(app, bool(opts.get("deflate", False)), http)
    srv.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(srv.serve())
    for _ in range(1000):
        if srv.started:
            break
        await asyncio.sleep(0.005)
    port = srv.servers[0].sockets[0].getsockname()[1]
    stop = asyncio.Event()
    serve_commands(asyncio.get_running_loop(), stop, extra or {})
    stack = f"{http} + {loop_name()}"
    emit("READY", {"port": port, "url": f"http://127.0.0.1:{port}", "stack": stack})
    await stop.wait()
    srv.should_exit = True
    await asyncio.wait_for(task, 10)


def _authorized(header: str | None) -> bool:
    return header is not None and hmac.compare_digest(header, f"Bearer {TOKEN}")


async def bare_http(opts: dict[str, Any]) -> None:
    """Bare Starlette: check the bearer token, parse the body, answer the same payloads."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    payloads: dict[str, Any] = opts["payloads"]

    async def rpc(request: Request) -> Response:
        if not _authorized(request.headers.get("authorization")):
            return JSONResponse({"ok": False}, status_code=401)
        body = await request.body()
        json.loads(body or b"{}")
        payload = payloads.get(request.path_params["method"])
        if payload is None:
            return JSONResponse({"ok": False}, status_code=404)
        frame = {"type": "res", "id": str(uuid.uuid4()), "ok": True, "apiVersion": "v1"}
        frame["payload"] = payload
        return JSONResponse(frame)

    app = Starlette(routes=[Route("/v1/rpc/{method}", rpc, methods=["POST"])])
    await _serve_uvicorn(app, opts)


async def starlette_ws(opts: dict[str, Any]) -> None:
    """Bare Starlette + uvicorn WebSocket: challenge, token-checked connect, then idle."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    hello: Any = opts.get("hello", {})

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(json.dumps({"type": "event", "event": "connect.challenge"}))
        try:
            while True:
                msg = json.loads(await ws.receive_text())
                token = ((msg.get("params") or {}).get("auth") or {}).get("token")
                ok = token is not None and token.startswith(TOKEN)
                await ws.send_text(
                    json.dumps({"type": "res", "id": msg.get("id"), "ok": ok, "payload": hello})
                )
        except WebSocketDisconnect:
            pass

    app = Starlette(routes=[WebSocketRoute("/", endpoint)])
    await _serve_uvicorn(app, opts)


def _run_event(run_id: str, i: int, state_version: int) -> dict[str, Any]:
    """A frame shaped like the gateway's run.event for one task.output line."""
    inner = {
        "runId": run_id,
        "nodeId": "log",
        "output": f"{time.time():.6f} line {i}",
        "stream": "stdout",
    }
    return {
        "type": "event",
        "event": "run.event",
        "payload": {
            "streamId": "00000000-0000-0000-0000-000000000000",
            "apiVersion": "v1",
            "type": "RunEvent",
            "runId": run_id,
            "event": "task.output",
            "payload": inner,
            "seq": i + 1,
            "stateVersion": state_version,
            "epoch": "00000000-0000-0000-0000-000000000001",
        },
        "seq": i + 1,
        "stateVersion": state_version,
        "apiVersion": "v1",
    }


async def bare_ws(opts: dict[str, Any]) -> None:
    """Bare websockets: the same JSON round trips, and a broadcast of run.event payloads."""
    from websockets.asyncio.server import broadcast, serve

    getrun: Any = opts.get("getRun", {})
    hello: Any = opts.get("hello", {})
    subscribers: set[Any] = set()
    loop = asyncio.get_running_loop()

    async def handler(ws: Any) -> None:
        await ws.send(json.dumps({"type": "event", "event": "connect.challenge"}))
        try:
            async for raw in ws:
                msg = json.loads(raw)
                method = msg.get("method")
                if method == "connect":
                    token = ((msg.get("params") or {}).get("auth") or {}).get("token", "")
                    payload = hello if token.startswith(TOKEN) else None
                elif method == "streamRunEvents":
                    subscribers.add(ws)
                    payload = {"streamId": "s", "runId": msg["params"]["runId"]}
                else:
                    payload = getrun
                frame = {"type": "res", "id": msg.get("id"), "ok": True, "apiVersion": "v1"}
                frame["payload"] = payload
                await ws.send(json.dumps(frame))
        finally:
            subscribers.discard(ws)

    async def produce(n: int, rate: int) -> None:
        conns = list(subscribers)
        t0 = time.monotonic()
        for i in range(n):
            if rate:
                ahead = t0 + i / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            broadcast(conns, json.dumps(_run_event("bare-run", i, i)))
            # backpressure: let the kernel drain before buffers grow past 256 KiB
            while any(c.transport.get_write_buffer_size() > 262_144 for c in conns[:8]):
                await asyncio.sleep(0.001)
            await asyncio.sleep(0)

    def start_broadcast(arg: str) -> Any:
        n, _, rate = arg.partition(" ")
        asyncio.run_coroutine_threadsafe(produce(int(n), int(rate or 0)), loop)
        return {"subscribers": len(subscribers), "t0": time.time()}

    compression = "deflate" if opts.get("deflate") else None
    async with serve(
        handler, "127.0.0.1", 0, compression=compression, max_size=2**24, max_queue=None
    ) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        stop = asyncio.Event()
        serve_commands(loop, stop, {"broadcast": start_broadcast})
        stack = f"websockets + {loop_name()}"
        emit("READY", {"port": port, "url": f"http://127.0.0.1:{port}", "stack": stack})
        await stop.wait()


async def bare_sse(opts: dict[str, Any]) -> None:
    """Bare Starlette SSE: one queue per client, ``broadcast N`` pushes N events to all."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    queues: set[asyncio.Queue[bytes | None]] = set()
    loop = asyncio.get_running_loop()

    async def events(request: Request) -> Response:
        if not _authorized(request.headers.get("authorization")):
            return JSONResponse({"ok": False}, status_code=401)
        q: asyncio.Queue[bytes | None] = asyncio.Queue()
        queues.add(q)

        async def body() -> Any:
            try:
                yield b"retry: 1000\n\n"
                while True:
                    item = await q.get()
                    if item is None:
                        return
                    yield item
            finally:
                queues.discard(q)

        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    async def produce(n: int, rate: int) -> None:
        targets = list(queues)
        t0 = time.monotonic()
        for i in range(n):
            if rate:
                ahead = t0 + i / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            ev = {
                "type": "NodeOutput",
                "runId": "bare-run",
                "timestampMs": int(time.time() * 1000),
                "nodeId": "log",
                "iteration": 0,
                "attempt": 1,
                "text": f"{time.time():.6f} line {i}",
                "stream": "stdout",
            }
            data = f"event: smithers\ndata: {json.dumps(ev)}\nid: {i}\n\n".encode()
            for q in targets:
                q.put_nowait(data)
            await asyncio.sleep(0)
        fin = json.dumps({"type": "RunFinished", "runId": "bare-run"})
        for q in targets:
            q.put_nowait(f"event: smithers\ndata: {fin}\nid: {n}\n\n".encode())
            q.put_nowait(None)

    def start_broadcast(arg: str) -> Any:
        n, _, rate = arg.partition(" ")
        asyncio.run_coroutine_threadsafe(produce(int(n), int(rate or 0)), loop)
        return {"subscribers": len(queues), "t0": time.time()}

    app = Starlette(routes=[Route("/v1/runs/{run_id}/events", events)])
    await _serve_uvicorn(app, opts, {"broadcast": start_broadcast})


KINDS = {
    "gateway": gateway,
    "server": server,
    "bare_http": bare_http,
    "bare_ws": bare_ws,
    "starlette_ws": starlette_ws,
    "bare_sse": bare_sse,
}


def main() -> None:

    raise_nofile()
    kind, opts = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    try:
        with asyncio.Runner(loop_factory=loop_factory(str(opts.get("loop", "uvloop")))) as runner:
            runner.run(KINDS[kind](opts))
    except Exception as exc:
        emit("ERROR", f"{kind}: {type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main()
