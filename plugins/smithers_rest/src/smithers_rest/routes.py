"""The facade's routes (reference 9.2): each names the RPC method it calls and how its
parameters are built from the path, the flat query and the body. A route whose method no
plugin provides yet answers that method's ``METHOD_NOT_FOUND`` (404), never a 500.

``GET /v1/api/events`` and ``GET /v1/api/runs/{runId}/events`` read the persisted history and
have no RPC method; they are served here with ``getRun``'s scope (``run:read``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from smithers_core.errors import SmithersError
from smithers_core.http.params import MAX_SQL_INT
from smithers_core.ids import check_run_id
from smithers_rest import models as m

PREFIX = "/v1/api"
EVENTS_LIMIT = 100
EVENTS_MAX = 1000


@dataclass(frozen=True, slots=True)
class RestRequest:
    """One request as the builders see it: decoded path parameters, the coerced flat query
    and the JSON body (``{}`` for reads and empty bodies)."""

    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]


Build = Callable[[RestRequest], dict[str, Any]]


def flat(req: RestRequest) -> dict[str, Any]:
    """The query (reads) or the body (writes) as the method's params."""
    return {**req.query, **req.body}


def filtered(req: RestRequest) -> dict[str, Any]:
    """The query under ``filter`` (``listRuns``, ``cronList``)."""
    return {"filter": dict(req.query)}


def with_path(req: RestRequest) -> dict[str, Any]:
    """The path parameters over the query and body."""
    return {**req.query, **req.body, **req.path}


def launch(req: RestRequest) -> dict[str, Any]:
    """``launchRun``: ``workflow``, else ``workflowKey`` or ``workflowId``."""
    params = {k: v for k, v in req.body.items() if k not in ("workflowKey", "workflowId")}
    if params.get("workflow") is None:
        params["workflow"] = req.body.get("workflowKey") or req.body.get("workflowId")
    return params


def approval(req: RestRequest) -> dict[str, Any]:
    """``submitApproval``: the id ``<runId:nodeId:iteration>`` is split at its first and last
    colon (node ids may hold colons)."""
    key = req.path["approvalId"]
    first, last = key.find(":"), key.rfind(":")
    iteration = key[last + 1 :]
    if first <= 0 or last <= first + 1 or not iteration.isdigit() or not iteration.isascii():
        raise SmithersError(
            "INVALID_REQUEST", "Approval id must be <runId:nodeId:iteration>", {"id": key}
        )
    return {
        **req.body,
        "runId": key[:first],
        "nodeId": key[first + 1 : last],
        "iteration": int(iteration),
    }


def ticket(req: RestRequest) -> dict[str, Any]:
    return {**req.body, "path": req.path["path"]}


def scores_for_runs(req: RestRequest) -> dict[str, Any]:
    ids = req.query.get("runId")
    run_ids = [s for s in str(ids).split(",") if s] if ids is not None else []
    return {**{k: v for k, v in req.query.items() if k != "runId"}, "runIds": run_ids}


@dataclass(frozen=True, slots=True)
class RestRoute:
    """A route under ``/v1/api``: ``rpc`` (None: served by the facade itself), its params
    ``build``-er, and for the document its ``summary``, ``query``, ``body`` and ``data``."""

    method: str
    path: str
    rpc: str | None
    summary: str
    build: Build = flat
    data: Any = Any
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    tag: str = "runs"
    body_required: bool = False
    notes: dict[str, str] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    """Statuses beyond the usual ones (501 for an operation this host cannot offer, 429)."""

    @property
    def mutation(self) -> bool:
        """Writes answer ``{ok, data, seq}``."""
        return self.method != "GET"

    @property
    def full_path(self) -> str:
        return PREFIX + self.path


def _r(method: str, path: str, rpc: str | None, summary: str, **kw: Any) -> RestRoute:
    return RestRoute(method, path, rpc, summary, **kw)


_RUN = "/runs/{runId}"
_NODE_PATHS = ("/nodes/{runId}/{nodeId}", "/runs/{runId}/nodes/{nodeId}")

ROUTES: tuple[RestRoute, ...] = (
    _r("GET", "/runs", "listRuns", "List runs", build=filtered, data=list[m.RunRow],
       query=m.RunsQuery),
    _r("POST", "/runs", "launchRun", "Launch a run", build=launch, data=m.Launched,
       body=m.LaunchBody, body_required=True),
    _r("GET", _RUN, "getRun", "Get a run", build=with_path, data=m.RunDetail),
    _r("POST", _RUN + "/cancel", "cancelRun", "Cancel a run", build=with_path,
       data=m.RunControl, body=m.OptionsBody),
    _r("POST", _RUN + "/pause", "pauseRun", "Pause a run (drains, then parks it)",
       build=with_path, data=m.RunControl, body=m.OptionsBody),
    _r("POST", _RUN + "/resume", "resumeRun", "Resume a run", build=with_path,
       data=m.RunControl, body=m.OptionsBody),
    _r("POST", _RUN + "/rewind", "rewindRun", "Rewind a run to a frame", build=with_path,
       body=m.RewindBody, body_required=True, errors=(429, 500, 501)),
    _r("POST", _RUN + "/hijack", "hijackRun", "Hijack a run", build=with_path,
       body=m.OptionsBody),
    _r("POST", _RUN + "/oneshot-monitor/attach", "oneshotMonitorAttach",
       "Attach the oneshot monitor", build=with_path, body=m.OptionsBody),
    _r("POST", _RUN + "/oneshot-monitor/steer", "oneshotMonitorSteer",
       "Steer the oneshot monitor", build=with_path, body=m.SteerBody, body_required=True),
    _r("POST", _RUN + "/oneshot-monitor/restart", "oneshotMonitorRestart",
       "Restart the oneshot monitor", build=with_path, body=m.OptionsBody),
    _r("GET", _RUN + "/hijack-candidates", "listHijackCandidates", "Hijack candidates",
       build=with_path),
    _r("GET", _RUN + "/node-states", "listNodeStates", "A run's node states",
       build=with_path, data=list[m.NodeState]),
    _r("GET", _RUN + "/token-usage", "listRunTokenUsage", "A run's token usage",
       build=with_path),
    _r("GET", _RUN + "/descendants", "listRunDescendants", "A run's descendants",
       build=with_path, data=list[m.RunRow], query=m.LimitQuery),
    _r("GET", _RUN + "/tree", "getRunTree", "A run's tree", build=with_path),
    _r("GET", _RUN + "/devtools", "getDevToolsSnapshot", "A DevTools snapshot",
       build=with_path, query=m.FrameQuery, tag="devtools"),
    _r("GET", _RUN + "/events", None, "A run's persisted events", build=with_path,
       data=list[m.EventRow], query=m.RunEventsQuery, tag="events"),
    _r("GET", "/events", None, "Persisted events of a run", data=list[m.EventRow],
       query=m.EventsQuery, tag="events"),
    *(
        route
        for base in _NODE_PATHS
        for route in (
            _r("POST", base + "/retry", "retryTask", "Retry a node", build=with_path,
               body=m.RetryBody, tag="nodes"),
            _r("GET", base + "/output", "getNodeOutput", "A node's output", build=with_path,
               data=m.NodeOutput, query=m.IterationQuery, tag="nodes"),
            _r("GET", base + "/diff", "getNodeDiff", "A node's diff", build=with_path,
               query=m.IterationQuery, tag="nodes", errors=(501,)),
        )
    ),
    _r("GET", "/approvals", "listApprovals", "Pending approvals",
       data=list[m.PendingApproval], query=m.ApprovalsQuery, tag="approvals"),
    _r("POST", "/approvals/{approvalId}", "submitApproval", "Decide an approval",
       build=approval, data=m.Decided, body=m.DecisionBody, body_required=True,
       tag="approvals",
       notes={"approvalId": "runId:nodeId:iteration (split at the first and last colon)"}),
    _r("POST", "/signals", "submitSignal", "Send a signal to a run", data=m.SignalRecord,
       body=m.SignalBody, body_required=True, tag="signals"),
    _r("GET", "/crons", "cronList", "List schedules", build=filtered,
       data=list[m.CronRow], query=m.CronsQuery, tag="crons"),
    _r("POST", "/crons", "cronCreate", "Create or replace a schedule", data=m.CronRow,
       body=m.CronBody, body_required=True, tag="crons"),
    _r("POST", "/crons/run", "cronRun", "Trigger a schedule now", data=m.Launched,
       body=m.CronRunBody, body_required=True, tag="crons"),
    _r("DELETE", "/crons/{cronId}", "cronDelete", "Delete a schedule", build=with_path,
       data=m.CronRemoved, tag="crons"),
    _r("GET", "/scores/compare", "listScoresForRuns", "Compare runs' scores",
       build=scores_for_runs, query=m.ScoresQuery, tag="scores"),
    _r("GET", "/scores/{runId}/{scoreId}", "getScoreDetail", "A score's detail",
       build=with_path, tag="scores"),
    _r("POST", "/tickets", "createTicket", "Create a ticket", body=m.TicketBody,
       body_required=True, tag="tickets"),
    *(
        _r(method, "/tickets/{path}", rpc, summary, build=ticket, body=body, tag="tickets")
        for method, rpc, summary, body in (
            ("PATCH", "updateTicket", "Update a ticket", m.TicketUpdateBody),
            ("PUT", "updateTicket", "Replace a ticket", m.TicketUpdateBody),
            ("DELETE", "deleteTicket", "Delete a ticket", None),
        )
    ),
    _r("GET", "/workflows", "listWorkflows", "Registered workflows",
       data=list[m.WorkflowSummary], query=m.WorkflowsQuery, tag="workflows"),
    _r("GET", "/docs", "listDocs", "Docs", query=m.DocsQuery, tag="docs"),
    _r("GET", "/prompts", "listPrompts", "Prompts", data=list[m.Prompt], tag="workflows"),
    _r("GET", "/scores", "listScores", "A run's scores", query=m.ScoresQuery, tag="scores"),
    _r("GET", "/tickets", "listTickets", "Tickets", query=m.KindQuery, tag="tickets"),
    _r("GET", "/memory-facts", "listMemoryFacts", "Memory facts", query=m.NamespaceQuery,
       tag="memory"),
    _r("GET", "/accounts", "listAccounts", "Accounts", tag="accounts"),
    _r("GET", "/usage", "listUsageReports", "Usage reports", query=m.UsageQuery,
       tag="accounts"),
    _r("GET", "/schema-signature", "getSchemaSignature", "The schema signature",
       tag="workflows"),
)  # fmt: skip


def events_params(req: RestRequest) -> tuple[str, str | None, int, int]:
    """``(runId, nodeId, afterSeq, limit)`` of an events read; ``INVALID_REQUEST`` when bad."""
    params = with_path(req)
    run_id, node_id = params.get("runId"), params.get("nodeId")
    after, limit = params.get("afterSeq", -1), params.get("limit", EVENTS_LIMIT)
    if not isinstance(run_id, str) or not run_id:
        raise SmithersError("INVALID_REQUEST", "runId is required")
    check_run_id(run_id, code="INVALID_REQUEST")
    if node_id is not None and not isinstance(node_id, str):
        raise SmithersError("INVALID_REQUEST", "nodeId must be a string")
    if not isinstance(after, int) or isinstance(after, bool) or not -1 <= after <= MAX_SQL_INT:
        raise SmithersError(
            "INVALID_REQUEST", f"afterSeq must be an integer from -1 to {MAX_SQL_INT}"
        )
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= EVENTS_MAX:
        raise SmithersError("INVALID_REQUEST", f"limit must be an integer from 1 to {EVENTS_MAX}")
    return run_id, node_id, after, limit


__all__ = ["EVENTS_LIMIT", "EVENTS_MAX", "PREFIX", "ROUTES", "RestRequest", "RestRoute"]
