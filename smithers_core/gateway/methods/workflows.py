"""The ``health`` and ``listWorkflows`` methods: both answer inline, without awaiting."""

from __future__ import annotations

from typing import Any

from smithers_core import jsonutil
from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.params import sub
from smithers_core.scopes import METHOD_SCOPES


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    def health_json(params: dict[str, Any]) -> str:
        return ctx.health_json()

    async def health(call: RpcCall, params: dict[str, Any]) -> Any:
        return ctx.health_payload(include_uptime=True)

    def workflows(params: dict[str, Any]) -> list[dict[str, Any]]:
        filt = sub(params, "filter")
        has_ui = params.get("hasUi", filt.get("hasUi"))
        include_system = params.get("includeSystem", filt.get("includeSystem")) is True
        return [
            item
            for item in ctx.registry.summaries(include_system=include_system, schemas=True)
            if not isinstance(has_ui, bool) or item["hasUi"] == has_ui
        ]

    async def list_workflows(call: RpcCall, params: dict[str, Any]) -> Any:
        return workflows(params)

    return [
        RpcMethod("health", health, METHOD_SCOPES["health"], inline=health_json),
        RpcMethod(
            "listWorkflows",
            list_workflows,
            METHOD_SCOPES["listWorkflows"],
            aliases=("workflows.list",),
            inline=lambda params: jsonutil.dumps(workflows(params)),
        ),
    ]


__all__ = ["methods"]
