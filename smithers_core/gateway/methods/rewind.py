"""Time travel: ``rewindRun`` (aliases ``jumpToFrame``, ``devtools.jumpToFrame``; reference
5.4), scope run:admin.

Beyond the scope, only the run's owner (its stored ``config_json.auth.triggeredBy`` equals the
caller's user id) or a caller whose role is ``admin`` (any case) may rewind a run. Every call,
refused or not, writes a row of ``_smithers_time_travel_audit``; the rewind itself is
:func:`smithers_core.engine.rewind.rewind`.
"""

from __future__ import annotations

from typing import Any

from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.engine import rewind as engine_rewind
from smithers_core.errors import SmithersError
from smithers_core.gateway import catalog
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.params import auto_subscribe
from smithers_core.gateway.run_views import run_config
from smithers_core.ids import clip, is_run_id
from smithers_core.scopes import METHOD_SCOPES
from smithers_core.store import rewind as store_rewind
from smithers_core.workflow.definition import Workflow

NOT_OWNER = "Only the run owner or an admin may rewind this run."
REWIND_CHANGES = ("runs", "nodes", "run_events", "node_outputs")


def caller_of(call: RpcCall) -> str:
    """Who the audit and the rate limit name: the user id, else the token id."""
    identity = call.identity
    return identity.user_id or identity.token_id or "anonymous"


def may_rewind(call: RpcCall, row: dict[str, Any]) -> bool:
    """The owner check: role ``admin`` (any case), or the run's ``auth.triggeredBy``."""
    identity = call.identity
    if (identity.role or "").lower() == "admin":
        return True
    auth = run_config(row).get("auth")
    owner = auth.get("triggeredBy") if isinstance(auth, dict) else None
    return identity.user_id is not None and owner == identity.user_id


class RewindMethods:
    """The handler of ``rewindRun`` over one gateway context."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def _refuse(
        self, call: RpcCall, run_id: str, frame_no: Any, error: SmithersError
    ) -> SmithersError:
        """Write the refusal's audit row; returns ``error`` to raise."""
        to_frame = frame_no if _is_frame_no(frame_no) else None
        caller = caller_of(call)

        def change(tx: Any) -> None:
            latest = store_rewind.latest_frame_no(tx.conn, run_id)
            store_rewind.write_audit(
                tx,
                run_id,
                caller=caller,
                result="failed",
                from_frame_no=latest,
                to_frame_no=to_frame,
                error_code=error.code,
            )

        await self.ctx.store.write(change)
        return error

    async def rewind_run(self, call: RpcCall, params: dict[str, Any]) -> Any:
        raw_id = params.get("runId")
        frame_no: Any = params.get("frameNo")
        run_id = clip(raw_id if isinstance(raw_id, str) else "" if raw_id is None else str(raw_id))
        if not is_run_id(raw_id):
            raise await self._refuse(
                call,
                run_id,
                frame_no,
                SmithersError("InvalidRunId", "runId must be a valid run id"),
            )
        if not _is_frame_no(frame_no):
            raise await self._refuse(
                call,
                run_id,
                frame_no,
                SmithersError("InvalidFrameNo", "frameNo must be an integer >= 0"),
            )
        if params.get("confirm") is not True:
            raise await self._refuse(
                call,
                run_id,
                frame_no,
                SmithersError("ConfirmationRequired", "Rewinding a run needs confirm: true"),
            )
        row = self.ctx.db.run_row(run_id)
        if row is None:
            raise await self._refuse(
                call,
                run_id,
                frame_no,
                SmithersError("RunNotFound", "Run not found", {"runId": run_id}),
            )
        if not may_rewind(call, row):
            raise await self._refuse(
                call, run_id, frame_no, SmithersError("Unauthorized", NOT_OWNER)
            )
        auto_subscribe(call, run_id)
        return await engine_rewind.rewind(
            self.ctx.runtime.engine,
            run_id,
            frame_no,
            caller=caller_of(call),
            workflow=self._workflow_of(row),
        )

    def _workflow_of(self, row: dict[str, Any]) -> Workflow | None:
        registry = self.ctx.registry
        key = registry.key_of(run_config(row), row.get("workflow_name"), row.get("workflow_path"))
        try:
            return registry.require(key).workflow
        except SmithersError:
            return None  # the engine's resolver, else a host that can load it, resumes it


def _is_frame_no(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    h = RewindMethods(ctx)
    name = "rewindRun"
    return [
        RpcMethod(
            name,
            h.rewind_run,
            METHOD_SCOPES[name],
            aliases=catalog.names_of(name)[1:],
            changes=REWIND_CHANGES,
        )
    ]


__all__ = ["NOT_OWNER", "RewindMethods", "caller_of", "may_rewind", "methods"]
