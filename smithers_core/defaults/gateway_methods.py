"""Plugin ``core.rpc_methods``: core's gateway RPC methods, family by family (workflows, runs,
frames and attempts, approvals, signals, run streams), registered through
``smithers_rpc_methods`` exactly as a plugin's methods are. Disabling it leaves a gateway that
answers only extension and plugin methods.
"""

from __future__ import annotations

from smithers_core.contributions import HostContext, RpcMethod
from smithers_core.hookspecs import hookimpl


@hookimpl
def smithers_rpc_methods(host: HostContext) -> list[RpcMethod]:
    from smithers_core.gateway.context import GatewayContext
    from smithers_core.gateway.methods import core_methods

    if not isinstance(host, GatewayContext):
        return []
    return core_methods(host)
