"""``start_server`` and ``serve_server``: the multi-workflow HTTP server's lifecycle (D9).

One :class:`~smithers_core.runtime.Runtime` (store, engine, event hub, run service) backs the
server, with a resolver that reloads stored runs' workflow files while they stay inside
``root_dir``; the app is :class:`~smithers_core.hosts.server_app.ServerApp`. Closing the
server suspends (never cancels) its runs (D6).
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from smithers_core.engine.options import EngineOptions
from smithers_core.errors import SmithersError
from smithers_core.hosts.listen import listening, refuse_insecure_bind
from smithers_core.hosts.options import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    SSE_POLL_MS,
    option_ms,
)
from smithers_core.hosts.server_app import ServerApp, create_server_app, make_resolver
from smithers_core.http import loop as serving_loop
from smithers_core.http.auth import resolve_token
from smithers_core.http.binding import BoundServer
from smithers_core.plugins import PluginHost
from smithers_core.runtime import Runtime
from smithers_core.store import SmithersDb, Store, default_db_url


@dataclass
class RunningServer:
    """An ``async with serve_server(...)`` result: address, app and runtime."""

    bound: BoundServer
    app: ServerApp
    runtime: Runtime

    @property
    def port(self) -> int:
        assert self.bound.port is not None
        return self.bound.port

    @property
    def url(self) -> str:
        return self.bound.url


@asynccontextmanager
async def serve_server(
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    db: str | SmithersDb | Store | None = None,
    auth_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    root_dir: str | None = None,
    allow_network: bool = False,
    headers_timeout: int | None = None,
    request_timeout: int | None = None,
    insecure: bool = False,
    *,
    options: EngineOptions | None = None,
    sse_keepalive_ms: int | None = None,
    sse_poll_ms: int | None = None,
    plugins: PluginHost | None = None,
    unconfined_tools: bool = False,
) -> AsyncIterator[RunningServer]:
    """Run the server inside the current event loop; leaving suspends its runs (D6).

    ``unconfined_tools=True`` lets the ``bash`` tool run without filesystem confinement where
    bubblewrap is unavailable (otherwise it refuses with ``SANDBOX_UNAVAILABLE``).
    """
    token = resolve_token(auth_token)
    refuse_insecure_bind(host, token, insecure)
    root = os.path.realpath(root_dir or os.getcwd())
    if not os.path.isdir(root):
        raise SmithersError("INVALID_INPUT", f"root_dir is not a directory: {root}")
    store: str | Store
    base_dir = Path.cwd()
    if db is None:
        store, base_dir = default_db_url(), Path(root)
    elif isinstance(db, SmithersDb):
        store = db.store
    else:
        store = db
    poll = option_ms(sse_poll_ms, "SMITHERS_SSE_POLL_MS", SSE_POLL_MS)
    runtime = Runtime(
        store,
        base_dir=base_dir,
        resolver=make_resolver(root),
        options=options,
        root_dir=root,
        allow_network=allow_network,
        plugins=plugins,
        sse_poll_ms=poll,
        unconfined_tools=unconfined_tools,
    )
    async with runtime:
        app = create_server_app(
            runtime,
            auth_token=token or "",
            max_body_bytes=max_body_bytes,
            root_dir=root,
            allow_network=allow_network,
            sse_keepalive_ms=sse_keepalive_ms,
        )
        async with listening(
            app,
            host=host,
            port=port,
            headers_timeout=headers_timeout,
            request_timeout=request_timeout,
        ) as bound:
            yield RunningServer(bound, app, runtime)


@dataclass
class ServerHandle:
    """What :func:`start_server` returns: where it listens and how to stop it."""

    port: int
    url: str
    app: ServerApp
    runtime: Runtime
    _close: Callable[[], None] = field(repr=False)

    def close(self) -> None:
        """Stop the server and suspend (never cancel) its runs (D6). Idempotent."""
        self._close()


def start_server(
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    db: str | SmithersDb | Store | None = None,
    auth_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    root_dir: str | None = None,
    allow_network: bool = False,
    headers_timeout: int | None = None,
    request_timeout: int | None = None,
    insecure: bool = False,
    **kwargs: Any,
) -> ServerHandle:
    """Start the server on a daemon thread; returns once the socket is bound (D9).

    Extra keyword arguments (``options``, ``sse_keepalive_ms``, ``sse_poll_ms``, ``plugins``,
    ``unconfined_tools``) go to :func:`serve_server`.
    """
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        try:
            async with serve_server(
                port,
                host,
                db,
                auth_token,
                max_body_bytes,
                root_dir,
                allow_network,
                headers_timeout,
                request_timeout,
                insecure,
                **kwargs,
            ) as running:
                stop = anyio.Event()
                box.update(running=running, stop=stop, token=anyio.lowlevel.current_token())
                ready.set()
                await stop.wait()
        except BaseException as exc:
            box["error"] = exc
            raise
        finally:
            ready.set()

    def run() -> None:
        try:
            serving_loop.run(main)
        except BaseException as exc:
            box.setdefault("error", exc)

    thread = threading.Thread(target=run, name="smithers-server", daemon=True)
    thread.start()
    ready.wait()
    if "running" not in box:
        error = box.get("error")
        if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        raise error if isinstance(error, BaseException) else RuntimeError("server failed")
    running: RunningServer = box["running"]
    closed = threading.Lock()

    def close() -> None:
        if not closed.acquire(blocking=False):
            return
        if thread.is_alive():
            try:
                anyio.from_thread.run_sync(box["stop"].set, token=box["token"])
            except RuntimeError:
                pass
            thread.join(30)

    return ServerHandle(running.port, running.url, running.app, running.runtime, close)


__all__ = ["RunningServer", "ServerHandle", "serve_server", "start_server"]
