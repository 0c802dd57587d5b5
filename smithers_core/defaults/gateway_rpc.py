"""Plugin ``core.gateway_rpc``: the gateway's HTTP RPC, ``POST /rpc`` and ``POST /v1/rpc/<method>``.

Disable it (``[plugins] disable = ["core.gateway_rpc"]``) to remove both routes, or to serve
them from another plugin: two transports claiming the same route fail startup with
``PLUGIN_CONFLICT``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smithers_core.contributions import HostInfo, RouteSpec, Transport
from smithers_core.hookspecs import hookimpl


@dataclass
class GatewayHttpRpc:
    """Both RPC routes over one :class:`~smithers_core.gateway.http_rpc.HttpRpc` endpoint.

    Routes are ``auth="required"`` with no route scope: core authenticates the caller, and the
    dispatcher checks the scope of each method.
    """

    gateway: Any
    name: str = "core.gateway_rpc"
    routes: list[RouteSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        from smithers_core.gateway.http_rpc import RPC_PATH, RPC_PREFIX, HttpRpc

        endpoint = HttpRpc(self.gateway)
        common: dict[str, Any] = {"methods": ("POST",), "scope": None, "asgi": True}
        self.routes = [
            RouteSpec(RPC_PATH, endpoint, name="rpc", **common),
            RouteSpec(RPC_PREFIX, endpoint, name="rpc-method", prefix=True, **common),
        ]

    async def startup(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


@hookimpl
def smithers_transports(host: HostInfo) -> list[Transport]:
    if host.kind not in ("gateway", "cli"):
        return []
    return [GatewayHttpRpc(host.services.get("gateway"))]
