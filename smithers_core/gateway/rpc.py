"""RPC dispatch: scope gate, core catalog handlers, extension router (reference 5, 8).

Both transports call :meth:`Dispatcher.call`, which checks the scope, runs the handler and
translates engine errors into this surface's codes (one table, D8). Params are validated at
the edge with pydantic models; a failure answers the method's documented code and message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError

from smithers_core import jsonutil
from smithers_core.auth import Identity
from smithers_core.engine.transitions import TERMINAL_RUN
from smithers_core.errors import SmithersError
from smithers_core.gateway import catalog
from smithers_core.gateway.connection import Connection
from smithers_core.gateway.extensions import (
    MAX_RESULT_BYTES,
    Entry,
    ExtensionContext,
    StreamContext,
    call_maybe_async,
)
from smithers_core.gateway.frames import encode
from smithers_core.gateway.limits import validate_rpc_input
from smithers_core.workflow.models import RunAuth

if TYPE_CHECKING:
    from smithers_core.gateway.gateway import Gateway

# Methods whose handlers never await: a WebSocket answers them in its read loop (no task).
INLINE_METHODS = frozenset(
    name
    for name in ("health", "getRun", "listWorkflows", *catalog.ALIASES)
    if catalog.canonical(name) in ("health", "getRun", "listWorkflows")
)

ACTIVE_STATUSES = ("running", "waiting-approval", "waiting-event", "waiting-timer", "paused")


@dataclass
class CallContext:
    """Who is calling and over what."""

    identity: Identity
    transport: str  # "http" | "ws"
    connection: Connection | None = None
    connection_id: str | None = None
    after_response: list[Callable[[], None]] = field(default_factory=list)


Handler = Callable[[CallContext, dict[str, Any]], Awaitable[Any]]


class _Params(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RunIdParams(_Params):
    runId: StrictStr


class StartedBy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    harness: StrictStr | None = None
    sessionId: StrictStr | None = None
    prompt: StrictStr | None = None
    detected: StrictBool | None = None


class LaunchOptions(_Params):
    maxConcurrency: StrictInt | None = None
    allowNetwork: StrictBool | None = None
    maxOutputBytes: StrictInt | None = None
    toolTimeoutMs: StrictInt | None = None
    idempotencyKey: StrictStr | None = None
    runId: StrictStr | None = None
    startedBy: dict[str, Any] | None = None


class LaunchParams(_Params):
    workflow: StrictStr
    input: Any = None
    runId: StrictStr | None = None
    options: LaunchOptions | None = None


class ListRunsFilter(_Params):
    limit: Any = None
    offset: Any = None
    status: StrictStr | None = None
    workflow: StrictStr | None = None
    parentRunId: StrictStr | None = None
    includeSystem: StrictBool | None = None


class RerunParams(_Params):
    runId: StrictStr
    newRunId: StrictStr | None = None


class AttemptsListParams(_Params):
    runId: StrictStr
    nodeId: StrictStr | None = None
    iteration: StrictInt | None = None


class AttemptGetParams(_Params):
    runId: StrictStr
    nodeId: StrictStr
    iteration: StrictInt
    attempt: StrictInt


class ApprovalParams(_Params):
    runId: StrictStr
    nodeId: StrictStr
    iteration: StrictInt = 0
    approved: StrictBool | None = None
    note: StrictStr | None = None
    decision: dict[str, Any] | None = None


class SignalParams(_Params):
    runId: StrictStr
    signalName: StrictStr | None = None
    correlationKey: StrictStr | None = None
    correlationId: StrictStr | None = None
    payload: Any = None
    data: Any = None


def _parse(model: type[Any], params: dict[str, Any], code: str, message: str) -> Any:
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise SmithersError(
            code, message, {"issues": exc.errors(include_url=False, include_context=False)}
        ) from exc


def _sub(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    return value if isinstance(value, dict) else {}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _config(row: dict[str, Any]) -> dict[str, Any]:
    raw = row.get("config_json", row.get("configJson"))
    try:
        value = jsonutil.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Dispatcher:
    """Routes one call to its handler after the scope check."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.handlers: dict[str, Handler] = {
            "health": self.health,
            "listWorkflows": self.list_workflows,
            "launchRun": self.launch_run,
            "getRun": self.get_run,
            "listRuns": self.list_runs,
            "resumeRun": self.resume_run,
            "cancelRun": self.cancel_run,
            "runs.rerun": self.rerun,
            "listNodeStates": self.list_node_states,
            "frames.list": self.frames_list,
            "frames.get": self.frames_get,
            "attempts.list": self.attempts_list,
            "attempts.get": self.attempts_get,
            "listApprovals": self.list_approvals,
            "submitApproval": self.submit_approval,
            "submitSignal": self.submit_signal,
            "streamRunEvents": self.stream_run_events,
        }

    # -- entry ------------------------------------------------------------------------------
    def _gate(self, identity: Identity, method: str) -> Entry | None:
        """The scope gate; returns the extension entry of an ``ext.*`` method."""
        entry = self.gw.extensions.resolve(method) if method.startswith("ext.") else None
        required = catalog.required_scope(method, entry.scope if entry else None)
        method_scope = None if method.startswith("ext.") else catalog.catalog_scope(method)
        if not catalog.allowed(identity.scopes, method, required, method_scope):
            raise SmithersError(
                "FORBIDDEN",
                f"Missing required scope {required} for {method}",
                {"requiredScope": required},
            )
        return entry

    def call_inline(self, identity: Identity, method: str, params: Any) -> str:
        """:meth:`call` for :data:`INLINE_METHODS`, which never await: the payload's JSON.

        A finished run's ``getRun`` payload is encoded once and cached with its body (D13).
        """
        self._gate(identity, method)
        args = params if isinstance(params, dict) else {}
        name = catalog.canonical(method)
        started = time.perf_counter()
        try:
            if name == "getRun":
                return self.gw.run_record_json(self._run_id(args))
            if name == "health":
                return jsonutil.dumps(self.gw.health_payload(include_uptime=True))
            return jsonutil.dumps(self._list_workflows(args))
        except SmithersError as exc:
            raise translate(exc) from exc
        finally:
            self.gw.metrics.duration((time.perf_counter() - started) * 1000)

    async def call(self, ctx: CallContext, method: str, params: Any) -> Any:
        """Scope gate then dispatch; raises ``SmithersError`` with this surface's codes."""
        entry = self._gate(ctx.identity, method)
        args = params if isinstance(params, dict) else {}
        if method.startswith("ext."):
            if entry is None:
                raise SmithersError(
                    "EXTENSION_METHOD_NOT_FOUND",
                    f"Unknown extension method: {method}",
                    {"method": method},
                )
            return await self.call_extension(ctx, entry, args)
        handler = self.handlers.get(catalog.canonical(method))
        if handler is None:
            raise SmithersError("METHOD_NOT_FOUND", f"Unknown method: {method}")
        started = time.perf_counter()
        try:
            return await handler(ctx, args)
        except SmithersError as exc:
            raise translate(exc) from exc
        finally:
            self.gw.metrics.duration((time.perf_counter() - started) * 1000)

    # -- helpers ----------------------------------------------------------------------------
    @property
    def rt(self) -> Any:
        return self.gw.runtime

    def _row(self, run_id: str) -> dict[str, Any]:
        row: dict[str, Any] | None = self.rt.db.run_row(run_id)
        if row is None:
            raise SmithersError("NOT_FOUND", f"Run not found: {run_id}")
        return row

    def _run_id(self, params: dict[str, Any]) -> str:
        run_id = params.get("runId")
        if not isinstance(run_id, str) or not run_id:
            raise SmithersError("INVALID_REQUEST", "runId is required")
        return run_id

    def enrich(self, row: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        """Add ``workflowKey``, ``system`` and ``startedBy`` to a camelCase run row."""
        row["workflowKey"] = self.gw.workflow_key(
            config, row.get("workflowName"), row.get("workflowPath")
        )
        system = config.get("gatewaySystem")
        row["system"] = True if system is None else bool(system)
        started_by = config.get("startedBy")
        if isinstance(started_by, dict):
            row["startedBy"] = started_by
        return row

    def _auto_subscribe(self, ctx: CallContext, run_id: str) -> None:
        # D10: only a connection that already has a subscribe list gains the run.
        conn = ctx.connection
        if conn is not None and conn.subscribed is not None:
            conn.subscribed.add(run_id)

    # -- health and workflows -----------------------------------------------------------------
    async def health(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        return self.gw.health_payload(include_uptime=True)

    async def list_workflows(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        return self._list_workflows(params)

    def _list_workflows(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        filt = _sub(params, "filter")
        has_ui = params.get("hasUi", filt.get("hasUi"))
        include_system = params.get("includeSystem", filt.get("includeSystem")) is True
        out = []
        for item in self.gw.workflow_summaries(include_system=include_system):
            if isinstance(has_ui, bool) and item["hasUi"] != has_ui:
                continue
            out.append(item)
        return out

    # -- runs ---------------------------------------------------------------------------------
    async def launch_run(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        if not isinstance(params.get("workflow"), str) or not params.get("workflow"):
            raise SmithersError("INVALID_REQUEST", "workflow is required")
        started_by = _check_started_by(_sub(params, "options").get("startedBy"))
        p: LaunchParams = _parse(
            LaunchParams, params, "INVALID_REQUEST", "Invalid launchRun params"
        )
        key = p.workflow
        reg = self.gw.workflows.get(key)
        if reg is None:
            raise SmithersError("NOT_FOUND", f"Unknown workflow: {key}", {"workflow": key})
        options = p.options or LaunchOptions()
        limits: dict[str, int] = {}  # stored in the run's config; the engine applies them
        for name in ("maxConcurrency", "maxOutputBytes", "toolTimeoutMs"):
            value = getattr(options, name)
            if value is not None and value < 1:
                raise SmithersError("INVALID_INPUT", f"options.{name} must be an integer >= 1")
            if value is not None:
                limits[name] = value
        run_input = validate_rpc_input(params.get("input"))
        run_id = p.runId or options.runId or str(uuid.uuid4())
        config: dict[str, Any] = {
            "gatewayWorkflowKey": key,
            "gatewayTriggeredBy": ctx.identity.user_id or "gateway",
            "gatewaySystem": reg.system,
        }
        if started_by is not None:
            config["startedBy"] = started_by
        config.update(limits)
        self._auto_subscribe(ctx, run_id)
        try:
            await self.rt.service.launch(
                reg.workflow,
                run_input,
                run_id=run_id,
                auth=RunAuth.for_trigger("rpc", ctx.identity),
                config=config,
                allow_network=options.allowNetwork,
            )
        except SmithersError as exc:
            if exc.code == "RUN_ALREADY_EXISTS":
                raise SmithersError(
                    "CONFLICT", f"Run {run_id} is already active", {"runId": run_id}
                ) from exc
            raise
        return {"runId": run_id, "workflow": key, "system": reg.system}

    async def get_run(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        run_id = self._run_id(params)
        return self.gw.run_record(run_id)

    async def list_runs(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        raw = _sub(params, "filter") or params
        f: ListRunsFilter = _parse(
            ListRunsFilter, raw, "INVALID_REQUEST", "Invalid listRuns filter"
        )
        limit = 50 if f.limit is None else f.limit
        if not _positive_int(limit):
            raise SmithersError("INVALID_INPUT", "limit must be a positive integer")
        offset = 0 if f.offset is None else f.offset
        if (
            not isinstance(offset, int)
            or isinstance(offset, bool)
            or offset < 0
            or offset > 2**53 - 1
        ):
            raise SmithersError("INVALID_REQUEST", "offset must be a non-negative integer")
        limit = min(int(limit), 1000)
        return await self.gw.query_runs(
            limit=limit,
            offset=offset,
            status=f.status,
            workflow=f.workflow,
            parent_run_id=f.parentRunId,
            include_system=bool(f.includeSystem),
        )

    async def resume_run(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        run_id = self._run_id(params)
        row = self._row(run_id)
        if row["status"] in TERMINAL_RUN:
            return {"runId": run_id, "status": "already_terminal"}
        config = _config(row)
        key = self.gw.workflow_key(config, row.get("workflow_name"), row.get("workflow_path"))
        reg = self.gw.workflows.get(key or "")
        if reg is None:
            raise SmithersError("NOT_FOUND", f"Unknown workflow: {key}", {"workflow": key})
        self._auto_subscribe(ctx, run_id)
        result = await self.rt.service.resume(run_id, reg.workflow)
        if result.get("status") in TERMINAL_RUN:
            return {"runId": run_id, "status": "already_terminal"}
        return {"runId": run_id, "status": "resume_requested"}

    async def cancel_run(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        run_id = self._run_id(params)
        try:
            result: dict[str, Any] = await self.rt.service.cancel(run_id)
        except SmithersError as exc:
            if exc.code == "RUN_NOT_FOUND":
                raise SmithersError("RunNotFound", "Run not found", {"runId": run_id}) from exc
            if exc.code == "RUN_NOT_ACTIVE":
                raise SmithersError(
                    "RUN_NOT_ACTIVE", "Run is not currently active", exc.details
                ) from exc
            raise
        return {"runId": run_id, "status": result["status"]}

    async def rerun(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        run_id = self._run_id(params)
        p: RerunParams = _parse(RerunParams, params, "INVALID_REQUEST", "runId is required")
        row = self._row(run_id)
        config = _config(row)
        key = self.gw.workflow_key(config, row.get("workflow_name"), row.get("workflow_path"))
        reg = self.gw.workflows.get(key or "")
        if reg is None:
            raise SmithersError("NOT_FOUND", f"Unknown workflow: {key}", {"workflow": key})
        new_id = p.newRunId or str(uuid.uuid4())
        self._auto_subscribe(ctx, new_id)
        try:
            await self.rt.service.rerun(
                run_id,
                reg.workflow,
                new_run_id=new_id,
                auth=RunAuth.for_trigger("rpc", ctx.identity),
                config={
                    "gatewayWorkflowKey": key,
                    "gatewayTriggeredBy": ctx.identity.user_id or "gateway",
                    "gatewaySystem": reg.system,
                },
            )
        except SmithersError as exc:
            if exc.code == "RUN_ALREADY_EXISTS":
                raise SmithersError(
                    "CONFLICT", f"Run {new_id} is already active", {"runId": new_id}
                ) from exc
            raise
        return {"runId": new_id, "workflow": key, "system": reg.system}

    async def list_node_states(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        run_id = self._run_id(params)
        self._row(run_id)

        def q(c: Any) -> list[dict[str, Any]]:
            rows = c.execute(
                "SELECT n.node_id, n.iteration, n.state, n.last_attempt, n.updated_at_ms,"
                " n.label, a.started_at_ms, a.finished_at_ms FROM _smithers_nodes n"
                " LEFT JOIN _smithers_attempts a ON a.run_id = n.run_id AND a.node_id = n.node_id"
                " AND a.iteration = n.iteration AND a.attempt = n.last_attempt"
                " WHERE n.run_id = ? ORDER BY n.updated_at_ms, n.node_id, n.iteration",
                (run_id,),
            ).fetchall()
            return [
                {
                    "nodeId": r[0],
                    "iteration": r[1],
                    "state": r[2],
                    "lastAttempt": r[3],
                    "updatedAtMs": r[4],
                    "label": r[5],
                    "startedAtMs": r[6],
                    "finishedAtMs": r[7],
                }
                for r in rows
            ]

        return await self.rt.store.aread(q)

    async def frames_list(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        run_id = self._run_id(params)
        limit = params.get("limit", 50)
        if not _positive_int(limit):
            raise SmithersError("INVALID_INPUT", "limit must be a positive integer")
        after = params.get("afterFrameNo")
        if after is not None and not _positive_int(after):
            raise SmithersError("INVALID_INPUT", "afterFrameNo must be a positive integer")
        self._row(run_id)
        return self.rt.db.list_frames(run_id, min(int(limit), 1000), after)

    async def frames_get(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        run_id = self._run_id(params)
        frame_no = params.get("frameNo")
        if frame_no is not None and not _positive_int(frame_no):
            raise SmithersError("INVALID_INPUT", "frameNo must be a positive integer")
        self._row(run_id)
        frame = self.rt.db.get_frame(run_id, frame_no)
        if frame is None:
            raise SmithersError("NOT_FOUND", "Frame not found", {"runId": run_id})
        return frame

    async def attempts_list(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        run_id = self._run_id(params)
        p: AttemptsListParams = _parse(
            AttemptsListParams, params, "INVALID_REQUEST", "Invalid attempts.list params"
        )
        self._row(run_id)
        if p.nodeId is None:
            return self.rt.db.list_attempts(run_id)
        return self.rt.db.list_attempts(run_id, p.nodeId, p.iteration or 0)

    async def attempts_get(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        p: AttemptGetParams = _parse(
            AttemptGetParams,
            params,
            "INVALID_REQUEST",
            "runId, nodeId, iteration, and attempt are required",
        )
        self._row(p.runId)
        row = self.rt.db.get_attempt(p.runId, p.nodeId, p.iteration, p.attempt)
        if row is None:
            raise SmithersError("NOT_FOUND", "Attempt not found", {"runId": p.runId})
        return row

    # -- approvals and signals ----------------------------------------------------------------
    async def list_approvals(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        filt = _sub(params, "filter")

        def pick(name: str) -> Any:
            return params[name] if name in params else filt.get(name)

        limit = pick("limit")
        if limit is not None and not _positive_int(limit):
            raise SmithersError("INVALID_INPUT", "limit must be a positive integer")
        run_id, workflow = pick("runId"), pick("workflow")
        rows = await self.gw.pending_approvals(
            run_id if isinstance(run_id, str) else None,
            workflow if isinstance(workflow, str) else None,
        )
        return rows[:limit] if limit is not None else rows

    async def submit_approval(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        message = "runId, nodeId, and approved are required"
        p: ApprovalParams = _parse(ApprovalParams, params, "INVALID_REQUEST", message)
        approved = p.approved
        if approved is None and p.decision is not None:
            approved = p.decision.get("approved")
        if not isinstance(approved, bool):
            raise SmithersError("INVALID_REQUEST", message)
        note = p.note
        if note is None and p.decision is not None and isinstance(p.decision.get("note"), str):
            note = p.decision["note"]
        decision: Any = None
        if p.decision is not None:
            decision = p.decision.get("value", p.decision)
        self._row(p.runId)
        try:
            result: dict[str, Any] = await self.rt.service.decide_approval(
                p.runId,
                p.nodeId,
                approved=approved,
                iteration=p.iteration,
                note=note,
                decided_by=ctx.identity.user_id,
                decision=decision,
                identity=ctx.identity,
            )
        except SmithersError as exc:
            raise _approval_error(exc, p) from exc
        self.gw.metrics.approval_decisions.labels("approved" if approved else "denied").inc()
        self._auto_subscribe(ctx, p.runId)
        return {
            "runId": result["runId"],
            "nodeId": result["nodeId"],
            "iteration": result["iteration"],
            "approved": result["approved"],
        }

    async def submit_signal(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        message = "runId and signalName are required"
        p: SignalParams = _parse(SignalParams, params, "INVALID_REQUEST", message)
        name = p.signalName or p.correlationKey
        if not name:
            raise SmithersError("INVALID_REQUEST", message)
        correlation = p.correlationId if p.correlationId is not None else p.correlationKey
        payload = p.payload if "payload" in params else p.data
        self._row(p.runId)
        result = await self.rt.service.deliver_signal(
            p.runId,
            name,
            {} if payload is None else payload,
            correlation_id=correlation,
            received_by=ctx.identity.user_id or "gateway",
        )
        self.gw.metrics.signals.inc()
        self._auto_subscribe(ctx, p.runId)
        return result

    async def stream_run_events(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        return await self.gw.run_streams.open(ctx, params)

    # -- extensions ---------------------------------------------------------------------------
    async def call_extension(self, ctx: CallContext, entry: Entry, params: dict[str, Any]) -> Any:
        conn = ctx.connection
        base: dict[str, Any] = {
            "namespace": entry.namespace,
            "key": entry.key,
            "kind": entry.kind,
            "scopes": ctx.identity.scopes,
            "user_id": ctx.identity.user_id,
            "token_id": ctx.identity.token_id,
            "connection_id": ctx.connection_id,
        }
        if entry.kind == "stream":
            if conn is None:
                raise SmithersError(
                    "INVALID_REQUEST",
                    f"Extension stream {entry.method} is only supported over websocket"
                    " connections.",
                )
            return await self._subscribe_stream(conn, entry, params, base)
        ext_ctx = ExtensionContext(**base)
        if conn is not None:
            conn.stream_signals.append(ext_ctx.signal)
        try:
            result = await call_maybe_async(entry.fn, params, ext_ctx)
        except SmithersError:
            raise
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            raise SmithersError("EXTENSION_HANDLER_ERROR", str(exc) or type(exc).__name__) from exc
        finally:
            ext_ctx.signal.set()
            if conn is not None and ext_ctx.signal in conn.stream_signals:
                conn.stream_signals.remove(ext_ctx.signal)
        _check_size(result)
        return result

    async def _subscribe_stream(
        self, conn: Connection, entry: Entry, params: dict[str, Any], base: dict[str, Any]
    ) -> Any:
        stream_id = str(uuid.uuid4())
        pending = [0]
        state = {"open": True}
        limit = self.gw.options.run_stream_queue_limit
        cleanup_fn: list[Callable[[], Any]] = []

        def done_one() -> None:
            pending[0] -= 1

        def error(code: str, message: str) -> None:
            payload = {
                "streamId": stream_id,
                "namespace": entry.namespace,
                "key": entry.key,
                "error": {"version": "v1", "code": code, "message": message},
            }
            self.gw.send_event(conn, "ext.stream.error", payload)

        def send(payload: Any) -> None:
            if not state["open"] or conn.closed:
                return
            envelope = {
                "streamId": stream_id,
                "namespace": entry.namespace,
                "key": entry.key,
                "payload": payload,
            }
            text = encode(envelope)
            if len(text.encode("utf-8")) > MAX_RESULT_BYTES:
                error("PayloadTooLarge", f"Extension stream event exceeds {MAX_RESULT_BYTES} bytes")
                return
            if pending[0] >= limit:
                error(
                    "BackpressureDisconnect",
                    f"Extension stream outbound queue exceeded {limit} frames;"
                    " disconnecting slow consumer.",
                )
                stop()
                return
            pending[0] += 1
            self.gw.send_event_text(conn, "ext.stream.event", text, after=done_one)

        stream_ctx = StreamContext(**base, stream_id=stream_id, send=send)

        def stop() -> None:
            if not state["open"]:
                return
            state["open"] = False
            stream_ctx.signal.set()
            for fn in cleanup_fn:
                self.gw.spawn_cleanup(fn)

        conn.cleanups.append(stop)
        try:
            result = await call_maybe_async(entry.fn, params, stream_ctx)
        except SmithersError:
            stop()
            raise
        except Exception as exc:
            stop()
            raise SmithersError("EXTENSION_HANDLER_ERROR", "Extension subscribe failed.") from exc
        initial: Any = None
        has_initial = False
        if callable(result):
            cleanup_fn.append(result)
        elif isinstance(result, dict):
            if callable(result.get("cleanup")):
                cleanup_fn.append(result["cleanup"])
            if "initial" in result:
                initial, has_initial = result["initial"], True
        if conn.closed:
            stop()
            raise SmithersError("ConnectionClosed", "Connection closed during subscribe")
        out: dict[str, Any] = {
            "streamId": stream_id,
            "namespace": entry.namespace,
            "key": entry.key,
        }
        if has_initial:
            try:
                _check_size(initial)
            except SmithersError:
                stop()
                raise
            out["initial"] = initial
        return out


def _check_size(value: Any) -> None:
    try:
        size = len(jsonutil.dumps(value).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise SmithersError("EXTENSION_HANDLER_ERROR", "Extension result is not JSON") from exc
    if size > MAX_RESULT_BYTES:
        raise SmithersError(
            "PayloadTooLarge",
            f"Extension result exceeds {MAX_RESULT_BYTES} bytes",
            {"maxBytes": MAX_RESULT_BYTES},
        )


def _check_started_by(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SmithersError("INVALID_REQUEST", "options.startedBy must be an object")
    limits = {"harness": 64, "sessionId": 256, "prompt": None}
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "detected":
            if item is not True:
                raise SmithersError(
                    "INVALID_REQUEST", "options.startedBy.detected must be true when present"
                )
            out[key] = True
            continue
        if key not in limits:
            raise SmithersError("INVALID_REQUEST", f"options.startedBy.{key} is not allowed")
        if not isinstance(item, str):
            raise SmithersError("INVALID_REQUEST", f"options.startedBy.{key} must be a string")
        cap = limits[key]
        out[key] = item[:cap] if cap is not None else item[:8192]
    return out


def _approval_error(exc: SmithersError, p: ApprovalParams) -> SmithersError:
    details = {"runId": p.runId, "nodeId": p.nodeId, "iteration": p.iteration}
    if exc.code in ("ALREADY_DECIDED", "NODE_NOT_WAITING"):
        status = (exc.details or {}).get("status", "not-requested")
        return SmithersError(
            "AlreadyDecided",
            f"Approval for {p.nodeId} (iteration {p.iteration}) is already decided",
            {**details, "status": status},
        )
    if exc.code == "FORBIDDEN":
        if "allowedUsers" in (exc.details or {}):
            return SmithersError("FORBIDDEN", "User is not allowed to decide this approval")
        return SmithersError("FORBIDDEN", "Connection is missing required approval scope")
    if exc.code == "INVALID_INPUT":
        return SmithersError("INVALID_REQUEST", exc.message, exc.details)
    return translate(exc)


_TRANSLATE = {
    "RUN_NOT_FOUND": "NOT_FOUND",
    "WORKFLOW_NOT_FOUND": "NOT_FOUND",
    "RUN_ALREADY_EXISTS": "CONFLICT",
    "ENGINE_CLOSED": "SERVER_ERROR",
    "WORKFLOW_LOAD_FAILED": "SERVER_ERROR",
}


def translate(exc: SmithersError) -> SmithersError:
    """Engine codes -> this surface's codes (the one table of D8 for the gateway)."""
    code = _TRANSLATE.get(exc.code)
    if code is None:
        return exc
    if exc.code == "RUN_NOT_FOUND":
        return SmithersError(code, exc.message)
    return SmithersError(code, exc.message, exc.details)


__all__ = ["ACTIVE_STATUSES", "INLINE_METHODS", "CallContext", "Dispatcher", "translate"]
