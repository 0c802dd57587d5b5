"""The objects plugins hand to core through hooks (routes, schedulers, UI mounts, observers).

pluggy is synchronous: hooks return these plain objects and core awaits their async methods.
No hook ever returns a coroutine.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from smithers_core.auth import AuthMode

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HostInfo:
    """What a contribution hook learns about the host asking for contributions.

    ``kind`` is ``"gateway"`` (the host that mounts transports, schedulers and UI mounts) or
    ``"cli"`` (``smithers plugins list``, which only reads the routes); a plugin should return
    nothing for kinds it does not know, so other hosts can call the hooks later;
    ``services`` holds the host's shared objects (for example ``run_service``, ``event_hub``),
    empty while merely listing plugins.
    """

    kind: str
    config: Mapping[str, Any] = field(default_factory=dict)
    services: Mapping[str, Any] = field(default_factory=dict)


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

    async def start(self, host: HostInfo) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class UiMount:
    """A UI served under ``path`` (an ASGI app and/or a folder of static assets)."""

    path: str
    title: str
    app: ASGIApp | None = None
    assets: Path | None = None
    option: str = "ui"


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
    "HostInfo",
    "RouteSpec",
    "RouteTransport",
    "Scheduler",
    "Transport",
    "UiMount",
]
