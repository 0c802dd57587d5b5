"""A plugin that uses every contribution surface, the way the cron, webhook and UI plugins
will: RPC methods under upstream's names, a scheduler that mounts a signed public webhook
route through its host, UI mounts built from the registrations, and a CLI command.

The test suite installs it with pip into a temporary folder; it is never part of a real
installation.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from smithers_core import SmithersError, hookimpl
from smithers_core.contributions import (
    CliCommand,
    CliHost,
    HostContext,
    RouteSpec,
    RpcCall,
    RpcMethod,
    UiMount,
)
from smithers_core.workflow.models import RunAuth

NAME = "smithers_test_plugin"
SEEN: dict[str, Any] = {}  # what the scheduler saw at start (read by in-process tests)


class EchoParams(BaseModel):
    text: str
    times: int = 1


def _scheduled(host: HostContext) -> list[dict[str, Any]]:
    return [
        {"workflow": key, "pattern": reg.schedule}
        for key, reg in sorted(host.registrations.items())
        if reg.schedule
    ]


@hookimpl
def smithers_rpc_methods(host: HostContext) -> list[RpcMethod]:
    if host.kind != "gateway":
        return []

    async def cron_list(call: RpcCall, params: dict[str, Any]) -> Any:
        return _scheduled(host)

    async def cron_run(call: RpcCall, params: dict[str, Any]) -> Any:
        key = params.get("workflow")
        reg = host.registrations.get(key) if isinstance(key, str) else None
        if reg is None:
            raise SmithersError("NOT_FOUND", f"Unknown workflow: {key}")
        launched = await host.run_service.launch(
            reg.workflow, {}, auth=RunAuth.for_trigger("cron"), config={"gatewayWorkflowKey": key}
        )
        event = {"workflow": key, "runId": launched["runId"], "atMs": host.now_ms()}
        host.broadcast("cron.triggered", event)
        return event

    async def echo(call: RpcCall, params: EchoParams) -> Any:
        return {"echo": params.text * params.times, "transport": call.transport}

    return [
        RpcMethod("cronList", cron_list, "cron:read", aliases=("cron.list",)),
        RpcMethod("cronRun", cron_run, "cron:write", aliases=("cron.trigger",)),
        RpcMethod("testEcho", echo, params=EchoParams),
    ]


def _signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookScheduler:
    """Implements ``schedule`` and ``webhook``; on start it mounts ``POST /webhooks/{key}``,
    a public route authenticated only by the HMAC signature of its registration."""

    name = "test-scheduler"
    options = frozenset({"schedule", "webhook"})

    async def start(self, host: HostContext) -> None:
        SEEN.update(
            registrations=sorted(host.registrations),
            scheduled=_scheduled(host),
            store=host.store is not None,
            clock=host.now_ms() > 0,
        )

        async def receive(request: Request) -> JSONResponse:
            reg = host.registrations.get(request.path_params["key"])
            if reg is None or reg.webhook is None:
                return JSONResponse({"error": "unknown webhook"}, status_code=404)
            body = await request.body()
            given = request.headers.get(reg.webhook.signature_header or "x-signature", "")
            if not hmac.compare_digest(given, _signature(reg.webhook.secret, body)):
                return JSONResponse({"error": "bad signature"}, status_code=401)
            run = await host.run_service.launch(
                reg.workflow,
                json.loads(body or b"{}"),
                auth=RunAuth.for_trigger(f"webhook:{reg.key}"),
                config={"gatewayWorkflowKey": reg.key},
            )
            return JSONResponse({"runId": run["runId"]}, status_code=202)

        route = RouteSpec("/webhooks/{key}", receive, ("POST",), auth="public", name="webhook")
        host.add_routes(NAME, [route])

    async def stop(self) -> None:
        SEEN["stopped"] = True


@hookimpl
def smithers_schedulers(host: HostContext) -> list[Any]:
    return [WebhookScheduler()] if host.kind == "gateway" else []


@hookimpl
def smithers_ui_mounts(host: HostContext) -> list[UiMount]:
    if host.kind != "gateway":
        return []

    def page(key: str, title: str) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await HTMLResponse(f"<h1>{title}</h1><p>{key}{scope['path']}</p>")(scope, receive, send)

        return app

    mounts = [
        UiMount(reg.ui_path, f"{key} page", app=page(key, f"{key} page"))
        for key, reg in sorted(host.registrations.items())
        if reg.ui_path is not None
    ]
    console = host.options.get("operator_ui")
    if isinstance(console, dict) and console.get("path"):
        app = page("console", "Operator console")
        mounts.append(UiMount(console["path"], "Operator console", app=app, option="operator_ui"))
    return mounts


@hookimpl
def smithers_cli_commands(host: CliHost) -> list[CliCommand]:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", default="world")

        def run(args: argparse.Namespace) -> int:
            modes = ", ".join(sorted(host.auth_modes()))
            print(f"hello {args.name}; auth modes: {modes}")
            return 0

        parser.set_defaults(handler=run)

    return [CliCommand("test-hello", "say hello (smithers-test-plugin)", configure)]
