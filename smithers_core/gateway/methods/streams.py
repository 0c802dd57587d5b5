"""The ``streamRunEvents`` method: WebSocket only, served by the gateway's run streams."""

from __future__ import annotations

from typing import Any

from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.errors import SmithersError
from smithers_core.gateway.context import GatewayContext
from smithers_core.scopes import METHOD_SCOPES

NAME = "streamRunEvents"


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    async def stream_run_events(call: RpcCall, params: dict[str, Any]) -> Any:
        if ctx.streams is None:
            raise SmithersError("METHOD_NOT_FOUND", f"Unknown method: {NAME}")
        return await ctx.streams.open(call, params)

    return [RpcMethod(NAME, stream_run_events, METHOD_SCOPES[NAME], websocket_only=True)]


__all__ = ["methods"]
