"""``GatewayContext``: the narrow face of one gateway that its parts receive.

The dispatcher, the method families, run streams, the WebSocket and HTTP RPC transports and
the routing all work through this object, never through the ``Gateway`` class that builds it.
It is also the gateway's :class:`~smithers_core.contributions.HostContext`: what plugins are
given by ``smithers_transports``, ``smithers_schedulers``, ``smithers_rpc_methods`` and
``smithers_ui_mounts``. Its parts sit below it (options, auth, metrics, registrations,
extensions, methods, sockets, run views, routes); parts that sit above it reach each other
through it, by the small protocols declared here.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

import anyio.abc

from smithers_core import jsonutil
from smithers_core.auth import AuthRequest, Identity
from smithers_core.contributions import RouteSpec, RpcCall
from smithers_core.errors import SmithersError
from smithers_core.gateway.authn import AuthSetup, authenticate
from smithers_core.gateway.broadcast import Broadcaster
from smithers_core.gateway.changes import ChangeFeed
from smithers_core.gateway.extensions import ExtensionRegistry, call_maybe_async
from smithers_core.gateway.method_table import MethodTable
from smithers_core.gateway.metrics import GatewayMetrics
from smithers_core.gateway.options import GatewayOptions
from smithers_core.gateway.outbound import OutboundBudget
from smithers_core.gateway.preauth import PreAuthPool
from smithers_core.gateway.registry import WorkflowRegistry
from smithers_core.gateway.route_table import RouteTable
from smithers_core.gateway.run_views import RunViews
from smithers_core.registrations import Registration
from smithers_core.runtime import Runtime
from smithers_core.service import RunService
from smithers_core.store import SmithersDb, Store
from smithers_core.workflow.models import RunAuth

log = logging.getLogger("smithers.gateway")


class RunStreamsPort(Protocol):
    """What the ``streamRunEvents`` method needs of the gateway's run streams."""

    async def open(self, call: RpcCall, params: dict[str, Any]) -> Any: ...


class DispatchPort(Protocol):
    """What :meth:`GatewayContext.call` needs of the dispatcher."""

    async def call_as(self, identity: Identity, method: str, params: Any) -> Any: ...


class GatewayContext:
    """One gateway's shared parts and the runtime they use while it listens."""

    kind = "gateway"

    def __init__(self, settings: GatewayOptions, auth: AuthSetup, *, workspace_root: str) -> None:
        self.settings = settings
        self.auth = auth
        self.workspace_root = workspace_root
        self.metrics = GatewayMetrics()
        self.registry = WorkflowRegistry()
        self.extensions = ExtensionRegistry()
        self.methods = MethodTable()
        self.sockets = Broadcaster(
            self.metrics,
            PreAuthPool(
                settings.max_pre_auth_connections, settings.max_pre_auth_connections_per_peer
            ),
            OutboundBudget(settings.max_outbound_bytes_total),
        )
        self.views = RunViews(self.registry)
        self.routes = RouteTable()
        self._added_routes: list[tuple[str, list[RouteSpec]]] = []
        self.streams: RunStreamsPort | None = None
        self.dispatcher: DispatchPort | None = None
        self.changes = ChangeFeed()
        self.started_at_ms = int(time.time() * 1000)
        self._options: dict[str, Any] | None = None
        self._health_parts: tuple[Any, str, str] | None = None
        self._runtime: Runtime | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    # -- lifecycle (driven by the Gateway) -----------------------------------------------------
    def start(self, runtime: Runtime, tg: anyio.abc.TaskGroup) -> None:
        """The gateway is listening: reads use ``runtime``, tasks run in ``tg``."""
        self._runtime = runtime
        self._tg = tg
        self.views.bind(runtime)
        self.started_at_ms = int(time.time() * 1000)

    def stop(self) -> None:
        self._tg = None
        self._runtime = None
        self.views.bind(None)
        self.sockets.reset()

    @property
    def runtime(self) -> Runtime:
        """The open runtime; ``HOST_NOT_RUNNING`` while the gateway is not listening."""
        if self._runtime is None:
            raise SmithersError("HOST_NOT_RUNNING", "The gateway is not listening")
        return self._runtime

    @property
    def running(self) -> bool:
        return self._runtime is not None

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Run ``fn(*args)`` in the gateway's task group (cancelled by ``close()``); the
        function handles its own errors. False (nothing started) while not running."""
        if self._tg is None:
            return False
        self._tg.start_soon(fn, *args)
        return True

    def spawn_cleanup(self, fn: Callable[[], Any]) -> None:
        """Run a sync or async cleanup function soon; its failure is only logged."""

        async def run() -> None:
            try:
                await call_maybe_async(fn)
            except Exception:
                log.debug("cleanup failed", exc_info=True)

        self.spawn(run)

    # -- HostContext ---------------------------------------------------------------------------
    @property
    def options(self) -> Mapping[str, Any]:
        if self._options is None:
            self._options = self.settings.model_dump()
        return self._options

    @property
    def registrations(self) -> Mapping[str, Registration]:
        return self.registry

    @property
    def run_service(self) -> RunService:
        return self.runtime.service

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def db(self) -> SmithersDb:
        return self.runtime.db

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def broadcast(self, event: str, payload: Mapping[str, Any]) -> None:
        if event == "cron.triggered":  # whichever plugin schedules, upstream's counter counts
            self.metrics.cron_triggers.inc()
        self.sockets.broadcast(event, dict(payload))
        self.changes.on_broadcast(event)

    async def launch(
        self, key: str, run_input: Any, auth: RunAuth, *, run_id: str | None = None
    ) -> dict[str, Any]:
        reg = self.registry.require(key)
        run_id = run_id or str(uuid.uuid4())
        config = {
            "gatewayWorkflowKey": key,
            "gatewayTriggeredBy": auth.triggered_by,
            "gatewaySystem": reg.system,
        }
        await self.run_service.launch(
            reg.workflow,
            {} if run_input is None else run_input,
            run_id=run_id,
            auth=auth,
            config=config,
        )
        return {"runId": run_id, "workflow": key, "system": reg.system}

    def count(self, metric: str, **labels: str) -> None:
        self.metrics.count(metric, **labels)

    def add_routes(self, owner: str, routes: Sequence[RouteSpec]) -> None:
        self.routes.add(owner, routes)
        self._added_routes.append((owner, list(routes)))

    def use_routes(self, table: RouteTable) -> None:
        """Serve from ``table`` (built by ``listen()``), plus every route added so far."""
        for owner, routes in self._added_routes:
            table.add(owner, routes)
        self.routes = table

    async def authenticate(self, request: AuthRequest) -> Identity:
        return await authenticate(self.auth, request, insecure=self.settings.insecure)

    async def call(self, identity: Identity, method: str, params: Mapping[str, Any]) -> Any:
        if self.dispatcher is None:
            raise SmithersError("HOST_NOT_RUNNING", "The gateway has no dispatcher")
        return await self.dispatcher.call_as(identity, method, dict(params))

    def on_change(self, listener: Callable[[frozenset[str]], None]) -> Callable[[], None]:
        return self.changes.listen(listener)

    # -- shared payloads -------------------------------------------------------------------
    def identity_payload(self) -> dict[str, Any]:
        """``identity`` of ``health`` and ``hello``: who this gateway is."""
        return {
            # only a root the operator configured: never the process's working directory
            "workspaceRoot": self.workspace_root if self.settings.workspace_root else None,
            "backend": self.settings.identity.backend,
            "version": self.settings.identity.version,
            "pid": os.getpid(),
            "startedAtMs": self.started_at_ms,
        }

    def health_payload(self, *, include_uptime: bool) -> dict[str, Any]:
        """``GET /health`` (without uptime, with ``ok``) and the ``health`` method's payload."""
        out: dict[str, Any] = {} if include_uptime else {"ok": True}
        out.update(
            protocol=self.settings.protocol,
            features=list(self.settings.features),
            stateVersion=self.sockets.state_version,
        )
        if include_uptime:
            out["uptimeMs"] = int(time.time() * 1000) - self.started_at_ms
        out.update(
            identity=self.identity_payload(),
            workflowsLoaded=len(self.registry),
            workflowsTotal=len(self.registry),
        )
        return out

    def health_json(self) -> str:
        """The ``health`` method's payload as JSON: ``health_payload(include_uptime=True)``,
        with the parts that only change on start or a new workflow encoded once."""
        key = (self.started_at_ms, len(self.registry))
        parts = self._health_parts
        if parts is None or parts[0] != key:
            settings = self.settings
            head = jsonutil.dumps({"protocol": settings.protocol, "features": settings.features})
            tail = jsonutil.dumps(
                {
                    "identity": self.identity_payload(),
                    "workflowsLoaded": key[1],
                    "workflowsTotal": key[1],
                }
            )
            parts = self._health_parts = (key, head[:-1] + ',"stateVersion":', "," + tail[1:])
        uptime = int(time.time() * 1000) - self.started_at_ms
        return f'{parts[1]}{self.sockets.state_version},"uptimeMs":{uptime}{parts[2]}'


__all__ = ["DispatchPort", "GatewayContext", "RunStreamsPort"]
