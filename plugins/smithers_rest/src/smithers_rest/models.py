"""Pydantic models of the facade's wire shapes: query parameters, bodies, the rows in ``data``
and the envelopes. They document the facade (its OpenAPI document is generated from them);
requests are validated by the RPC method each route calls, so errors keep its codes."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class _Wire(BaseModel):
    """Rows may carry more fields than documented (newer columns, plugin fields)."""

    model_config = ConfigDict(extra="allow")


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- envelopes ---------------------------------------------------------------------------------
class Ok(BaseModel, Generic[T]):
    """A read's answer: ``{ok: true, data}``."""

    ok: Literal[True]
    data: T


class Mutation(BaseModel, Generic[T]):
    """A mutation's answer: ``{ok: true, data, seq}``; ``seq`` is the change stream's sequence
    whose ``change`` event carries this mutation (wait for an event with ``id >= seq``)."""

    ok: Literal[True]
    data: T
    seq: int


class ErrorBody(_Wire):
    """``code`` (the RPC error code), ``message`` and, for some codes, ``details``."""

    code: str
    message: str
    details: dict[str, Any] | None = None


class Failure(BaseModel):
    """Every failure: ``{ok: false, error}`` with the code's HTTP status."""

    ok: Literal[False]
    error: ErrorBody


# -- query parameters (flat, as upstream passes them) ------------------------------------------
class RunsQuery(_Query):
    """Filters of ``GET /v1/api/runs``."""

    limit: int | None = Field(None, ge=1, description="At most this many runs (default 50).")
    offset: int | None = Field(None, ge=0, description="Skip this many (default 0).")
    status: str | None = None
    workflow: str | None = Field(None, description="A registered workflow key.")
    parentRunId: str | None = None
    includeSystem: bool | None = Field(None, description="Include system workflows' runs.")


class EventsQuery(_Query):
    """``GET /v1/api/events``: the persisted history of one run."""

    runId: str = Field(description="The run whose events to read.")
    nodeId: str | None = Field(None, description="Only this node's events.")
    afterSeq: int | None = Field(None, ge=-1, description="Events after this seq (default -1).")
    limit: int | None = Field(None, ge=1, le=1000, description="At most this many (default 100).")


class RunEventsQuery(_Query):
    """``GET /v1/api/runs/{runId}/events``."""

    nodeId: str | None = None
    afterSeq: int | None = Field(None, ge=-1)
    limit: int | None = Field(None, ge=1, le=1000)


class IterationQuery(_Query):
    """The node iteration (default 0)."""

    iteration: int | None = Field(None, ge=0)


class LimitQuery(_Query):
    """``limit`` only."""

    limit: int | None = Field(None, ge=1)


class FrameQuery(_Query):
    """A frame number (default: the latest)."""

    frameNo: int | None = Field(None, ge=0)


class ApprovalsQuery(_Query):
    """Filters of ``GET /v1/api/approvals``."""

    runId: str | None = None
    workflow: str | None = None
    limit: int | None = Field(None, ge=1)


class WorkflowsQuery(_Query):
    """Filters of ``GET /v1/api/workflows``."""

    hasUi: bool | None = None
    includeSystem: bool | None = None


class CronsQuery(_Query):
    """Filters of ``GET /v1/api/crons``."""

    workflow: str | None = None


class DocsQuery(_Query):
    """Filters of ``GET /v1/api/docs``."""

    kind: str | None = None
    includeDeleted: bool | None = None
    updatedAfterMs: int | None = Field(None, ge=0)
    limit: int | None = Field(None, ge=1)


class KindQuery(_Query):
    """``kind`` only."""

    kind: str | None = None


class ScoresQuery(_Query):
    """``runId`` and ``nodeId``."""

    runId: str | None = None
    nodeId: str | None = None


class NamespaceQuery(_Query):
    """``namespace`` only."""

    namespace: str | None = None


class UsageQuery(_Query):
    """``fresh`` only."""

    fresh: bool | None = None


# -- bodies ------------------------------------------------------------------------------------
class LaunchBody(_Body):
    """``POST /v1/api/runs``: the workflow key (``workflow``, or ``workflowKey`` /
    ``workflowId``), its ``input`` and ``launchRun``'s ``runId`` / ``options``."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "anyOf": [
                {"required": ["workflow"]},
                {"required": ["workflowKey"]},
                {"required": ["workflowId"]},
            ]
        },
    )

    workflow: str | None = None
    workflowKey: str | None = None
    workflowId: str | None = None
    input: dict[str, Any] | None = None
    runId: str | None = None
    options: dict[str, Any] | None = None


class OptionsBody(_Body):
    """``options`` for the run-control method."""

    options: dict[str, Any] | None = None


class RewindBody(_Body):
    """``rewindRun``'s parameters."""

    frameNo: int = Field(ge=0)
    confirm: bool
    force: bool | None = None
    noRevert: bool | None = None


class SteerBody(_Body):
    """``message`` for the monitor."""

    message: str


class RetryBody(_Body):
    """``retryTask``'s parameters."""

    iteration: int | None = Field(None, ge=0)
    resetDependents: bool | None = None


class DecisionBody(_Body):
    """``approved`` (or ``decision.approved``), ``note``, and the ``decision`` value."""

    approved: bool | None = None
    note: str | None = None
    decision: dict[str, Any] | None = None


class SignalBody(_Body):
    """``submitSignal``'s parameters."""

    runId: str
    signalName: str | None = None
    correlationKey: str | None = None
    correlationId: str | None = None
    payload: Any = None
    data: Any = None


class CronBody(_Body):
    """``cronCreate``'s parameters."""

    workflow: str
    pattern: str
    cronId: str | None = None
    enabled: bool | None = None
    timezone: str | None = None


class CronRunBody(_Body):
    """``cronRun``'s parameters."""

    cronId: str | None = None
    workflow: str | None = None
    input: dict[str, Any] | None = None


class TicketBody(_Body):
    """``createTicket``'s parameters."""

    path: str
    content: str
    kind: str | None = None
    status: str | None = None


class TicketUpdateBody(_Body):
    """``updateTicket``'s parameters."""

    content: str | None = None
    status: str | None = None


# -- rows in data ------------------------------------------------------------------------------
class RunRow(_Wire):
    """A run (``listRuns`` items; ``getRun`` adds ``summary`` and ``runState``)."""

    runId: str
    parentRunId: str | None = None
    workflowName: str | None = None
    workflowPath: str | None = None
    workflowHash: str | None = None
    status: str
    createdAtMs: int | None = None
    startedAtMs: int | None = None
    finishedAtMs: int | None = None
    heartbeatAtMs: int | None = None
    errorJson: str | None = None
    configJson: str | None = None
    workflowKey: str | None = None
    system: bool
    startedBy: dict[str, Any] | None = None


class RunDetail(RunRow):
    """``getRun``: the run with its node ``summary`` and ``runState``."""

    summary: dict[str, int] = Field(default_factory=dict)
    runState: dict[str, Any] | None = None


class Launched(_Wire):
    """A started run."""

    runId: str
    workflow: str
    system: bool


class RunControl(_Wire):
    """The run and its new ``status`` (``cancelled``, ``resume_requested`` ...)."""

    runId: str
    status: str


class NodeState(_Wire):
    """One node of a run (the timing of its latest attempt)."""

    nodeId: str
    iteration: int
    state: str
    lastAttempt: int | None = None
    updatedAtMs: int | None = None
    label: str | None = None
    startedAtMs: int | None = None
    finishedAtMs: int | None = None


class EventRow(_Wire):
    """A persisted run event."""

    runId: str
    seq: int
    timestampMs: int
    type: str
    payloadJson: str


class NodeOutput(_Wire):
    """``getNodeOutput``: ``produced`` / ``pending`` / ``failed``, the row and its schema."""

    status: str
    row: Any = None
    schema_: Any = Field(None, alias="schema")


class PendingApproval(_Wire):
    """An approval waiting for a decision."""

    runId: str
    workflowKey: str | None = None
    nodeId: str
    iteration: int
    requestTitle: str | None = None
    requestSummary: str | None = None
    requestedAtMs: int | None = None
    approvalMode: str
    options: list[dict[str, Any]] = Field(default_factory=list)
    allowedScopes: list[str] = Field(default_factory=list)
    allowedUsers: list[str] = Field(default_factory=list)
    autoApprove: Any = None


class Decided(_Wire):
    """A recorded decision."""

    runId: str
    nodeId: str
    iteration: int
    approved: bool


class SignalRecord(_Wire):
    """A delivered signal."""

    runId: str
    seq: int
    signalName: str
    correlationId: str | None = None
    receivedAtMs: int


class CronRow(_Wire):
    """A schedule; ``workflow`` is the registered key."""

    cronId: str
    pattern: str
    workflowPath: str
    enabled: bool
    createdAtMs: int
    lastRunAtMs: int | None = None
    nextRunAtMs: int | None = None
    errorJson: str | None = None
    timezone: str | None = None
    workflow: str | None = None


class CronRemoved(_Wire):
    """A removed schedule."""

    cronId: str
    removed: bool


class WorkflowSummary(_Wire):
    """A registered workflow; ``inputSchema`` is the JSON Schema of its input model."""

    key: str
    readableName: str | None = None
    description: str | None = None
    hasUi: bool
    uiPath: str | None = None
    system: bool
    inputSchema: dict[str, Any] | None = None


class Prompt(_Wire):
    """A prompt file under ``.smithers/prompts``."""

    id: str
    entryFile: str
    source: str
