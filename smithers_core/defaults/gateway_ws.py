"""Plugin ``core.gateway_ws``: the gateway's WebSocket RPC protocol, on every upgrade path.

The route is a prefix route on ``/``, so a plugin's WebSocket route on an exact path still
wins. It is declared ``auth="public"`` because the protocol authenticates in-band: the session
applies the Host/Origin gates at the upgrade and authenticates the ``connect`` request (whose
token may arrive in the frame). Disable it to turn the WebSocket protocol off or replace it.
"""

from __future__ import annotations

from typing import Any

from smithers_core.contributions import HostContext, RouteSpec, RouteTransport, Transport
from smithers_core.hookspecs import hookimpl


@hookimpl
def smithers_transports(host: HostContext) -> list[Transport]:
    if host.kind not in ("gateway", "cli"):
        return []
    from smithers_core.gateway.context import GatewayContext
    from smithers_core.gateway.websocket import WebSocketRpc

    # listing plugins ("cli") only reads the path
    endpoint: Any = WebSocketRpc(host) if isinstance(host, GatewayContext) else None
    route = RouteSpec(
        "/", endpoint, auth="public", websocket=True, asgi=True, prefix=True, name="rpc-websocket"
    )
    return [RouteTransport("core.gateway_ws", [route])]
