"""``create_serve_app``: the app of one loaded workflow and one run (reference/server.md 3).

``adapter`` is the open :class:`~smithers_core.runtime.Runtime` executing the run (upstream
passes its DB adapter; here the store, event hub and run service travel together). Routes:
``GET /health`` (no auth), ``GET /``, ``GET /events`` (the shared SSE of D9), ``GET /frames``,
``POST /approve/{nodeId}``, ``POST /deny/{nodeId}``, ``POST /cancel``, ``GET /metrics`` and
``POST /signals/{signalName}`` (alias ``/signal/{signalName}``), all but ``/metrics`` the
shared run routes on the app's own run (:class:`~smithers_core.hosts.run_routes.OwnRun`).

``abort`` (an ``anyio.Event`` or a ``threading.Event``) works both ways: ``POST /cancel`` sets
it, and setting it from outside cancels the run (:class:`AbortWatch`).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

import anyio
from starlette.types import Receive, Scope, Send

from smithers_core.errors import SmithersError
from smithers_core.hosts.app import HostApp
from smithers_core.hosts.listen import listening, refuse_insecure_bind
from smithers_core.hosts.options import DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT
from smithers_core.hosts.run_routes import Abort, OwnRun, RunRoutes
from smithers_core.hosts.surface import SERVE
from smithers_core.http.auth import resolve_token
from smithers_core.http.binding import BoundServer
from smithers_core.ids import check_run_id
from smithers_core.runtime import Runtime
from smithers_core.workflow.definition import Workflow

ABORT_POLL_S = 0.05
"""How often a ``threading.Event`` abort is looked at (an ``anyio.Event`` is awaited)."""


class AbortWatch:
    """Cancels the served run once ``abort`` is set, by whoever sets it.

    It runs in the runtime's engine (cancelled when the runtime closes), started as soon as
    the app is built on the event loop, else by the app's first request.
    """

    def __init__(self, runtime: Runtime, run_id: str, abort: Abort) -> None:
        self.rt = runtime
        self.run_id = run_id
        self.abort = abort
        self.started = False

    def start(self) -> None:
        """Start watching, if the runtime is open and this is its event loop."""
        if self.started:
            return
        try:
            asyncio.get_running_loop()
            engine = self.rt.engine
        except (RuntimeError, AttributeError):
            return
        self.started = engine.start_soon(self._watch)

    async def _watch(self) -> None:
        abort = self.abort
        if isinstance(abort, threading.Event):
            while not abort.is_set():
                await anyio.sleep(ABORT_POLL_S)
        else:
            await abort.wait()
        try:
            await self.rt.service.cancel(self.run_id)
        except SmithersError:
            pass  # already terminal (cancelled through /cancel, or finished): nothing to do


class ServeApp(HostApp):
    """The ASGI app of one run."""

    def __init__(
        self,
        workflow: Workflow,
        adapter: Runtime,
        run_id: str,
        abort: Abort | None,
        *,
        auth_token: str | None = None,
        metrics: bool = True,
        sse_keepalive_ms: int | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(
            adapter,
            SERVE,
            auth_token=auth_token,
            max_body_bytes=max_body_bytes,
            sse_keepalive_ms=sse_keepalive_ms,
        )
        runs = RunRoutes(self, OwnRun(check_run_id(run_id), workflow, abort))
        add = self.router.add
        add("/", runs.status)
        add("/events", runs.events)
        add("/frames", runs.frames)
        add("/approve/{nodeId}", runs.approve, ("POST",))
        add("/deny/{nodeId}", runs.deny, ("POST",))
        add("/cancel", runs.cancel, ("POST",))
        add("/signals/{signalName}", runs.signal, ("POST",))
        add("/signal/{signalName}", runs.signal, ("POST",))
        if metrics:
            add("/metrics", self.metrics_route)
        self.abort_watch = AbortWatch(adapter, run_id, abort) if abort is not None else None
        if self.abort_watch is not None:
            self.abort_watch.start()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.abort_watch is not None and not self.abort_watch.started:
            self.abort_watch.start()
        await super().__call__(scope, receive, send)


def create_serve_app(
    workflow: Workflow,
    adapter: Runtime,
    run_id: str,
    abort: Abort | None = None,
    auth_token: str | None = None,
    metrics: bool = True,
    *,
    sse_keepalive_ms: int | None = None,
) -> ServeApp:
    """The app of ``run_id``; ``auth_token`` falls back to ``SMITHERS_API_KEY`` (D9)."""
    return ServeApp(
        workflow,
        adapter,
        run_id,
        abort,
        auth_token=auth_token,
        metrics=metrics,
        sse_keepalive_ms=sse_keepalive_ms,
    )


async def serve_up(
    runtime: Runtime,
    workflow: Workflow,
    run_id: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    auth_token: str | None = None,
    metrics: bool = True,
    ready: Callable[[BoundServer], Any] | None = None,
    insecure: bool = False,
    headers_timeout: int | None = None,
    request_timeout: int | None = None,
) -> None:
    """Serve the app of an already launched run until cancelled (``smithers up --serve``).

    Binds ``host:port`` (``SERVER_INSECURE_BIND`` for a non-loopback host without a token
    unless ``insecure``), calls ``ready(bound)`` once listening, and keeps serving after the
    run ends so its final state can be read. Cancel the calling task (Ctrl+C) to stop; the
    caller's runtime then suspends the run (D6).
    """
    token = resolve_token(auth_token)
    refuse_insecure_bind(host, token, insecure)
    app = create_serve_app(workflow, runtime, run_id, anyio.Event(), token or "", metrics)
    async with listening(
        app,
        host=host,
        port=port,
        headers_timeout=headers_timeout,
        request_timeout=request_timeout,
    ) as bound:
        if ready is not None:
            result = ready(bound)
            if inspect.isawaitable(result):
                await result
        await anyio.sleep_forever()


__all__ = ["AbortWatch", "ServeApp", "create_serve_app", "serve_up"]
