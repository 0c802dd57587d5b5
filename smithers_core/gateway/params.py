"""Params of core's RPC methods: pydantic models validated at the edge, and the small checks
whose codes and messages upstream fixes (reference 5)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from smithers_core.contributions import RpcCall
from smithers_core.errors import SmithersError, validation_issues
from smithers_core.http.params import MAX_SQL_INT
from smithers_core.ids import clip, is_run_id, run_id_error

MAX_OFFSET = 2**53 - 1


class _Params(BaseModel):
    model_config = ConfigDict(extra="ignore")


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


SqlInt = Annotated[StrictInt, Field(ge=-MAX_SQL_INT - 1, le=MAX_SQL_INT)]
"""An integer SQLite can store: a query parameter beyond it is refused, never a 500."""


class AttemptsListParams(_Params):
    runId: StrictStr
    nodeId: StrictStr | None = None
    iteration: SqlInt | None = None


class AttemptGetParams(_Params):
    runId: StrictStr
    nodeId: StrictStr
    iteration: SqlInt
    attempt: SqlInt


class ApprovalParams(_Params):
    runId: StrictStr
    nodeId: StrictStr
    iteration: SqlInt = 0
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


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_type": "a boolean",
    "float_type": "a number",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
}


def type_message(issues: list[Any]) -> str | None:
    """``<field> must be <type>`` for the first issue, None when a field is missing or null
    (the caller's ``... is required`` message says that better)."""
    if not issues or any(i.get("type") == "missing" or i.get("input", 0) is None for i in issues):
        return None
    issue = issues[0]
    field = ".".join(str(p) for p in issue.get("loc", ())) or "params"
    expected = _EXPECTED.get(issue.get("type", ""))
    return f"{field} must be {expected}" if expected else f"{field}: {issue.get('msg')}"


def parse(model: type[Any], params: dict[str, Any], code: str, message: str) -> Any:
    """``model`` validated from ``params``; a failure is ``code`` with the issues, and
    ``message`` when a field is missing, else what is wrong (``runId must be a string``)."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        issues = validation_issues(exc)
        raise SmithersError(code, type_message(issues) or message, {"issues": issues}) from exc


def sub(params: dict[str, Any], name: str) -> dict[str, Any]:
    """``params[name]`` when it is an object, else ``{}``."""
    value = params.get(name)
    return value if isinstance(value, dict) else {}


def is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def is_row_number(value: Any) -> bool:
    """A positive integer SQLite can bind (a frame number, a cursor); a bigger one is refused
    rather than answered with a 500."""
    return is_positive_int(value) and value <= MAX_SQL_INT


def positive_limit(value: Any, default: int, cap: int) -> int:
    """A ``limit`` param: absent -> ``default``; not an integer >= 1 -> ``INVALID_INPUT``."""
    limit = default if value is None else value
    if not is_positive_int(limit):
        raise SmithersError("INVALID_INPUT", "limit must be a positive integer")
    return min(int(limit), cap)


def offset_of(value: Any) -> int:
    """An ``offset`` param: absent -> 0; a non-negative safe integer, else ``INVALID_REQUEST``."""
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > MAX_OFFSET:
        raise SmithersError("INVALID_REQUEST", "offset must be a non-negative integer")
    return value


_RUN_ID_CODES = {
    "streamRunEvents": "InvalidRunId",
    "getDevToolsSnapshot": "InvalidRunId",
    "streamDevTools": "InvalidRunId",
    "getNodeDiff": "InvalidRunId",
    "getRunDiff": "InvalidRunId",
    "whatHappened": "InvalidRunId",
    "getNodeOutput": "InvalidRunId",
    "rewindRun": "InvalidRunId",
}


def check_run_ids(method: str, params: dict[str, Any]) -> None:
    """D4: ``runId``, ``newRunId`` and ``options.runId``, when they are non-empty strings, are
    run ids, else 400 (``InvalidRunId`` where the method answers a missing id so, else
    ``INVALID_REQUEST``). Absent, empty or non-string ids are left to the method's own check."""
    code = _RUN_ID_CODES.get(method, "INVALID_REQUEST")
    options = params.get("options")
    for field, value in (
        ("runId", params.get("runId")),
        ("newRunId", params.get("newRunId")),
        ("options.runId", options.get("runId") if isinstance(options, dict) else None),
    ):
        if isinstance(value, str) and value and not is_run_id(value):
            raise run_id_error(field, code)


def run_id_of(params: dict[str, Any], code: str = "INVALID_REQUEST") -> str:
    """``params.runId``, else ``code`` with ``runId is required`` (absent, null or empty) or
    ``runId must be a string``."""
    run_id = params.get("runId")
    if not isinstance(run_id, str) or not run_id:
        missing = run_id is None or run_id == ""
        raise SmithersError(code, "runId is required" if missing else "runId must be a string")
    return run_id


def started_by(value: Any) -> dict[str, Any] | None:
    """``options.startedBy``: known keys only, strings clipped (``harness`` 64, ``sessionId``
    256, ``prompt`` 8,192), ``detected`` only ``true``."""
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
            raise SmithersError("INVALID_REQUEST", f"options.startedBy.{clip(key)} is not allowed")
        if not isinstance(item, str):
            raise SmithersError("INVALID_REQUEST", f"options.startedBy.{key} must be a string")
        cap = limits[key]
        out[key] = item[:cap] if cap is not None else item[:8192]
    return out


def auto_subscribe(call: RpcCall, run_id: str) -> None:
    """D10: a run a socket acts on joins its subscribe list, if it has one."""
    conn = call.connection
    if conn is not None and conn.subscribed is not None:
        conn.subscribed.add(run_id)


__all__ = [
    "ApprovalParams",
    "AttemptGetParams",
    "AttemptsListParams",
    "LaunchOptions",
    "LaunchParams",
    "ListRunsFilter",
    "RerunParams",
    "SignalParams",
    "auto_subscribe",
    "check_run_ids",
    "is_positive_int",
    "is_row_number",
    "offset_of",
    "parse",
    "positive_limit",
    "run_id_of",
    "started_by",
    "sub",
    "type_message",
]
