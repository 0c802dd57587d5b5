"""The run-control methods of issue 19 (reference 5.1): ``pauseRun`` (``runs.pause``),
``retryTask``, ``listRunDescendants`` (``runs.descendants``), ``listRunTokenUsage`` and
``getSchemaSignature``. Pause and retry are the engine's (docs/engine.md "Pause and retry");
this module checks params and maps engine codes to the gateway's."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from pydantic import BaseModel

from smithers_core import jsonutil
from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.engine.render import render
from smithers_core.errors import SmithersError
from smithers_core.gateway import catalog
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.params import auto_subscribe, positive_limit, run_id_of
from smithers_core.gateway.run_views import run_config
from smithers_core.scopes import METHOD_SCOPES
from smithers_core.store.db import RUN_COLUMNS, camel_row
from smithers_core.store.runs import descendant_runs
from smithers_core.workflow.context import Ctx
from smithers_core.workflow.definition import Workflow

SCHEMA_VERSION = "0001"
"""``getSchemaSignature``'s version of the signed document (see :func:`schema_signature`);
``"0000"`` is the empty registry."""
EMPTY_SIGNATURE = hashlib.sha256(b"empty").hexdigest()
RETRY_SETTLE_S = 1.0


class ControlMethods:
    """Handlers of the run-control family over one gateway context."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def _run_row(self, run_id: str, code: str = "NOT_FOUND") -> dict[str, Any]:
        row: dict[str, Any] | None = self.ctx.views.runtime.db.run_row(run_id)
        if row is None:
            raise SmithersError(code, f"Run not found: {run_id}", {"runId": run_id})
        return row

    async def pause_run(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        self._run_row(run_id, "RunNotFound")
        try:
            result: dict[str, Any] = await self.ctx.run_service.engine.pause(run_id)
        except SmithersError as exc:
            if exc.code == "RUN_NOT_FOUND":
                raise SmithersError("RunNotFound", f"Run not found: {run_id}") from exc
            raise
        return result

    async def retry_task(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        node_id = params.get("nodeId")
        if not isinstance(node_id, str) or not node_id:
            raise SmithersError("INVALID_REQUEST", "nodeId is required")
        iteration = params.get("iteration", 0)
        if iteration is None:
            iteration = 0
        if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 0:
            raise SmithersError("INVALID_REQUEST", "iteration must be a non-negative integer")
        reset = params.get("resetDependents", True)
        if reset is None:
            reset = True
        if not isinstance(reset, bool):
            raise SmithersError("INVALID_REQUEST", "resetDependents must be a boolean")
        row = self._run_row(run_id)
        registry = self.ctx.registry
        key = registry.key_of(run_config(row), row.get("workflow_name"), row.get("workflow_path"))
        workflow = registry.require(key).workflow
        auto_subscribe(call, run_id)
        try:
            keys = await self.ctx.run_service.engine.retry_task(
                run_id,
                (node_id, iteration),
                reset_dependents=reset,
                workflow=workflow,
                settle_timeout_s=RETRY_SETTLE_S,
            )
        except SmithersError as exc:
            if exc.code == "RUN_NOT_FOUND":
                raise SmithersError("NOT_FOUND", f"Run not found: {run_id}") from exc
            raise
        return {
            "runId": run_id,
            "nodeId": node_id,
            "iteration": iteration,
            "resetNodes": [{"nodeId": k[0], "iteration": k[1]} for k in keys],
            "status": "retry_requested",
        }

    async def list_descendants(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        limit = positive_limit(params.get("limit"), 1000, 1000)
        self._run_row(run_id)
        enrich = self.ctx.views.enrich
        rows: list[dict[str, Any]] = await self.ctx.views.runtime.store.aread(
            lambda c: descendant_runs(c, run_id, limit)
        )
        return [enrich(camel_row(r, RUN_COLUMNS), run_config(r)) for r in rows]

    async def list_token_usage(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        self._run_row(run_id, "RunNotFound")
        events = await self.ctx.views.runtime.db.token_usage(run_id)
        return {"runId": run_id, "events": events}

    async def schema_signature(self, call: RpcCall, params: dict[str, Any]) -> Any:
        return schema_signature({k: r.workflow for k, r in self.ctx.registry.items()})


# -- schema signature --------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _workflow_component(workflow: Workflow) -> str:
    """One workflow's signed component, as canonical JSON (cached per workflow object)."""
    return jsonutil.canonical(
        {"input": workflow.input_model.model_json_schema(), "outputs": _output_schemas(workflow)}
    )


def _output_schemas(workflow: Workflow) -> dict[str, Any]:
    """The output models' JSON Schemas of the nodes a render with the default input and no
    state mounts, by node id (``{}`` when that render fails: it needs outputs or input)."""
    try:
        value: BaseModel = workflow.validate_input({})
        ctx = Ctx(input=value, run_id="schema-signature", auth=None, outputs={})
        plan = render(workflow, ctx, {})
    except Exception:  # user code: any failure just leaves the outputs out
        return {}
    out: dict[str, Any] = {}
    for (node_id, _iteration), pleaf in sorted(plan.leaves.items()):
        model = pleaf.leaf.output_model
        if model is not None and node_id not in out:
            out[node_id] = model.model_json_schema()
    return out


def schema_signature(workflows: dict[str, Workflow]) -> dict[str, Any]:
    """``{schemaVersion, signature, components}``: ``components[key]`` is
    ``{input, outputs}`` (the input model's JSON Schema; the output models' schemas by node
    id), ``signature`` the sha256 hex of the canonical JSON of ``components`` (keys sorted).
    No workflows: version ``"0000"`` and ``sha256("empty")``."""
    if not workflows:
        return {"schemaVersion": "0000", "signature": EMPTY_SIGNATURE, "components": {}}
    components = {k: jsonutil.loads(_workflow_component(workflows[k])) for k in sorted(workflows)}
    digest = hashlib.sha256(jsonutil.canonical(components).encode()).hexdigest()
    return {"schemaVersion": SCHEMA_VERSION, "signature": digest, "components": components}


RUN_CHANGES = ("runs",)


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    h = ControlMethods(ctx)

    def method(name: str, handler: Any, scope: str | None = None, **extra: Any) -> RpcMethod:
        aliases = catalog.names_of(name)[1:]
        return RpcMethod(name, handler, scope or METHOD_SCOPES[name], aliases=aliases, **extra)

    return [
        method("pauseRun", h.pause_run, changes=RUN_CHANGES),
        method("retryTask", h.retry_task, changes=RUN_CHANGES),
        # no catalog scope (reference 6.7): the default run:read, never granted by name
        method("listRunDescendants", h.list_descendants, "run:read"),
        method("listRunTokenUsage", h.list_token_usage, "run:read"),
        method("getSchemaSignature", h.schema_signature, "run:read"),
    ]


__all__ = ["SCHEMA_VERSION", "ControlMethods", "methods", "schema_signature"]
