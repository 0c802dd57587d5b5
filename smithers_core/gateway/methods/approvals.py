"""The approval methods: ``listApprovals`` (alias ``approvals.list``) and ``submitApproval``
(aliases ``approvals.decide``, ``approve``), reference 5.3 and D4."""

from __future__ import annotations

from typing import Any

from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.errors import SmithersError
from smithers_core.gateway import catalog
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.params import (
    ApprovalParams,
    auto_subscribe,
    is_positive_int,
    parse,
    sub,
)
from smithers_core.gateway.wire import translate
from smithers_core.ids import clip
from smithers_core.scopes import METHOD_SCOPES

REQUIRED = "runId, nodeId, and approved are required"


class ApprovalMethods:
    """Handlers of the approval family over one gateway context."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def list_approvals(self, call: RpcCall, params: dict[str, Any]) -> Any:
        filt = sub(params, "filter")

        def pick(name: str) -> Any:
            return params[name] if name in params else filt.get(name)

        limit = pick("limit")
        if limit is not None and not is_positive_int(limit):
            raise SmithersError("INVALID_INPUT", "limit must be a positive integer")
        run_id, workflow = pick("runId"), pick("workflow")
        rows = await self.ctx.views.pending_approvals(
            run_id if isinstance(run_id, str) else None,
            workflow if isinstance(workflow, str) else None,
        )
        return rows[:limit] if limit is not None else rows

    async def submit_approval(self, call: RpcCall, params: dict[str, Any]) -> Any:
        p: ApprovalParams = parse(ApprovalParams, params, "INVALID_REQUEST", REQUIRED)
        approved = p.approved
        if approved is None and p.decision is not None:
            approved = p.decision.get("approved")
        if not isinstance(approved, bool):
            wrong = approved is not None  # decision.approved given, but not a boolean
            message = "decision.approved must be a boolean" if wrong else REQUIRED
            raise SmithersError("INVALID_REQUEST", message)
        note = p.note
        if note is None and p.decision is not None and isinstance(p.decision.get("note"), str):
            note = p.decision["note"]
        decision: Any = None
        if p.decision is not None:
            decision = p.decision.get("value", p.decision)
        self.ctx.views.run_row(p.runId)
        try:
            result: dict[str, Any] = await self.ctx.run_service.decide_approval(
                p.runId,
                p.nodeId,
                approved=approved,
                iteration=p.iteration,
                note=note,
                decided_by=call.identity.user_id,
                decision=decision,
                identity=call.identity,
            )
        except SmithersError as exc:
            raise approval_error(exc, p) from exc
        self.ctx.metrics.approval_decisions.labels("approved" if approved else "denied").inc()
        auto_subscribe(call, p.runId)
        return {
            "runId": result["runId"],
            "nodeId": result["nodeId"],
            "iteration": result["iteration"],
            "approved": result["approved"],
        }


def approval_error(exc: SmithersError, p: ApprovalParams) -> SmithersError:
    """The run service's decision errors in this surface's words (D7: ``AlreadyDecided``)."""
    node = clip(p.nodeId)
    details = {"runId": p.runId, "nodeId": node, "iteration": p.iteration}
    if exc.code in ("ALREADY_DECIDED", "NODE_NOT_WAITING"):
        status = (exc.details or {}).get("status", "not-requested")
        return SmithersError(
            "AlreadyDecided",
            f"Approval for {node} (iteration {p.iteration}) is already decided",
            {**details, "status": status},
        )
    if exc.code == "FORBIDDEN":
        if "allowedUsers" in (exc.details or {}):
            return SmithersError("FORBIDDEN", "User is not allowed to decide this approval")
        return SmithersError("FORBIDDEN", "Connection is missing required approval scope")
    if exc.code == "INVALID_INPUT":
        return SmithersError("INVALID_REQUEST", exc.message, exc.details)
    return translate(exc)


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    h = ApprovalMethods(ctx)
    out = []
    for name, handler, changes in (
        ("listApprovals", h.list_approvals, ()),
        ("submitApproval", h.submit_approval, ("approvals", "runs")),
    ):
        aliases = catalog.names_of(name)[1:]
        out.append(RpcMethod(name, handler, METHOD_SCOPES[name], aliases=aliases, changes=changes))
    return out


__all__ = ["ApprovalMethods", "approval_error", "methods"]
