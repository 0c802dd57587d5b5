"""The cron RPCs (reference 5.3): ``cronList``, ``cronCreate``, ``cronDelete``, ``cronRun``,
with their legacy aliases ``cron.list``, ``cron.add``, ``cron.remove`` and ``cron.trigger``.

Beyond upstream: ``cronCreate`` takes ``timezone`` (an IANA name, default UTC), an invalid
pattern or zone is 400 ``INVALID_INPUT`` with the parser's reason (upstream answers 500), and
an unknown workflow in ``cronRun`` is 404 ``NOT_FOUND``.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from smithers_core.contributions import HostContext, RpcCall, RpcMethod
from smithers_core.errors import SmithersError
from smithers_core.gateway.limits import validate_rpc_input
from smithers_core.gateway.params import auto_subscribe, parse
from smithers_core.ids import clip
from smithers_core.registrations import Registration
from smithers_core.store import crons
from smithers_core.workflow.models import RunAuth
from smithers_cron.patterns import check_pattern, next_fire_ms, zone
from smithers_cron.rows import key_of, with_workflow, workflow_path

MAX_CRON_ID = 256


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListFilter(_Params):
    workflow: StrictStr | None = None


class CreateParams(_Params):
    workflow: StrictStr | None = None
    pattern: StrictStr | None = None
    cronId: StrictStr | None = None
    enabled: StrictBool | None = None
    timezone: StrictStr | None = None


class DeleteParams(_Params):
    cronId: StrictStr | None = None


class RunParams(_Params):
    cronId: StrictStr | None = None
    workflow: StrictStr | None = None
    input: Any = None


def _cron_id(value: str | None) -> str:
    if value is None or value == "":
        return str(uuid.uuid4())
    if len(value) > MAX_CRON_ID or not value.isprintable():
        raise SmithersError("INVALID_INPUT", f"cronId must be 1-{MAX_CRON_ID} printable characters")
    return value


class CronMethods:
    """Handlers over one gateway's host context."""

    def __init__(self, host: HostContext) -> None:
        self.host = host

    def _registration(self, key: str) -> Registration:
        reg = self.host.registrations.get(key)
        if reg is None:
            shown = clip(key)
            raise SmithersError("NOT_FOUND", f"Unknown workflow: {shown}", {"workflow": shown})
        return reg

    def _row(self, cron_id: str) -> dict[str, Any] | None:
        return self.host.store.read(lambda conn: crons.cron_row(conn, cron_id))

    async def list(self, call: RpcCall, params: dict[str, Any]) -> Any:
        raw = params.get("filter")
        if raw is not None and not isinstance(raw, dict):
            raise SmithersError("INVALID_REQUEST", "filter must be an object")
        f: ListFilter = parse(ListFilter, raw or {}, "INVALID_REQUEST", "Invalid cronList filter")
        rows = [with_workflow(row) for row in self.host.store.read(crons.cron_rows)]
        if f.workflow is not None:
            rows = [row for row in rows if row["workflow"] == f.workflow]
        return rows

    async def create(self, call: RpcCall, params: dict[str, Any]) -> Any:
        p: CreateParams = parse(CreateParams, params, "INVALID_REQUEST", "Invalid cronCreate")
        if not p.workflow or not p.pattern:
            raise SmithersError("INVALID_REQUEST", "workflow and pattern are required")
        self._registration(p.workflow)
        pattern = check_pattern(p.pattern)
        zone(p.timezone)
        cron_id = _cron_id(p.cronId)
        now = self.host.now_ms()
        next_ms = next_fire_ms(pattern, now, p.timezone)
        enabled = True if p.enabled is None else p.enabled
        await self.host.store.write(
            lambda tx: crons.upsert_cron(
                tx,
                cron_id,
                pattern=pattern,
                workflow_path=workflow_path(p.workflow or ""),
                enabled=enabled,
                next_run_at_ms=next_ms,
                timezone=p.timezone or None,
                now_ms=now,
            )
        )
        row = self._row(cron_id)
        assert row is not None
        return with_workflow(row)

    async def delete(self, call: RpcCall, params: dict[str, Any]) -> Any:
        p: DeleteParams = parse(DeleteParams, params, "INVALID_REQUEST", "Invalid cronDelete")
        if not p.cronId:
            raise SmithersError("INVALID_REQUEST", "cronId is required")
        cron_id = p.cronId
        removed = await self.host.store.write(lambda tx: crons.delete_cron(tx, cron_id))
        if not removed:
            shown = clip(cron_id)
            raise SmithersError("NOT_FOUND", f"Cron not found: {shown}", {"cronId": shown})
        return {"cronId": cron_id, "removed": True}

    async def run(self, call: RpcCall, params: dict[str, Any]) -> Any:
        p: RunParams = parse(RunParams, params, "INVALID_REQUEST", "Invalid cronRun")
        row = self._row(p.cronId) if p.cronId else None
        key = (key_of(row["workflowPath"]) if row is not None else None) or p.workflow
        if not key:
            raise SmithersError("INVALID_REQUEST", "cronId or workflow is required")
        self._registration(key)  # 404 before the row is touched
        run_input = p.input
        if run_input is not None and not isinstance(run_input, dict):
            raise SmithersError("INVALID_INPUT", "input must be an object")
        if isinstance(run_input, dict):
            run_input = validate_rpc_input(run_input)
        now = self.host.now_ms()
        if row is not None:
            cron_id = row["cronId"]
            next_ms = next_fire_ms(row["pattern"], now, row["timezone"])
            await self.host.store.write(lambda tx: crons.cron_fired(tx, cron_id, now, next_ms))
        run_id = str(uuid.uuid4())
        auto_subscribe(call, run_id)  # the caller follows the run it started (reference 4.5)
        auth = RunAuth.for_trigger("rpc", call.identity)
        started = await self.host.launch(key, run_input, auth, run_id=run_id)
        if row is not None:
            self.host.broadcast(
                "cron.triggered", {"cronId": row["cronId"], "workflow": key, "runId": run_id}
            )
        return started


CRONS = ("crons",)


def cron_methods(host: HostContext) -> list[RpcMethod]:
    """The four methods, their aliases and scopes (reference 5.3 and 6.7)."""
    m = CronMethods(host)
    return [
        RpcMethod("cronList", m.list, scope="cron:read", aliases=("cron.list",)),
        RpcMethod("cronCreate", m.create, scope="cron:write", aliases=("cron.add",), changes=CRONS),
        RpcMethod(
            "cronDelete", m.delete, scope="cron:write", aliases=("cron.remove",), changes=CRONS
        ),
        RpcMethod(
            "cronRun",
            m.run,
            scope="cron:write",
            aliases=("cron.trigger",),
            changes=("crons", "runs"),
        ),
    ]
