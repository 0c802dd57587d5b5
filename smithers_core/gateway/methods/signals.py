"""The ``submitSignal`` method (alias ``signals.send``), reference 5.3 and D4."""

from __future__ import annotations

from typing import Any

from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.errors import SmithersError
from smithers_core.gateway import catalog
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.params import SignalParams, auto_subscribe, parse
from smithers_core.scopes import METHOD_SCOPES

NAME = "submitSignal"
REQUIRED = "runId and signalName are required"


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    async def submit_signal(call: RpcCall, params: dict[str, Any]) -> Any:
        p: SignalParams = parse(SignalParams, params, "INVALID_REQUEST", REQUIRED)
        name = p.signalName or p.correlationKey
        if not name:
            raise SmithersError("INVALID_REQUEST", REQUIRED)
        correlation = p.correlationId if p.correlationId is not None else p.correlationKey
        payload = p.payload if "payload" in params else p.data
        ctx.views.run_row(p.runId)
        result = await ctx.run_service.deliver_signal(
            p.runId,
            name,
            {} if payload is None else payload,
            correlation_id=correlation,
            received_by=call.identity.user_id or "gateway",
        )
        ctx.metrics.signals.inc()
        auto_subscribe(call, p.runId)
        return result

    aliases = catalog.names_of(NAME)[1:]
    return [RpcMethod(NAME, submit_signal, METHOD_SCOPES[NAME], aliases=aliases, changes=("runs",))]


__all__ = ["methods"]
