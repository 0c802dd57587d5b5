"""The objects plugins and hosts exchange through hooks: the host a hook is asked by, and the
routes, RPC methods, schedulers, UI mounts, observers and commands plugins hand back.

pluggy is synchronous: hooks return these plain objects and core awaits their async methods.
No hook ever returns a coroutine.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from smithers_core.auth import AuthMode, AuthRequest, Identity
from smithers_core.registrations import Registration
from smithers_core.service import RunService
from smithers_core.store import SmithersDb, Store
from smithers_core.workflow.models import RunAuth

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


DEFAULT_ROUTE_SCOPE = "run:read"


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One HTTP or WebSocket route a transport contributes.

    ``auth="required"`` (the default) routes are wrapped by core with the Host/Origin gates,
    authentication and the ``scope`` check (default ``run:read``; ``None`` admits any
    authenticated caller, for endpoints that check scopes per request), so a plugin cannot
    expose an unauthenticated route by accident. ``auth="public"`` routes skip all of that
    (a protocol that authenticates in-band, like the WebSocket RPC's ``connect``, is public)
    and are listed by ``smithers plugins list``.

    ``endpoint`` is Starlette-style (``endpoint(request)`` returning a response, or
    ``endpoint(websocket)``), or a raw ASGI app when ``asgi=True``. ``prefix=True`` matches
    ``path`` and every path that starts with it; exact routes win over prefixes.
    ``error_body(code, message, details)`` is the JSON body an HTTP route's authentication or
    scope failure answers (with the code's status); by default the RPC error frame.
    ``sign_in``: a browser page request (``Accept: text/html``) failing authentication is
    redirected there (302, ``?next=`` the path it asked for) instead.
    """

    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...] = ("GET",)
    auth: Literal["required", "public"] = "required"
    scope: str | None = DEFAULT_ROUTE_SCOPE
    websocket: bool = False
    name: str | None = None
    asgi: bool = False
    prefix: bool = False
    error_body: Callable[[str, str, Mapping[str, Any] | None], Any] | None = None
    sign_in: str | None = None


@runtime_checkable
class HostContext(Protocol):
    """The host a contribution hook is called for: what plugins may know and do there.

    ``kind`` is ``"gateway"``, or ``"cli"`` while ``smithers plugins list`` only reads the
    routes (no registrations, nothing running); a plugin should return nothing for kinds it
    does not know. ``options`` are the host's options (for the gateway every ``Gateway``
    option in snake_case, ``ui`` and ``operator_ui`` included) and ``registrations`` every
    registered workflow with its options, by key. ``run_service``, ``store`` and ``db`` exist
    once the host is listening (before that they raise ``HOST_NOT_RUNNING``): schedulers use
    them from ``start()`` on, RPC handlers and routes while serving.
    """

    @property
    def kind(self) -> str: ...

    @property
    def options(self) -> Mapping[str, Any]: ...

    @property
    def registrations(self) -> Mapping[str, Registration]: ...

    @property
    def run_service(self) -> RunService: ...

    @property
    def store(self) -> Store: ...

    @property
    def db(self) -> SmithersDb: ...

    def now_ms(self) -> int:
        """The host's clock, in epoch milliseconds."""
        ...

    def broadcast(self, event: str, payload: Mapping[str, Any]) -> None:
        """Send a gateway event (``cron.triggered`` ...) to every connected client."""
        ...

    def add_routes(self, owner: str, routes: Sequence[RouteSpec]) -> None:
        """Mount more routes, wrapped like transport routes (D3: ``auth`` and ``scope``)."""
        ...

    async def launch(
        self, key: str, run_input: Any, auth: RunAuth, *, run_id: str | None = None
    ) -> dict[str, Any]:
        """Start a run of the workflow registered as ``key`` as ``auth`` (``ctx.auth``),
        recording the key and trigger in its config as every gateway launch does; returns
        ``{runId, workflow, system}``. ``NOT_FOUND`` for an unknown key."""
        ...

    def count(self, metric: str, **labels: str) -> None:
        """Add one to a counter the host declares on ``/metrics`` (``webhooks_received``,
        ``webhooks_rejected`` with ``reason`` ...); an unknown name is ``INVALID_INPUT``."""
        ...

    async def authenticate(self, request: AuthRequest) -> Identity:
        """Core's gates, then the configured auth mode; raises ``UNAUTHORIZED``."""
        ...

    async def call(self, identity: Identity, method: str, params: Mapping[str, Any]) -> Any:
        """Call the RPC method ``method`` (a name, an alias or ``ext.*``) as ``identity``, as
        an HTTP RPC call would be: the same scope gate (``FORBIDDEN`` with
        ``requiredScope``), validation, errors (``METHOD_NOT_FOUND`` ...) and metrics."""
        ...

    def on_change(self, listener: Callable[[frozenset[str]], None]) -> Callable[[], None]:
        """Call ``listener(collections)`` (``runs``, ``run_events``, ``nodes``,
        ``node_outputs``, ``approvals``, ``crons`` ...) whenever something changes them: a
        committed run event of any process on the store, an RPC method with ``changes`` that
        succeeded, a broadcast. Runs on the event loop and must not block; returns the
        function that stops it."""
        ...


@dataclass(slots=True)
class RpcCall:
    """One RPC call as its handler sees it: who calls and over what.

    ``connection`` is the gateway's WebSocket connection (core-internal; None over HTTP);
    ``after_response`` callbacks run once the response frame is queued.
    """

    identity: Identity
    transport: Literal["http", "ws"]
    connection_id: str | None = None
    connection: Any = None
    after_response: list[Callable[[], None]] = field(default_factory=list)


RpcHandler = Callable[[RpcCall, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class RpcMethod:
    """One gateway RPC method, served alike over ``POST /v1/rpc/<name>``, ``POST /rpc`` and
    WebSocket, with the same limits, metrics and error frames whoever provides it.

    ``handler(call, params)`` returns the payload or raises ``SmithersError``; ``params`` is
    the validated ``params`` model instance when one is given (a failure answers
    ``INVALID_REQUEST`` with the issues), else the params object (``{}`` when absent).
    ``scope`` is the scope a caller needs; ``aliases`` are legacy names answered the same way.
    ``inline(params)`` optionally answers without awaiting, as JSON text (WebSocket reads
    answer it in the read loop). ``websocket_only`` refuses the method over HTTP.
    ``changes`` names the collections a successful call changes (``HostContext.on_change``).
    """

    name: str
    handler: RpcHandler
    scope: str = "run:read"
    aliases: tuple[str, ...] = ()
    params: type[BaseModel] | None = None
    inline: Callable[[dict[str, Any]], str] | None = None
    websocket_only: bool = False
    changes: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@runtime_checkable
class Transport(Protocol):
    """A bundle of routes with a lifecycle, mounted on a host app."""

    name: str
    routes: list[RouteSpec]

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...


@dataclass(slots=True)
class RouteTransport:
    """A :class:`Transport` that is only routes, with nothing to start or stop."""

    name: str
    routes: list[RouteSpec]

    async def startup(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


@runtime_checkable
class Scheduler(Protocol):
    """A background scheduler started by ``listen()`` and stopped by ``close()``.

    ``options`` names the registration options it implements (``"schedule"``, ``"webhook"``);
    a workflow registered with such an option needs at least one scheduler that names it.
    """

    name: str
    options: frozenset[str]

    async def start(self, host: HostContext) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class UiMount:
    """A UI served under ``path`` (an ASGI app and/or a folder of static assets).

    ``option="operator_ui"`` mounts require authentication and ``scope`` (default
    ``run:read``); other mounts are public. ``sign_in`` is a path a browser (``Accept:
    text/html``) that fails authentication on the mount is redirected to (302, with
    ``?next=<the page it asked for>``) instead of the JSON error API clients get.
    """

    path: str
    title: str
    app: ASGIApp | None = None
    assets: Path | None = None
    option: str = "ui"
    sign_in: str | None = None


@runtime_checkable
class EventObserver(Protocol):
    """Sees every persisted run event, in the committing process, after commit, in seq order.

    Must not block; an exception is logged and counted, never propagated.
    """

    def on_event(self, run_id: str, seq: int, event: Mapping[str, Any], encoded: bytes) -> None: ...


class CliHost(Protocol):
    """What a command contribution may ask of the loaded plugins (``smithers_cli_commands``)."""

    def auth_modes(self) -> dict[str, AuthMode]: ...


@dataclass(frozen=True, slots=True)
class CliCommand:
    """One ``smithers`` subcommand.

    ``configure(parser)`` adds the command's arguments and subcommands to its parser and sets
    ``handler`` defaults (``parser.set_defaults(handler=fn)``, ``fn(args) -> int`` the exit
    code); a command without a handler prints its help and exits 2.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    description: str | None = None


__all__ = [
    "DEFAULT_ROUTE_SCOPE",
    "ASGIApp",
    "CliCommand",
    "CliHost",
    "EventObserver",
    "HostContext",
    "RouteSpec",
    "RouteTransport",
    "RpcCall",
    "RpcHandler",
    "RpcMethod",
    "Scheduler",
    "Transport",
    "UiMount",
]
