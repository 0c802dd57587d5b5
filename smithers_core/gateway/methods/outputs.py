"""``getNodeOutput`` (alias ``devtools.getNodeOutput``, reference 5.4): what one node of a run
produced, is still to produce, or failed to produce.

The answer is ``{status, row, schema}`` (``partial`` too when ``failed``): ``produced`` with the
stored output and the JSON schema of the pydantic model it was validated with; ``pending``
while the node may still produce it; ``failed`` when its last attempt failed for good, with the
last heartbeat data as ``partial``. ``schema`` is the model's JSON schema: stored with the
output, else the approval models, else a model of that name in the registered workflow's
module, else null. Errors in check order: ``InvalidRunId``, ``InvalidNodeId``,
``InvalidIteration`` (400), ``RunNotFound``, ``NodeNotFound``, ``IterationNotFound``,
``NodeHasNoOutput`` (404), ``MalformedOutputRow`` (500), ``PayloadTooLarge`` (413).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from smithers_core import jsonutil
from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.errors import SmithersError
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.run_views import run_config
from smithers_core.workflow.models import ApprovalDecision, Ranking, Selection

ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")
INT32_MAX = 2_147_483_647
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
"""The largest output row ``getNodeOutput`` returns (JSON bytes); larger is ``PayloadTooLarge``."""

NEVER_OUTPUT_STATES = frozenset(("finished", "skipped", "waiting-timer"))
"""Node states in which a node without an output row will never have one."""

BUILTIN_MODELS: dict[str, type[BaseModel]] = {
    m.__name__: m for m in (ApprovalDecision, Selection, Ranking)
}


def _id(params: dict[str, Any], name: str, code: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        raise SmithersError(code, f"{name} must match /^[A-Za-z0-9_.-]{{1,128}}$/")
    return value


def _iteration(params: dict[str, Any]) -> int:
    value = params.get("iteration")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT32_MAX:
        raise SmithersError("InvalidIteration", "iteration must be a non-negative 32-bit integer")
    return value


def _object_or_none(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = jsonutil.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class NodeOutputs:
    """The ``getNodeOutput`` handler over one gateway context."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def model_schema(self, run: dict[str, Any], output_table: str) -> Any:
        """The JSON schema of the model named ``output_table`` before any output exists."""
        model: Any = BUILTIN_MODELS.get(output_table)
        if model is None:
            workflow = self.ctx.registry.workflow_of(run, run_config(run))
            scope = getattr(getattr(workflow, "build", None), "__globals__", {})
            model = scope.get(output_table)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_json_schema()
        return None

    async def get_node_output(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = _id(params, "runId", "InvalidRunId")
        node_id = _id(params, "nodeId", "InvalidNodeId")
        iteration = _iteration(params)
        db = self.ctx.db
        run = db.run_row(run_id)
        if run is None:
            raise SmithersError("RunNotFound", f"Run not found: {run_id}", {"runId": run_id})
        facts = db.node_output(run_id, node_id, iteration)
        if not facts["iterations"]:
            raise SmithersError("NodeNotFound", f"Node not found: {node_id}", {"nodeId": node_id})
        node = next((n for n in facts["iterations"] if n["iteration"] == iteration), None)
        if node is None:
            raise SmithersError(
                "IterationNotFound",
                f"Iteration not found: {iteration}",
                {"nodeId": node_id, "iteration": iteration},
            )
        output = facts["output"]
        if output is not None:
            return self._produced(output)
        table = node["outputTable"] or ""
        state = node["state"]
        if state in NEVER_OUTPUT_STATES or (state == "waiting-approval" and not table):
            raise SmithersError(
                "NodeHasNoOutput",
                f"Node {node_id} has no output ({state})",
                {"nodeId": node_id, "iteration": iteration, "state": state},
            )
        schema = self.model_schema(run, table) if table else None
        if state == "failed":
            attempt = facts["attempt"] or {}
            partial = _object_or_none(attempt.get("heartbeatDataJson"))
            return {"status": "failed", "row": None, "schema": schema, "partial": partial}
        return {"status": "pending", "row": None, "schema": schema}

    @staticmethod
    def _produced(output: dict[str, Any]) -> dict[str, Any]:
        text = output["payloadJson"]
        size = len(text.encode())
        if size > MAX_OUTPUT_BYTES:
            raise SmithersError(
                "PayloadTooLarge",
                f"Output payload exceeds {MAX_OUTPUT_BYTES} bytes",
                {"maxBytes": MAX_OUTPUT_BYTES, "sizeBytes": size},
            )
        try:
            row = jsonutil.loads(text)
            schema = jsonutil.loads(output["schemaJson"])
        except ValueError as exc:
            raise SmithersError("MalformedOutputRow", "Output row is not parseable JSON") from exc
        return {"status": "produced", "row": row, "schema": schema}


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    h = NodeOutputs(ctx)
    return [
        RpcMethod(
            "getNodeOutput", h.get_node_output, "run:read", aliases=("devtools.getNodeOutput",)
        )
    ]


__all__ = ["MAX_OUTPUT_BYTES", "NodeOutputs", "methods"]
