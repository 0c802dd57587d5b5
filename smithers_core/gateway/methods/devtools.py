"""Placeholder family (issue 19): filled in by its own change."""

from __future__ import annotations

from smithers_core.contributions import RpcMethod
from smithers_core.gateway.context import GatewayContext


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    return []


__all__ = ["methods"]
