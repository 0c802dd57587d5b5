"""The run methods: ``launchRun``, ``getRun``, ``listRuns``, ``resumeRun``, ``cancelRun``,
``runs.rerun`` and ``listNodeStates`` (reference 5.1)."""

from __future__ import annotations

import uuid
from typing import Any

from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.engine.engine import RUN_LIMIT_KEYS
from smithers_core.engine.transitions import TERMINAL_RUN
from smithers_core.errors import SmithersError
from smithers_core.gateway import catalog
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.limits import validate_rpc_input
from smithers_core.gateway.params import (
    LaunchOptions,
    LaunchParams,
    ListRunsFilter,
    RerunParams,
    auto_subscribe,
    offset_of,
    parse,
    positive_limit,
    run_id_of,
    started_by,
    sub,
)
from smithers_core.gateway.run_views import run_config
from smithers_core.registrations import Registration
from smithers_core.scopes import METHOD_SCOPES
from smithers_core.store.runs import CancelAttribution
from smithers_core.workflow.models import RunAuth


class RunMethods:
    """Handlers of the run family over one gateway context."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def _registration_of(self, row: dict[str, Any]) -> tuple[str | None, Registration]:
        registry = self.ctx.registry
        key = registry.key_of(run_config(row), row.get("workflow_name"), row.get("workflow_path"))
        return key, registry.require(key)

    def _config(self, call: RpcCall, key: str, reg: Registration) -> dict[str, Any]:
        return {
            "gatewayWorkflowKey": key,
            "gatewayTriggeredBy": call.identity.user_id or "gateway",
            "gatewaySystem": reg.system,
        }

    async def _launch(self, launch: Any, run_id: str) -> None:
        try:
            await launch
        except SmithersError as exc:
            if exc.code == "RUN_ALREADY_EXISTS":
                raise SmithersError(
                    "CONFLICT", f"Run {run_id} is already active", {"runId": run_id}
                ) from exc
            raise

    async def launch_run(self, call: RpcCall, params: dict[str, Any]) -> Any:
        workflow = params.get("workflow")
        if not isinstance(workflow, str) or not workflow:
            missing = workflow is None or workflow == ""
            message = "workflow is required" if missing else "workflow must be a string"
            raise SmithersError("INVALID_REQUEST", message)
        who = started_by(sub(params, "options").get("startedBy"))
        p: LaunchParams = parse(LaunchParams, params, "INVALID_REQUEST", "Invalid launchRun params")
        key = p.workflow
        reg = self.ctx.registry.require(key)
        options = p.options or LaunchOptions()
        limits: dict[str, int] = {}  # stored in the run's config; the engine applies them
        for name in RUN_LIMIT_KEYS:
            value = getattr(options, name)
            if value is not None and value < 1:
                raise SmithersError("INVALID_INPUT", f"options.{name} must be an integer >= 1")
            if value is not None:
                limits[name] = value
        run_input = params.get("input")
        if isinstance(run_input, dict):
            run_input = validate_rpc_input(run_input)
        # else: null is {}; any other value is refused by the input model (INVALID_INPUT),
        # where upstream turns it into {} and runs with the defaults (issue 13)
        run_id = p.runId or options.runId or str(uuid.uuid4())
        config = self._config(call, key, reg)
        if who is not None:
            config["startedBy"] = who
        config.update(limits)
        auto_subscribe(call, run_id)
        launch = self.ctx.run_service.launch(
            reg.workflow,
            run_input,
            run_id=run_id,
            auth=RunAuth.for_trigger("rpc", call.identity),
            config=config,
            allow_network=options.allowNetwork,
        )
        await self._launch(launch, run_id)
        return {"runId": run_id, "workflow": key, "system": reg.system}

    async def get_run(self, call: RpcCall, params: dict[str, Any]) -> Any:
        return self.ctx.views.run_record(run_id_of(params))

    def get_run_json(self, params: dict[str, Any]) -> str:
        return self.ctx.views.run_record_json(run_id_of(params))

    async def list_runs(self, call: RpcCall, params: dict[str, Any]) -> Any:
        raw = sub(params, "filter") or params
        f: ListRunsFilter = parse(ListRunsFilter, raw, "INVALID_REQUEST", "Invalid listRuns filter")
        limit = positive_limit(f.limit, 50, 1000)
        offset = offset_of(f.offset)
        return await self.ctx.views.query_runs(
            limit=limit,
            offset=offset,
            status=f.status,
            workflow=f.workflow,
            parent_run_id=f.parentRunId,
            include_system=bool(f.includeSystem),
        )

    async def resume_run(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        row = self.ctx.views.run_row(run_id)
        if row["status"] in TERMINAL_RUN:
            return {"runId": run_id, "status": "already_terminal"}
        _key, reg = self._registration_of(row)
        auto_subscribe(call, run_id)
        result = await self.ctx.run_service.resume(run_id, reg.workflow)
        if result.get("status") in TERMINAL_RUN:
            return {"runId": run_id, "status": "already_terminal"}
        return {"runId": run_id, "status": "resume_requested"}

    async def cancel_run(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        try:
            by = CancelAttribution(source="gateway", identity=call.identity.user_id)
            result: dict[str, Any] = await self.ctx.run_service.cancel(run_id, by)
        except SmithersError as exc:
            if exc.code == "RUN_NOT_FOUND":
                raise SmithersError("RunNotFound", "Run not found", {"runId": run_id}) from exc
            if exc.code == "RUN_NOT_ACTIVE":
                raise SmithersError(
                    "RUN_NOT_ACTIVE", "Run is not currently active", exc.details
                ) from exc
            raise
        return result

    async def rerun(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        p: RerunParams = parse(RerunParams, params, "INVALID_REQUEST", "runId is required")
        row = self.ctx.views.run_row(run_id)
        key, reg = self._registration_of(row)
        assert key is not None
        new_id = p.newRunId or str(uuid.uuid4())
        auto_subscribe(call, new_id)
        rerun = self.ctx.run_service.rerun(
            run_id,
            reg.workflow,
            new_run_id=new_id,
            auth=RunAuth.for_trigger("rpc", call.identity),
            config=self._config(call, key, reg),
        )
        await self._launch(rerun, new_id)
        return {"runId": new_id, "workflow": key, "system": reg.system}

    async def list_node_states(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        self.ctx.views.run_row(run_id)
        return await self.ctx.views.node_states(run_id)


RUN_CHANGES = ("runs",)


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    h = RunMethods(ctx)

    def method(name: str, handler: Any, **extra: Any) -> RpcMethod:
        aliases = catalog.names_of(name)[1:]
        return RpcMethod(name, handler, METHOD_SCOPES[name], aliases=aliases, **extra)

    return [
        method("launchRun", h.launch_run, changes=RUN_CHANGES),
        method("getRun", h.get_run, inline=h.get_run_json),
        method("listRuns", h.list_runs),
        method("resumeRun", h.resume_run, changes=RUN_CHANGES),
        method("cancelRun", h.cancel_run, changes=RUN_CHANGES),
        method("runs.rerun", h.rerun, changes=RUN_CHANGES),
        method("listNodeStates", h.list_node_states),
    ]


__all__ = ["RunMethods", "methods"]
