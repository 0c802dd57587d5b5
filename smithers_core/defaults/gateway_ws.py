"""Plugin ``core.gateway_ws``: the gateway's WebSocket RPC protocol, on every upgrade path.

The route is a prefix route on ``/``, so a plugin's WebSocket route on an exact path still
wins. It is declared ``auth="public"`` because the protocol authenticates in-band: the session
applies the Host/Origin gates at the upgrade and authenticates the ``connect`` request (whose
token may arrive in the frame). Disable it to turn the WebSocket protocol off or replace it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smithers_core.contributions import HostInfo, RouteSpec, Transport
from smithers_core.hookspecs import hookimpl


@dataclass
class GatewayWebSocketRpc:
    """One prefix WebSocket route over :class:`~smithers_core.gateway.websocket.WebSocketRpc`."""

    gateway: Any
    name: str = "core.gateway_ws"
    routes: list[RouteSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        from smithers_core.gateway.websocket import WebSocketRpc

        self.routes = [
            RouteSpec(
                "/",
                WebSocketRpc(self.gateway),
                auth="public",
                websocket=True,
                asgi=True,
                prefix=True,
                name="rpc-websocket",
            )
        ]

    async def startup(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


@hookimpl
def smithers_transports(host: HostInfo) -> list[Transport]:
    if host.kind not in ("gateway", "cli"):
        return []
    return [GatewayWebSocketRpc(host.services.get("gateway"))]
