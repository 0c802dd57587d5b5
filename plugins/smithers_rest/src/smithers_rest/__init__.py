"""``smithers_rest``: the gateway's REST facade as an installable plugin (reference 9.2, 9.3).

``/v1/api/*`` answers plain REST over the gateway's RPC methods with the same auth and scopes
(``{ok: true, data[, seq]}`` / ``{ok: false, error}``), ``GET /v1/api/stream`` is the change
stream dashboards stay fresh with, and ``GET /v1/api/openapi.json`` documents both.
See ``docs/rest.md``.
"""

from __future__ import annotations

import weakref
from typing import Any

from smithers_core.contributions import (
    HostContext,
    RouteSpec,
    RouteTransport,
    Scheduler,
    Transport,
)
from smithers_core.hookspecs import hookimpl
from smithers_rest.envelope import error_body
from smithers_rest.facade import Facade
from smithers_rest.openapi import OPENAPI_PATH, STREAM_PATH, OpenApiEndpoint
from smithers_rest.routes import PREFIX
from smithers_rest.stream import ChangeStream, StreamEndpoint

NAME = "smithers_rest"
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_streams: weakref.WeakKeyDictionary[Any, ChangeStream] = weakref.WeakKeyDictionary()


def change_stream(host: HostContext) -> ChangeStream:
    """The one change stream of ``host`` (shared by its route and its lifecycle)."""
    stream = _streams.get(host)
    if stream is None:
        stream = _streams[host] = ChangeStream()
    return stream


class StreamLifecycle:
    """Starts the change stream with the gateway and ends its streams before the server
    closes (schedulers stop first, so no open stream holds the shutdown)."""

    name = NAME
    options: frozenset[str] = frozenset()

    def __init__(self, stream: ChangeStream) -> None:
        self.stream = stream

    async def start(self, host: HostContext) -> None:
        self.stream.start(host.on_change)

    async def stop(self) -> None:
        await self.stream.stop()


def routes(host: HostContext | None) -> list[RouteSpec]:
    """The facade's routes (endpoints are None when ``host`` only lists routes)."""
    stream = change_stream(host) if host is not None else None
    facade: Any = Facade(host, stream) if host is not None else None
    events: Any = StreamEndpoint(stream) if stream is not None else None
    return [
        RouteSpec(STREAM_PATH, events, ("GET",), asgi=True, name="rest-stream",
                  error_body=error_body),
        RouteSpec(OPENAPI_PATH, OpenApiEndpoint(), ("GET",), auth="public", asgi=True,
                  name="rest-openapi"),
        RouteSpec(PREFIX, facade, ALL_METHODS, scope=None, asgi=True, prefix=True,
                  name="rest", error_body=error_body),
    ]  # fmt: skip


@hookimpl
def smithers_transports(host: HostContext) -> list[Transport]:
    if host.kind == "gateway":
        return [RouteTransport(NAME, routes(host))]
    if host.kind == "cli":
        return [RouteTransport(NAME, routes(None))]
    return []


@hookimpl
def smithers_schedulers(host: HostContext) -> list[Scheduler]:
    return [StreamLifecycle(change_stream(host))] if host.kind == "gateway" else []


__all__ = ["ChangeStream", "Facade", "StreamLifecycle", "change_stream", "routes"]
