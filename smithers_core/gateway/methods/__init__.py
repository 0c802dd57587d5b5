"""Core's RPC methods, one module per family; the ``core.rpc_methods`` plugin registers them
through ``smithers_rpc_methods`` like any plugin's methods."""

from __future__ import annotations

from smithers_core.contributions import RpcMethod
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.methods import (
    approvals,
    control,
    devtools,
    frames,
    outputs,
    prompts,
    rewind,
    runs,
    signals,
    streams,
    workflows,
)

FAMILIES = (
    workflows,
    runs,
    control,
    frames,
    outputs,
    approvals,
    signals,
    streams,
    prompts,
    devtools,
    rewind,
)


def core_methods(ctx: GatewayContext) -> list[RpcMethod]:
    """Every core method of ``ctx``'s gateway, family by family."""
    return [method for family in FAMILIES for method in family.methods(ctx)]


__all__ = ["FAMILIES", "core_methods"]
