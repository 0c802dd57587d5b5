"""The OpenAPI 3.1 document of ``start_server``, served at ``GET /openapi.json``.

Every route of :class:`~smithers_core.hosts.server_app.ServerApp` (and ``GET /health``, which
the pipeline answers before routing) is one :class:`~smithers_core.http.openapi.Operation`
here; the request bodies, query and header parameters and success bodies are the pydantic
models below, whose field names are the wire's (``runId``, ``workflowPath``). Errors answer
:class:`ErrorEnvelope` (reference/server.md 1.4, 4). The document is built by
:func:`~smithers_core.http.openapi.build_document` once per process and served as cached
bytes (:func:`server_document_bytes`).

Auth is ``optional`` on every route (a bearer is needed only when the server has a token),
except ``GET /health`` and ``GET /openapi.json``, which are public.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from smithers_core import jsonutil
from smithers_core.hosts.options import MAX_WORKFLOW_PATH
from smithers_core.http.openapi import Operation, Reply, build_document
from smithers_core.http.params import MAX_SQL_INT
from smithers_core.ids import MAX_RUN_ID

RUN_ID_CHARS = "^[A-Za-z0-9_.-]+$"
RUN_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": RUN_ID_CHARS,
    "minLength": 1,
    "maxLength": MAX_RUN_ID,
}
"""A run id (D4): 1-128 characters of ``A-Z a-z 0-9 _ . -``, never ``.`` nor with ``..``."""
RunId = Annotated[str, StringConstraints(pattern=RUN_ID_CHARS, min_length=1, max_length=MAX_RUN_ID)]
RUN_ID_RULE = "A run id: 1-128 characters of A-Z a-z 0-9 _ . - (not '.', no '..'); else 400."

Absent = SkipJsonSchema[None]
"""``X | Absent = absent()``: a field that may be missing but is never ``null``."""


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent(description: str | None = None, **kw: Any) -> Any:
    """A field that may be missing (its schema has no ``null`` and no default)."""
    return Field(None, description=description, json_schema_extra=_no_default, **kw)


class Wire(BaseModel):
    """A wire shape: each field's schema title is its name as sent (``runId``)."""

    model_config = ConfigDict(field_title_generator=lambda name, _info: name)


class Row(Wire):
    """A wire shape that may carry more fields than those listed (a stored row, a view)."""

    model_config = ConfigDict(extra="allow")


# -- errors ------------------------------------------------------------------------------------
class ErrorBody(Wire):
    """What went wrong: an upstream wire code (``NOT_FOUND``, ``INVALID_REQUEST``, ...), a
    message and, for some codes, details (``{"maxBytes": N}`` for ``PAYLOAD_TOO_LARGE``)."""

    code: str
    message: str
    details: dict[str, Any] | Absent = absent()


class ErrorEnvelope(Wire):
    """Every error answer of start_server: ``{"error": {"code", "message", "details"?}}``."""

    error: ErrorBody


# -- request bodies and parameters -------------------------------------------------------------
class RunConfig(Row):
    """Run options; a ``config`` that is not an object is ignored."""

    maxConcurrency: Annotated[float, Field(gt=0)] | Absent = absent(
        "How many tasks run at once: a positive number (a string JavaScript's Number() reads"
        " as one is taken too); else 400 INVALID_REQUEST."
    )


class ResumeRunBody(Wire):
    """The body of ``POST /v1/runs/{runId}/resume``: the workflow file to resume the run
    with (its ``runId`` and ``resume`` fields, if any, are ignored)."""

    workflowPath: str = Field(
        min_length=1,
        max_length=MAX_WORKFLOW_PATH,
        description="The workflow file, relative to the server's root directory (a path that"
        " leaves the root, even through a symlink, is 400 WORKFLOW_PATH_OUTSIDE_ROOT).",
        examples=["workflows/hello.py"],
    )
    input: dict[str, Any] | Absent = absent(
        description="The run's input object (default {}); validated by the workflow."
    )
    config: RunConfig | Absent = absent()


class StartRunBody(ResumeRunBody):
    """The body of ``POST /v1/runs``: start a run of ``workflowPath``, or resume ``runId``
    with ``resume``."""

    runId: RunId | Absent = absent(RUN_ID_RULE + " Default: a new UUID.")
    resume: bool | Absent = absent(
        description="Resume the run ``runId`` instead of starting one (any JSON value, read"
        " with JavaScript truthiness).",
    )


class DecisionBody(Wire):
    """The body of approve and deny (optional; no body is ``{}``)."""

    iteration: int = Field(0, ge=0, le=MAX_SQL_INT, description="The node's loop iteration.")
    note: str | None = None
    decidedBy: str | None = Field(None, description="Recorded only; never checked.")
    decision: dict[str, Any] | None = Field(
        None, description="For select and rank approvals: the chosen option keys."
    )


class SignalBody(Wire):
    """The body of a signal (optional; no body is ``{}``)."""

    data: Any = Field(None, description="The signal's payload, any JSON (null or none: {}).")
    correlationId: str | None = Field(
        None, description="Matches a wait for this correlation id (a non-string is ignored)."
    )
    receivedBy: str | None = Field(None, description="Recorded only (a non-string is ignored).")


class ListRunsQuery(Wire):
    """Query parameters of ``GET /v1/runs``."""

    limit: int = Field(
        50, ge=1, description="At most this many runs (a positive number; default 50)."
    )
    status: str | Absent = absent("Only runs with exactly this status (empty: every run).")


class FramesQuery(Wire):
    """Query parameters of ``GET /v1/runs/{runId}/frames``."""

    limit: int = Field(
        50, ge=1, description="At most this many frames (a positive number; default 50)."
    )
    afterFrameNo: int | Absent = absent("Only frames numbered above this one (negative: ignored).")


class EventsQuery(Wire):
    """Query parameters of ``GET /v1/runs/{runId}/events``."""

    afterSeq: int | Absent = absent("Events with a seq above this one (default -1: all).")


class EventsHeaders(Wire):
    """Request headers of ``GET /v1/runs/{runId}/events``."""

    last_event_id: int | Absent = absent(
        "The last seq the client saw (an integer); wins over afterSeq.", alias="Last-Event-ID"
    )


# -- success bodies ----------------------------------------------------------------------------
class Health(Wire):
    """``GET /health``: the server is up."""

    ok: bool


class RunAccepted(Wire):
    """A started run (``runId`` only) or a resumed one, with its status after the resume (a
    terminal run executes nothing and keeps its status)."""

    runId: str
    status: str | Absent = absent()


class Blocked(Row):
    """What a waiting run waits for: an approval (``requestedAt``), a timer (``wakeAt``) or
    an event (``correlationKey``)."""

    kind: Literal["approval", "timer", "event"]
    nodeId: str
    requestedAt: str | Absent = absent()
    wakeAt: str | Absent = absent()
    correlationKey: str | Absent = absent()


class Unhealthy(Row):
    """Why a ``running`` run looks unhealthy (its engine's heartbeat is stale)."""

    kind: str
    lastHeartbeatAt: str


class RunStateView(Row):
    """The run's derived state (reference/server.md 1.2); ``status`` is never rewritten."""

    runId: str
    computedAt: str = Field(description="ISO-8601 UTC with milliseconds.")
    state: Literal[
        "succeeded",
        "failed",
        "cancelled",
        "waiting-approval",
        "waiting-timer",
        "waiting-event",
        "running",
        "stale",
        "orphaned",
        "unknown",
    ]
    blocked: Blocked | Absent = absent()
    unhealthy: Unhealthy | Absent = absent()


class RunStatus(Wire):
    """``GET /v1/runs/{runId}``: the run's status and how many nodes are in each state."""

    runId: str
    workflowName: str
    status: str = Field(
        description="running, waiting-approval, waiting-event, waiting-timer, finished,"
        " continued, failed or cancelled."
    )
    startedAtMs: int | None
    finishedAtMs: int | None
    runState: RunStateView | Absent = absent()
    summary: dict[str, int] = Field(description="Node state -> how many nodes are in it.")


class RunRow(Row):
    """One row of ``GET /v1/runs``: the whole stored run (camelCase) and its ``runState``."""

    runId: str
    parentRunId: str | None
    workflowName: str
    workflowPath: str | None
    workflowHash: str | None
    status: str
    createdAtMs: int
    startedAtMs: int | None
    finishedAtMs: int | None
    heartbeatAtMs: int | None
    runtimeOwnerId: str | None
    cancelRequestedAtMs: int | None
    errorJson: str | None = Field(description="The failure, as JSON text.")
    configJson: str | None = Field(description="The run's config, as JSON text.")
    runState: RunStateView | Absent = absent()


class RunList(RootModel[list[RunRow]]):
    """``GET /v1/runs``: runs, newest first."""


class FrameRow(Row):
    """One frame of a run: its rendered tree (``xmlJson``, always whole) and task index."""

    runId: str
    frameNo: int
    createdAtMs: int
    xmlJson: str
    xmlHash: str
    encoding: str
    mountedTaskIdsJson: str | None = None
    taskIndexJson: str | None = None
    note: str | None = None


class FrameList(RootModel[list[FrameRow]]):
    """``GET /v1/runs/{runId}/frames``: frames, newest first."""


class ApprovalItem(Row):
    """A pending approval (reference/server.md 2.10)."""

    runId: str
    nodeId: str
    iteration: int
    workflowName: str
    runStatus: str | None
    label: str
    requestTitle: str
    requestSummary: str | None
    requestedAtMs: int | None
    waitingMs: int
    note: str | None
    decidedBy: str | None


class ApprovalList(Wire):
    """``GET /v1/approvals``: pending approvals, longest-waiting first."""

    approvals: list[ApprovalItem]


class RunRef(Wire):
    """Approve and deny: the run the decision was recorded on."""

    runId: str


class CancelResult(Wire):
    """A cancel: ``cancelled`` at once, or ``cancelling`` while an engine stops the run."""

    runId: str
    status: str


class SignalResult(Wire):
    """A delivered signal: its seq in the run's inbox and its trimmed name."""

    runId: str
    seq: int
    signalName: str
    correlationId: str | None
    receivedAtMs: int


class StreamEvent(Wire):
    """One event of ``GET /v1/runs/{runId}/events`` as an SSE client parses it."""

    event: Literal["smithers"]
    data: str = Field(
        description="The event as one line of JSON: type, runId, timestampMs, and per type"
        " nodeId, iteration, attempt, ...",
        json_schema_extra={"contentMediaType": "application/json"},
    )
    id: str = Field(pattern=r"^[0-9]+$", description="Its seq: the next Last-Event-ID.")


TEXT: dict[str, Any] = {"type": "string"}
SSE: dict[str, Any] = {
    "description": "The stream as text; tools that read an event stream's schema per event"
    " (as OpenAPI 3.2's itemSchema) get one event.",
    "anyOf": [TEXT, StreamEvent.model_json_schema()],
}

# -- the operations ----------------------------------------------------------------------------
BODY_ERRORS = (400, 401, 404, 409, 413)


def _op(
    method: str, path: str, operation_id: str, summary: str, tag: str, ok: Reply, **kw: Any
) -> Operation:
    """An operation answering ``ok`` (200), with optional auth unless ``auth`` says otherwise;
    one on a run (``{runId}`` in its path) checks the id (400) and the run (404)."""
    kw.setdefault("auth", "optional")
    if "{runId}" in path:
        kw.setdefault("errors", (400, 401, 404))
        kw["path_schemas"] = {"runId": RUN_ID_SCHEMA}
        kw["path_descriptions"] = {"runId": RUN_ID_RULE, **kw.get("path_descriptions", {})}
    responses = {200: ok, **kw.pop("responses", {})}
    return Operation(method, path, operation_id, summary, (tag,), responses=responses, **kw)


def _approvals(path: str, operation_id: str, summary: str) -> Operation:
    ok = Reply("Pending approvals, longest-waiting first.", ApprovalList)
    return _op("GET", path, operation_id, summary, "approvals", ok, errors=(401,))


def _signal(path: str, operation_id: str, summary: str) -> Operation:
    ok = Reply("The signal is stored; a run waiting for it resumes.", SignalResult)
    return _op(
        "POST",
        path,
        operation_id,
        summary,
        "signals",
        ok,
        body=SignalBody,
        body_required=False,
        errors=BODY_ERRORS,
        path_descriptions={"signalName": "Percent-decoded, then trimmed (1-256 characters)."},
        description="409 RUN_NOT_ACTIVE for a terminal run; 400 INVALID_INPUT (with the field"
        " errors) when the waiting node's model refuses the payload.",
    )


def _decide(verb: str) -> Operation:
    path = f"/v1/runs/{{runId}}/nodes/{{nodeId}}/{verb}"
    ok = Reply("The decision is recorded; the run continues.", RunRef)
    summary = f"{verb.capitalize()} a node waiting for approval"
    return _op(
        "POST",
        path,
        f"{verb}Node",
        summary,
        "approvals",
        ok,
        body=DecisionBody,
        body_required=False,
        errors=(400, 401, 403, 404, 409, 413),
        description="409 NODE_NOT_WAITING when the node is not waiting (or was decided); 403"
        " FORBIDDEN when the approval names other users.",
    )


STREAM = Reply(
    "retry: 1000, then one `event: smithers` / `data: <event JSON>` / `id: <seq>` block per"
    " event; `: keep-alive` comments; the stream ends after the run's terminal event.",
    media_type="text/event-stream",
    schema=SSE,
)
METRICS = Reply("Prometheus text (version 0.0.4).", media_type="text/plain", schema=TEXT)
STARTED = "Loads workflowPath afresh (a changed file is reloaded). 404 WORKFLOW_NOT_FOUND, 422"
STARTED += " WORKFLOW_LOAD_FAILED, 409 RUN_ALREADY_EXISTS, 400 INVALID_INPUT (input refused)."


def server_operations() -> list[Operation]:
    """Every route of start_server, in its router's order (``/health`` first)."""
    body_errors = (*BODY_ERRORS, 422)
    public: dict[str, Any] = {"auth": "none", "errors": ()}
    document = Reply("The OpenAPI 3.1 document.", schema={"type": "object"})
    runs = "/v1/runs/{runId}"
    return [
        _op("GET", "/health", "health", "Liveness", "server", Reply("Up", Health), **public),
        _op("GET", "/openapi.json", "openapi", "This document", "server", document, **public),
        _op("GET", "/metrics", "metrics", "Prometheus metrics", "server", METRICS, errors=(401,)),
        _op(
            "POST",
            "/v1/runs",
            "startRun",
            "Start a run (or resume one with resume)",
            "runs",
            Reply("The run started (or was resumed).", RunAccepted),
            body=StartRunBody,
            errors=body_errors,
            description=STARTED,
        ),
        _op(
            "POST",
            f"{runs}/resume",
            "resumeRun",
            "Resume a run",
            "runs",
            Reply("The run was resumed; its status.", RunAccepted),
            body=ResumeRunBody,
            errors=body_errors,
        ),
        _op(
            "POST",
            f"{runs}/cancel",
            "cancelRun",
            "Cancel a run",
            "runs",
            Reply("Cancelled, or cancelling while it stops.", CancelResult),
            errors=(400, 401, 404, 409),
            description="The body is never read. 409 RUN_NOT_ACTIVE for a terminal run.",
        ),
        _op(
            "GET",
            f"{runs}/events",
            "streamRunEvents",
            "The run's events (Server-Sent Events)",
            "runs",
            STREAM,
            query=EventsQuery,
            header_params=EventsHeaders,
            responses={204: Reply("The run is terminal and has no event after the cursor.")},
        ),
        _op("GET", runs, "getRun", "A run's status", "runs", Reply("Its status.", RunStatus)),
        _op(
            "GET",
            f"{runs}/frames",
            "listFrames",
            "A run's frames",
            "runs",
            Reply("Frames, newest first.", FrameList),
            query=FramesQuery,
        ),
        _decide("approve"),
        _decide("deny"),
        _signal(f"{runs}/signals/{{signalName}}", "sendSignal", "Send a signal to a run"),
        _signal("/signal/{runId}/{signalName}", "sendSignalLegacy", "Send a signal (legacy)"),
        _approvals("/v1/approvals", "listApprovals", "Pending approvals"),
        _approvals("/v1/approval/list", "listApprovalsV1List", "Pending approvals (alias)"),
        _approvals("/approval/list", "listApprovalsList", "Pending approvals (legacy)"),
        _approvals("/approvals", "listApprovalsLegacy", "Pending approvals (legacy)"),
        _op(
            "GET",
            "/v1/runs",
            "listRuns",
            "Runs, newest first",
            "runs",
            Reply("Runs, newest first.", RunList),
            query=ListRunsQuery,
            errors=(400, 401),
        ),
    ]


AUTH = (
    "The server's token (auth_token, or $SMITHERS_API_KEY), when it has one, on every route but"
    " /health and /openapi.json: `Authorization: Bearer <token>` (or the bare token), or"
    " `x-smithers-key: <token>` when there is no Authorization header. No token: auth is off."
)
DESCRIPTION = (
    "The REST run API of `smithers server` / `start_server`: start runs of workflow files under"
    " the server's root directory, follow their events, decide approvals, send signals."
    " JSON answers carry `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`;"
    ' errors are `{"error": {"code", "message", "details"?}}`; a wrong method or an unknown'
    " path is 404 NOT_FOUND; a body over the limit is 413 PAYLOAD_TOO_LARGE."
)


def _version() -> str:
    """The installed ``smithers-core`` version (the package root's ``__version__``, read here
    because the root imports the hosts)."""
    try:
        return metadata.version("smithers-core")
    except metadata.PackageNotFoundError:  # pragma: no cover - an uninstalled tree
        return "0.0.0"


def server_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of start_server (a new dict on every call)."""
    return build_document(
        title="Smithers server",
        version=_version(),
        operations=server_operations(),
        error_model=ErrorEnvelope,
        description=DESCRIPTION,
        auth_description=AUTH,
    )


@cache
def server_document_bytes() -> bytes:
    """The document as compact JSON, encoded once per process."""
    return jsonutil.dumps(server_document()).encode("utf-8")


__all__ = [
    "ErrorEnvelope",
    "StreamEvent",
    "server_document",
    "server_document_bytes",
    "server_operations",
]
