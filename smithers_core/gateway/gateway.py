"""``Gateway``: the multi-run control plane (register, extend, listen, close).

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
import inspect
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from smithers_core import jsonutil
from smithers_core.auth import Identity, Peer
from smithers_core.contributions import HostInfo, Scheduler, Transport
from smithers_core.engine.options import EngineOptions
from smithers_core.engine.transitions import TERMINAL_RUN
from smithers_core.errors import SmithersError
from smithers_core.gateway import authn, catalog
from smithers_core.gateway.authn import AuthSetup, build_auth
from smithers_core.gateway.connection import Connection
from smithers_core.gateway.events import map_event
from smithers_core.gateway.extensions import ExtensionRegistry, call_maybe_async
from smithers_core.gateway.metrics import GatewayMetrics
from smithers_core.gateway.options import GatewayOptions, parse_options
from smithers_core.gateway.plugin_routes import PluginRoutes
from smithers_core.gateway.routes import HttpRoutes
from smithers_core.gateway.rpc import ACTIVE_STATUSES, Dispatcher, _config
from smithers_core.gateway.streams import RunStreams
from smithers_core.gateway.transport import gateway_protocol
from smithers_core.http.binding import BoundServer, is_loopback_host, serve_app
from smithers_core.plugins import PluginHost, load_plugins
from smithers_core.runtime import Runtime
from smithers_core.store import SmithersDb
from smithers_core.store.db import RUN_COLUMNS, camel_row
from smithers_core.store.sqlite import CommittedEvent
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.loader import load_workflow

log = logging.getLogger("smithers.gateway")

DEFAULT_OPERATOR_UI = {"path": "/console"}


class WebhookSignal(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    name: str
    correlation_id_path: str | None = None
    run_id_path: str | None = None
    payload_path: str | None = None


class WebhookRun(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    enabled: bool = True
    input_path: str | None = None


class WebhookOption(BaseModel):
    """``register(..., webhook=...)``: validated and stored; served by a webhook plugin."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    secret: str = Field(min_length=1)
    signature_header: str | None = None
    signature_prefix: str | None = None
    signal: WebhookSignal | None = None
    run: WebhookRun | None = None


class UiOption(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    entry: str | None = None
    path: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9/_:.-]*$")
    title: str | None = None
    props: dict[str, Any] | None = None


@dataclass
class Registration:
    key: str
    workflow: Workflow
    schedule: str | None = None
    webhook: WebhookOption | None = None
    ui: bool | UiOption | None = None
    system: bool = False


def _validate(model: type[BaseModel], value: Any, what: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise SmithersError("INVALID_INPUT", f"Invalid {what}: {exc}") from exc


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
        self.options: GatewayOptions = parse_options(options)
        self.plugins = plugins if plugins is not None else load_plugins()
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.engine_options = engine_options
        self.auth: AuthSetup = build_auth(
            self.options.auth, self.plugins, self.options.allowed_origins
        )
        self.workspace_root = str(Path(self.options.workspace_root or self.base_dir).resolve())
        self.workflows: dict[str, Registration] = {}
        self.extensions = ExtensionRegistry()
        self.metrics = GatewayMetrics()
        self.dispatcher = Dispatcher(self)
        self.http = HttpRoutes(self)
        self.run_streams = RunStreams(self)
        self.plugin_routes: PluginRoutes | None = None
        self.state_version = 0
        self.connections: set[Connection] = set()
        self.authed_count = 0
        self.preauth_count = 0
        self.started_at_ms = int(time.time() * 1000)
        self.runtime: Any = None
        self.services: dict[str, Any] = {"gateway": self}
        self._bound: BoundServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._last_seq: dict[str, int] = {}
        self._completed: OrderedDict[str, None] = OrderedDict()
        self._run_cache: OrderedDict[str, list[Any]] = OrderedDict()
        for namespace, definition in self.plugins.rpc_namespaces().items():
            self.extend(namespace, definition)

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
        if not isinstance(key, str) or not key.strip() or len(key) > 256:
            raise SmithersError("INVALID_INPUT", "Workflow key must be a non-empty string")
        wf = workflow if isinstance(workflow, Workflow) else load_workflow(os.fspath(workflow))
        if schedule is not None and (not isinstance(schedule, str) or not schedule.strip()):
            raise SmithersError("INVALID_INPUT", f"Invalid schedule for workflow '{key}'")
        hook = _validate(WebhookOption, dict(webhook), "webhook") if webhook is not None else None
        ui_value: bool | UiOption | None = (
            ui if ui is None or isinstance(ui, bool) else _validate(UiOption, dict(ui), "ui")
        )
        self.workflows[key] = Registration(key, wf, schedule, hook, ui_value, system)
        return self

    def extend(self, namespace: str, definition: Mapping[str, Any]) -> Gateway:
        """Add an extension namespace (reference section 8); raises ``INVALID_INPUT``."""
        self.extensions.add(namespace, definition)
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
        host_info = HostInfo(
            kind="gateway", config=self.options.model_dump(), services=self.services
        )
        schedulers = self.plugins.schedulers(host_info)
        self._check_configuration(schedulers)
        self.plugin_routes = PluginRoutes(
            self, self.plugins.transports(host_info), self.plugins.ui_mounts()
        )
        if (
            path is None
            and host is not None
            and not is_loopback_host(host)
            and not self.auth.enabled
            and not self.options.insecure
        ):
            raise SmithersError(
                "SERVER_INSECURE_BIND",
                f"Refusing to bind {host} without auth; configure [auth] or set insecure = true",
            )
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[BoundServer] = loop.create_future()
        self._stop = asyncio.Event()
        self._task = loop.create_task(
            self._main(ready, port, host, path, schedulers, host_info), name="smithers-gateway"
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

    def _check_configuration(self, schedulers: list[Scheduler]) -> None:
        provided: set[str] = set()
        for s in schedulers:
            provided |= set(getattr(s, "options", ()) or ())
        mounts = self.plugins.ui_mounts()
        for reg in self.workflows.values():
            if reg.schedule and "schedule" not in provided:
                raise _unsupported(f"'schedule' on workflow '{reg.key}' needs a scheduling plugin")
            if reg.webhook and "webhook" not in provided:
                raise _unsupported(f"'webhook' on workflow '{reg.key}' needs a webhook plugin")
            if reg.ui and not mounts:
                raise _unsupported(f"'ui' on workflow '{reg.key}' needs a UI plugin")
        if self.options.ui and not mounts:
            raise _unsupported("'ui' on the gateway needs a UI plugin")
        operator_ui = self.options.operator_ui
        if operator_ui not in (False, None, DEFAULT_OPERATOR_UI) and not mounts:
            raise _unsupported("'operator_ui' on the gateway needs a UI plugin")

    async def _main(
        self,
        ready: asyncio.Future[BoundServer],
        port: int,
        host: str | None,
        path: str | None,
        schedulers: list[Scheduler],
        host_info: HostInfo,
    ) -> None:
        assert self._stop is not None
        db = self.options.db
        if isinstance(db, SmithersDb):
            db = db.store
        started: list[Scheduler] = []
        started_transports: list[Transport] = []
        try:
            async with Runtime(
                db,
                base_dir=self.base_dir,
                resolver=self._resolve,
                options=self.engine_options,
                plugins=self.plugins,
                sse_poll_ms=self.options.out_of_process_event_bridge_poll_ms,
                event_window_size=self.options.event_window_size,
                max_event_windows=self.options.max_run_windows,
                terminal_window_grace_ms=self.options.terminal_window_grace_ms,
            ) as rt:
                self.runtime = rt
                self.services.update(
                    run_service=rt.service, event_hub=rt.hub, db=rt.db, store=rt.store
                )
                rt.hub.add_tap(
                    self._on_events, local_only=not self.options.out_of_process_event_bridge
                )
                self.started_at_ms = int(time.time() * 1000)
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    bound = await serve_app(
                        tg,
                        self.app,
                        host=host,
                        port=port,
                        path=path,
                        ws_per_message_deflate=self.options.ws_per_message_deflate,
                        ws_max_size=self.options.max_payload,
                        interface="asgi3",
                        **_timeouts(self.options),
                    )
                    tg.start_soon(self._tick_loop)
                    tg.start_soon(self._stream_heartbeat_loop)
                    assert self.plugin_routes is not None
                    transports = self.plugin_routes.transports
                    for transport in transports:
                        await transport.startup()
                        started_transports.append(transport)
                    for scheduler in schedulers:
                        await scheduler.start(host_info)
                        started.append(scheduler)
                    ready.set_result(bound)
                    await self._stop.wait()
                    for scheduler in reversed(started):
                        try:
                            await scheduler.stop()
                        except Exception:
                            log.exception("scheduler %s failed to stop", scheduler.name)
                    for conn in list(self.connections):
                        conn.close(1001, "gateway shutting down")
                    await bound.close()
                    for transport in reversed(started_transports):
                        try:
                            await transport.shutdown()
                        except Exception:
                            log.exception("transport %s failed to stop", transport.name)
                    tg.cancel_scope.cancel()
        except BaseException as exc:
            if not ready.done():
                if not isinstance(exc, Exception):
                    exc = SmithersError(
                        "SERVER_START_FAILED", f"The gateway failed to start: {exc!r}"
                    )
                ready.set_exception(exc)
                return
            raise
        finally:
            self._tg = None
            self.runtime = None
            self._run_cache.clear()
            self.connections.clear()
            self.authed_count = self.preauth_count = 0

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            if self.plugin_routes is not None:
                await self.plugin_routes.serve_ws(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def _resolve(self, row: dict[str, Any]) -> Workflow | None:
        config = _config(row)
        key = self.workflow_key(config, row.get("workflow_name"), row.get("workflow_path"))
        reg = self.workflows.get(key or "")
        return reg.workflow if reg is not None else None

    # -- auth ----------------------------------------------------------------------------------
    async def authenticate(
        self,
        transport: str,
        headers: Mapping[str, str],
        cookies: Mapping[str, str],
        peer: Peer,
        path: str,
        token: str | None,
    ) -> Identity:
        return await authn.authenticate(
            self.auth,
            transport=transport,
            headers=headers,
            cookies=cookies,
            peer=peer,
            path=path,
            insecure=self.options.insecure,
            token=token,
        )

    # -- events ----------------------------------------------------------------------------------
    def _on_events(self, events: list[CommittedEvent]) -> None:
        """The EventHub tap: every new event (this process's commits, plus other processes'
        when the out-of-process bridge is on) becomes one raw broadcast. The hub feeds each
        (runId, seq) once; ``run.completed`` is also de-duplicated per run."""
        for ev in events:
            self._run_cache.pop(ev.run_id, None)
            if self._last_seq.get(ev.run_id, -1) >= ev.seq:
                continue
            self._last_seq[ev.run_id] = ev.seq
            if ev.type == "RunStarted" and ev.seq == 0:
                self.metrics.runs_started.inc()
            name, payload = map_event(ev.event)
            if name == "run.completed":
                if ev.run_id in self._completed:
                    continue
                self._completed[ev.run_id] = None
                while len(self._completed) > 10_000:
                    self._completed.popitem(last=False)
                self._last_seq.pop(ev.run_id, None)
                self.metrics.runs_completed.labels(str(payload.get("status"))).inc()
            self.broadcast(name, payload)

    def broadcast(self, name: str, payload: Any) -> None:
        """Send a broadcast event to every authenticated socket that wants it."""
        self.state_version += 1
        version = self.state_version
        text = jsonutil.dumps(payload)
        run_id = payload.get("runId") if isinstance(payload, dict) else None
        for conn in self.connections:
            if conn.identity is None or conn.closed:
                continue
            if isinstance(run_id, str):
                if conn.subscribed and run_id not in conn.subscribed:
                    continue
                if run_id in conn.streamed_runs:
                    continue  # delivered as run.event frames on its streams instead
            conn.push_event(name, text, version)

    def send_event(self, conn: Connection, name: str, payload: Any) -> None:
        """A non-broadcast event: the current ``stateVersion``, not incremented."""
        conn.push_event(name, jsonutil.dumps(payload), self.state_version)

    def send_event_text(
        self, conn: Connection, name: str, payload_json: str, after: Callable[[], None]
    ) -> None:
        conn.push_event(name, payload_json, self.state_version, after)

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Run ``fn(*args)`` in the gateway's task group (cancelled by ``close()``); the
        function must handle its own errors. False (nothing started) while not running."""
        if self._tg is None:
            return False
        self._tg.start_soon(fn, *args)
        return True

    def spawn_cleanup(self, fn: Callable[[], Any]) -> None:
        async def run() -> None:
            try:
                await call_maybe_async(fn)
            except Exception:
                log.debug("extension cleanup failed", exc_info=True)

        if self._tg is not None:
            self._tg.start_soon(run)

    async def _tick_loop(self) -> None:
        interval = self.options.heartbeat_ms / 1000
        while True:
            await anyio.sleep(interval)
            text = jsonutil.dumps({"ts": int(time.time() * 1000)})
            for conn in list(self.connections):
                if conn.identity is not None and not conn.closed:
                    conn.push_event("tick", text, self.state_version)
            self.metrics.heartbeat_ticks.inc()

    async def _stream_heartbeat_loop(self) -> None:
        interval = self.options.stream_heartbeat_ms / 1000
        while True:
            await anyio.sleep(interval)
            self.run_streams.heartbeat()

    # -- payloads ----------------------------------------------------------------------------------
    def identity_payload(self) -> dict[str, Any]:
        return {
            "workspaceRoot": self.workspace_root,
            "backend": self.options.identity.backend,
            "version": self.options.identity.version,
            "pid": os.getpid(),
            "startedAtMs": self.started_at_ms,
        }

    def health_payload(self, *, include_uptime: bool) -> dict[str, Any]:
        out: dict[str, Any] = {} if include_uptime else {"ok": True}
        out.update(
            protocol=self.options.protocol,
            features=list(self.options.features),
            stateVersion=self.state_version,
        )
        if include_uptime:
            out["uptimeMs"] = int(time.time() * 1000) - self.started_at_ms
        out.update(
            identity=self.identity_payload(),
            workflowsLoaded=len(self.workflows),
            workflowsTotal=len(self.workflows),
        )
        return out

    def workflow_summaries(self, *, include_system: bool) -> list[dict[str, Any]]:
        out = []
        for key in sorted(self.workflows):
            reg = self.workflows[key]
            if reg.system and not include_system:
                continue
            item: dict[str, Any] = {"key": key}
            if reg.workflow.name != key:
                item["readableName"] = reg.workflow.name
            doc = inspect.getdoc(reg.workflow.build)
            if doc:
                item["description"] = doc.strip().splitlines()[0]
            ui_path = None
            if reg.ui:
                ui_path = (
                    reg.ui.path if isinstance(reg.ui, UiOption) and reg.ui.path else None
                ) or f"/workflows/{key}"
            item.update(hasUi=bool(reg.ui), uiPath=ui_path, system=reg.system)
            out.append(item)
        return out

    def workflow_key(
        self, config: Mapping[str, Any], workflow_name: Any, workflow_path: Any
    ) -> str | None:
        key = config.get("gatewayWorkflowKey")
        if isinstance(key, str) and key:
            return key
        if isinstance(workflow_name, str) and workflow_name in self.workflows:
            return workflow_name
        if isinstance(workflow_path, str) and workflow_path:
            return Path(workflow_path).stem
        return workflow_name if isinstance(workflow_name, str) else None

    def method_label(self, method: str) -> str:
        if method.startswith("ext."):
            return "ext"
        if catalog.canonical(method) in self.dispatcher.handlers:
            return method
        return "other"

    def _run_entry(self, run_id: str) -> list[Any]:
        """``[body, body's JSON or None]`` of ``getRun``. A terminal run's entry is cached
        until an event of that run commits (D13), so its JSON is encoded once."""
        cached = self._run_cache.get(run_id)
        if cached is not None:
            self._run_cache.move_to_end(run_id)
            return cached
        run: dict[str, Any] | None = self.runtime.db.get_run(run_id)
        if run is None:
            raise SmithersError("NOT_FOUND", f"Run not found: {run_id}")
        entry: list[Any] = [self.dispatcher.enrich(run, _config(run)), None]
        if entry[0].get("status") in TERMINAL_RUN:
            self._run_cache[run_id] = entry
            while len(self._run_cache) > 1000:
                self._run_cache.popitem(last=False)
        return entry

    def run_record(self, run_id: str) -> dict[str, Any]:
        """``getRun``'s body (cached for terminal runs, D13)."""
        record: dict[str, Any] = self._run_entry(run_id)[0]
        return record

    def run_record_json(self, run_id: str) -> str:
        """``getRun``'s body as JSON, encoded once per cached terminal run."""
        entry = self._run_entry(run_id)
        text: str | None = entry[1]
        if text is None:
            text = entry[1] = jsonutil.dumps(entry[0])
        return text

    async def query_runs(
        self,
        *,
        limit: int,
        offset: int = 0,
        status: str | None = None,
        statuses: tuple[str, ...] | None = None,
        workflow: str | None = None,
        parent_run_id: str | None = None,
        include_system: bool = False,
    ) -> list[dict[str, Any]]:
        conds: list[str] = []
        args: list[Any] = []
        if status:
            conds.append("status = ?")
            args.append(status)
        if statuses:
            conds.append(f"status IN ({', '.join('?' for _ in statuses)})")
            args.extend(statuses)
        if parent_run_id:
            conds.append("parent_run_id = ?")
            args.append(parent_run_id)
        sql = "SELECT * FROM _smithers_runs"
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        sql += " ORDER BY created_at_ms DESC, rowid DESC"
        enrich = self.dispatcher.enrich

        def q(c: Any) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            skipped = 0
            for r in c.execute(sql, args):
                row = dict(r)
                rec = enrich(camel_row(row, RUN_COLUMNS), _config(row))
                if not include_system and rec["system"]:
                    continue
                if workflow and rec["workflowKey"] != workflow:
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                out.append(rec)
                if len(out) >= limit:
                    break
            return out

        result: list[dict[str, Any]] = await self.runtime.store.aread(q)
        return result

    async def pending_approvals(
        self, run_id: str | None = None, workflow: str | None = None
    ) -> list[dict[str, Any]]:
        key_of = self.workflow_key

        def q(c: Any) -> list[dict[str, Any]]:
            out = []
            for r in c.execute(
                "SELECT a.run_id, a.node_id, a.iteration, a.requested_at_ms, a.request_json,"
                " r.workflow_name, r.workflow_path, r.config_json FROM _smithers_approvals a"
                " JOIN _smithers_runs r ON r.run_id = a.run_id WHERE a.status = 'requested'"
                " AND (? IS NULL OR a.run_id = ?) ORDER BY a.requested_at_ms, a.run_id",
                (run_id, run_id),
            ):
                request = jsonutil.loads(r[4]) or {}
                key = key_of(_config({"config_json": r[7]}), r[5], r[6])
                if workflow and key != workflow:
                    continue
                out.append(
                    {
                        "runId": r[0],
                        "workflowKey": key,
                        "nodeId": r[1],
                        "iteration": r[2],
                        "requestTitle": request.get("title") or r[1],
                        "requestSummary": request.get("summary"),
                        "requestedAtMs": r[3],
                        "approvalMode": request.get("mode") or "gate",
                        "options": request.get("options") or [],
                        "allowedScopes": request.get("allowedScopes") or [],
                        "allowedUsers": request.get("allowedUsers") or [],
                        "autoApprove": request.get("autoApprove"),
                    }
                )
            return out

        result: list[dict[str, Any]] = await self.runtime.store.aread(q)
        return result

    async def hello_payload(self, conn: Connection) -> dict[str, Any]:
        identity = conn.identity or Identity()
        runs = await self.query_runs(limit=1000, statuses=ACTIVE_STATUSES)
        approvals = await self.pending_approvals()
        return {
            "protocol": self.options.protocol,
            "features": list(self.options.features),
            "identity": self.identity_payload(),
            "policy": {"heartbeatMs": self.options.heartbeat_ms},
            "auth": {
                "sessionToken": conn.session_token,
                "role": identity.role,
                "scopes": list(identity.scopes),
                "userId": identity.user_id,
                "tokenId": identity.token_id,
            },
            "snapshot": {"runs": runs, "approvals": approvals, "stateVersion": self.state_version},
        }


def _unsupported(message: str) -> SmithersError:
    return SmithersError("CONFIGURATION_UNSUPPORTED", f"{message}; none is installed")


def _timeouts(options: GatewayOptions) -> dict[str, Any]:
    """The HTTP protocol: header and request timeouts (D9) plus ``TCP_NODELAY``."""
    return {"http_protocol": gateway_protocol(options.headers_timeout, options.request_timeout)}


__all__ = ["Gateway", "Registration", "UiOption", "WebhookOption"]
