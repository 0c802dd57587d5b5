"""Plugin ``core.gateway_rpc``: the gateway's HTTP RPC, ``POST /rpc`` and ``POST /v1/rpc/<method>``.

Both routes are ``auth="required"`` with no route scope: core authenticates the caller, and the
dispatcher checks the scope of each method. Disable the plugin
(``[plugins] disable = ["core.gateway_rpc"]``) to remove both routes, or to serve them from
another plugin: two transports claiming the same route fail startup with ``PLUGIN_CONFLICT``.
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
    from smithers_core.gateway.http_rpc import RPC_PATH, RPC_PREFIX, HttpRpc

    # listing plugins ("cli") only reads the paths
    endpoint: Any = HttpRpc(host) if isinstance(host, GatewayContext) else None
    post = ("POST",)
    routes = [
        RouteSpec(RPC_PATH, endpoint, post, scope=None, asgi=True, name="rpc"),
        RouteSpec(
            RPC_PREFIX, endpoint, post, scope=None, asgi=True, prefix=True, name="rpc-method"
        ),
    ]
    return [RouteTransport("core.gateway_rpc", routes)]
