"""The history methods: ``frames.list``, ``frames.get``, ``attempts.list`` and
``attempts.get`` (reference 5.2)."""

from __future__ import annotations

from typing import Any

from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.errors import SmithersError
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.params import (
    AttemptGetParams,
    AttemptsListParams,
    is_positive_int,
    is_row_number,
    parse,
    run_id_of,
)
from smithers_core.scopes import METHOD_SCOPES


class HistoryMethods:
    """Handlers of the frames and attempts family over one gateway context."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def frames_list(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        limit = params.get("limit", 50)  # an explicit null is refused, as upstream does
        if not is_positive_int(limit):
            raise SmithersError("INVALID_INPUT", "limit must be a positive integer")
        after = params.get("afterFrameNo")
        if after is not None and not is_row_number(after):
            raise SmithersError("INVALID_INPUT", "afterFrameNo must be a positive integer")
        self.ctx.views.run_row(run_id)
        return self.ctx.db.list_frames(run_id, min(int(limit), 1000), after)

    async def frames_get(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        frame_no = params.get("frameNo")
        if frame_no is not None and not is_row_number(frame_no):
            raise SmithersError("INVALID_INPUT", "frameNo must be a positive integer")
        self.ctx.views.run_row(run_id)
        frame = self.ctx.db.get_frame(run_id, frame_no)
        if frame is None:
            raise SmithersError("NOT_FOUND", "Frame not found", {"runId": run_id})
        return frame

    async def attempts_list(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = run_id_of(params)
        p: AttemptsListParams = parse(
            AttemptsListParams, params, "INVALID_REQUEST", "Invalid attempts.list params"
        )
        self.ctx.views.run_row(run_id)
        if p.nodeId is None:
            return self.ctx.db.list_attempts(run_id)
        return self.ctx.db.list_attempts(run_id, p.nodeId, p.iteration or 0)

    async def attempts_get(self, call: RpcCall, params: dict[str, Any]) -> Any:
        p: AttemptGetParams = parse(
            AttemptGetParams,
            params,
            "INVALID_REQUEST",
            "runId, nodeId, iteration, and attempt are required",
        )
        self.ctx.views.run_row(p.runId)
        row = self.ctx.db.get_attempt(p.runId, p.nodeId, p.iteration, p.attempt)
        if row is None:
            raise SmithersError("NOT_FOUND", "Attempt not found", {"runId": p.runId})
        return row


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    h = HistoryMethods(ctx)
    handlers = {
        "frames.list": h.frames_list,
        "frames.get": h.frames_get,
        "attempts.list": h.attempts_list,
        "attempts.get": h.attempts_get,
    }
    return [RpcMethod(name, fn, METHOD_SCOPES[name]) for name, fn in handlers.items()]


__all__ = ["HistoryMethods", "methods"]
