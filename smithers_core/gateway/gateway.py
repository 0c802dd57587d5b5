"""``Gateway``: the multi-run control plane (register, extend, listen, close).

The composition root of the gateway: it builds the :class:`GatewayContext` its parts share,
collects RPC methods, transports, schedulers and UI mounts from plugins, and runs them.
``listen()`` opens one :class:`~smithers_core.runtime.Runtime` over the ``db`` store, binds
uvicorn (127.0.0.1 unless ``host`` is given, or a Unix socket with ``path``) and returns once
bound. Everything runs in one background task owned by the gateway, so ``listen()`` and
``close()`` may be awaited from anywhere on the loop. ``close()`` closes every socket, stops
the schedulers and the server (draining in-flight HTTP requests) and then closes the runtime,
which suspends (never cancels) the runs it was executing (D6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from smithers_core.contributions import Scheduler, Transport, UiMount
from smithers_core.engine.options import EngineOptions
from smithers_core.errors import SmithersError, sole_error
from smithers_core.gateway.authn import AuthSetup, build_auth
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.dispatch import Dispatcher
from smithers_core.gateway.endpoints import core_routes
from smithers_core.gateway.http_protocol import gateway_protocol
from smithers_core.gateway.options import GatewayOptions, parse_options
from smithers_core.gateway.route_table import RouteTable
from smithers_core.gateway.routing import GatewayApp
from smithers_core.gateway.run_views import run_config
from smithers_core.gateway.streams import RunStreams
from smithers_core.http.binding import BoundServer, serve_app
from smithers_core.http.timeouts import http_impl
from smithers_core.loopback import is_loopback_host
from smithers_core.plugins import PluginHost, load_plugins
from smithers_core.registrations import Registration, make_registration
from smithers_core.runtime import Runtime
from smithers_core.store import SmithersDb
from smithers_core.workflow.definition import Workflow

log = logging.getLogger("smithers.gateway")


class Gateway:
    """The control plane. ``Gateway(**options)``; see :class:`GatewayOptions` for options.

    Extra keyword arguments: ``plugins`` (a loaded :class:`PluginHost`; default: discover),
    ``base_dir`` (folder relative store URLs resolve against; default: working directory) and
    ``engine_options`` (:class:`EngineOptions`; default: from the environment).
    """

    def __init__(
        self,
        *,
        plugins: PluginHost | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        engine_options: EngineOptions | None = None,
        **options: Any,
    ) -> None:
        settings: GatewayOptions = parse_options(options)
        self.plugins = plugins if plugins is not None else load_plugins()
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.engine_options = engine_options
        auth = build_auth(settings.auth, self.plugins, settings.allowed_origins)
        root = str(Path(settings.workspace_root or self.base_dir).resolve())
        ctx = self.context = GatewayContext(settings, auth, workspace_root=root)
        self.run_streams = ctx.streams = RunStreams(ctx)
        ctx.dispatcher = Dispatcher(ctx)
        self.app = GatewayApp(ctx)
        for owner, method in self.plugins.rpc_methods(ctx):
            ctx.methods.add(owner, method)
        for namespace, definition in self.plugins.rpc_namespaces().items():
            self.extend(namespace, definition)
        self._bound: BoundServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    @property
    def options(self) -> GatewayOptions:
        return self.context.settings

    @property
    def auth(self) -> AuthSetup:
        """The configured auth mode (``auth.mode``; ``"none"`` when auth is off)."""
        return self.context.auth

    @property
    def workflows(self) -> Mapping[str, Registration]:
        """Registered workflows by key."""
        return self.context.registry

    @property
    def runtime(self) -> Runtime:
        """The open runtime (store, engine, hub, run service) while listening."""
        return self.context.runtime

    # -- registration ------------------------------------------------------------------------
    def register(
        self,
        key: str,
        workflow: Workflow | str | os.PathLike[str],
        schedule: str | None = None,
        webhook: Mapping[str, Any] | None = None,
        ui: bool | Mapping[str, Any] | None = None,
        *,
        system: bool = False,
    ) -> Gateway:
        """Register ``workflow`` (a :class:`Workflow` or a ``file.py[:name]`` path) as ``key``.

        Registering a key again replaces it. ``schedule``, ``webhook`` and ``ui`` are validated
        and stored; ``listen()`` fails with ``CONFIGURATION_UNSUPPORTED`` while no installed
        plugin implements them.
        """
        reg = make_registration(key, workflow, schedule, webhook, ui, system=system)
        self.context.registry.add(reg)
        return self

    def extend(self, namespace: str, definition: Mapping[str, Any]) -> Gateway:
        """Add an extension namespace (reference section 8); raises ``INVALID_INPUT``."""
        self.context.extensions.add(namespace, definition)
        return self

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str | None:
        return self._bound.url if self._bound is not None else None

    @property
    def port(self) -> int | None:
        return self._bound.port if self._bound is not None else None

    async def listen(
        self, port: int = 7331, host: str | None = None, path: str | None = None
    ) -> BoundServer:
        """Bind and serve; returns once bound. Idempotent while listening."""
        if self._bound is not None:
            return self._bound
        ctx = self.context
        schedulers = self.plugins.schedulers(ctx)
        owned = self.plugins.ui_mounts_by_plugin(ctx)
        mounts = [mount for _owner, mount in owned]
        provided = {option for s in schedulers for option in getattr(s, "options", ()) or ()}
        ctx.registry.check_options(
            provided,
            has_ui=bool(mounts),
            ui=ctx.settings.ui,
            operator_ui=ctx.settings.operator_ui,
        )
        if (
            path is None
            and host is not None
            and not is_loopback_host(host)
            and not ctx.auth.enabled
            and not ctx.settings.insecure
        ):
            raise SmithersError(
                "SERVER_INSECURE_BIND",
                f"Refusing to bind {host} without auth; configure [auth] or set insecure = true",
            )
        transports = self._mount(self.plugins.transports(ctx), owned)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[BoundServer] = loop.create_future()
        self._stop = asyncio.Event()
        self._task = loop.create_task(
            self._main(ready, port, host, path, transports, schedulers), name="smithers-gateway"
        )
        try:
            bound = await ready
        except BaseException:
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
            raise
        self._bound = bound
        return bound

    def _mount(
        self, transports: list[Transport], mounts: list[tuple[str, UiMount]]
    ) -> list[Transport]:
        """A fresh route table: core's routes, the transports' routes and the UI mounts."""
        table = RouteTable()
        table.add("core", core_routes(self.context, [mount for _owner, mount in mounts]))
        for transport in transports:
            table.add(transport.name, transport.routes)
        for owner, mount in mounts:
            table.add_mount(owner, mount)
        self.context.use_routes(table)
        return transports

    async def close(self) -> None:
        """Close sockets, stop schedulers and the server, then suspend running runs (D6)."""
        task, self._task = self._task, None
        if task is None:
            return
        if self._stop is not None:
            self._stop.set()
        try:
            await task
        finally:
            self._bound = None

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _resolve(self, row: dict[str, Any]) -> Workflow | None:
        return self.context.registry.workflow_of(row, run_config(row))

    def _runtime(self) -> Runtime:
        settings = self.context.settings
        db = settings.db
        if isinstance(db, SmithersDb):
            db = db.store
        return Runtime(
            db,
            base_dir=self.base_dir,
            resolver=self._resolve,
            options=self.engine_options,
            plugins=self.plugins,
            sse_poll_ms=settings.out_of_process_event_bridge_poll_ms,
            event_window_size=settings.event_window_size,
            max_event_windows=settings.max_run_windows,
            terminal_window_grace_ms=settings.terminal_window_grace_ms,
            unconfined_tools=settings.unconfined_tools,
        )

    async def _main(
        self,
        ready: asyncio.Future[BoundServer],
        port: int,
        host: str | None,
        path: str | None,
        transports: list[Transport],
        schedulers: list[Scheduler],
    ) -> None:
        assert self._stop is not None
        ctx = self.context
        settings = ctx.settings
        started: list[Scheduler] = []
        started_transports: list[Transport] = []
        try:
            async with self._runtime() as rt, anyio.create_task_group() as tg:
                local_only = not settings.out_of_process_event_bridge
                rt.hub.add_tap(ctx.views.on_events, local_only=local_only)
                rt.hub.add_tap(ctx.sockets.on_events, local_only=local_only)
                rt.hub.add_tap(ctx.changes.on_events, local_only=local_only)
                ctx.start(rt, tg)
                bound = await serve_app(
                    tg,
                    self.app,
                    host=host,
                    port=port,
                    path=path,
                    ws_per_message_deflate=settings.ws_per_message_deflate,
                    ws_max_size=settings.max_payload,
                    interface="asgi3",
                    http_protocol=gateway_protocol(
                        settings.headers_timeout,
                        settings.request_timeout,
                        ctx.sockets.pre_auth.saturated,
                        http_impl(settings.http),
                    ),
                )
                tg.start_soon(self._every, settings.heartbeat_ms, ctx.sockets.tick)
                tg.start_soon(self._every, settings.stream_heartbeat_ms, self.run_streams.heartbeat)
                for transport in transports:
                    await transport.startup()
                    started_transports.append(transport)
                for scheduler in schedulers:
                    await scheduler.start(ctx)
                    started.append(scheduler)
                ready.set_result(bound)
                await self._stop.wait()
                for scheduler in reversed(started):
                    try:
                        await scheduler.stop()
                    except Exception:
                        log.exception("scheduler %s failed to stop", scheduler.name)
                ctx.sockets.close_all(1001, "gateway shutting down")
                await bound.close()
                for transport in reversed(started_transports):
                    try:
                        await transport.shutdown()
                    except Exception:
                        log.exception("transport %s failed to stop", transport.name)
                tg.cancel_scope.cancel()
        except BaseException as exc:
            if not ready.done():
                exc = sole_error(exc)  # e.g. SERVER_BIND_FAILED, not an ExceptionGroup
                if not isinstance(exc, Exception):
                    exc = SmithersError(
                        "SERVER_START_FAILED", f"The gateway failed to start: {exc!r}"
                    )
                ready.set_exception(exc)
                return
            raise
        finally:
            ctx.stop()

    @staticmethod
    async def _every(interval_ms: int, fn: Any) -> None:
        """Call ``fn()`` every ``interval_ms`` until cancelled (one task for every socket)."""
        interval = interval_ms / 1000
        while True:
            await anyio.sleep(interval)
            fn()


__all__ = ["Gateway"]
