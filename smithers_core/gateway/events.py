"""Engine events -> gateway socket events (reference 4.5, D10).

Events upstream maps keep upstream's names and payloads; every other engine event goes out as
its type split into a lower-cased first word and the rest in snake_case (``RunStarted`` ->
``run.started``, ``TaskHeartbeatTimeout`` -> ``task.heartbeat_timeout``) with the engine event
as payload.
"""

from __future__ import annotations

import re
from typing import Any

from smithers_core import jsonutil
from smithers_core.store.db import usage_item

TERMINAL_EVENTS = {"RunFinished": "finished", "RunFailed": "failed", "RunCancelled": "cancelled"}

_NODE_STATES = {
    "NodeStarted": ("node.started", "in-progress"),
    "NodeFinished": ("node.finished", "finished"),
    "NodeSkipped": ("node.skipped", "skipped"),
    "NodeCancelled": ("node.cancelled", "cancelled"),
}
_WORD = re.compile(r"[A-Z][a-z0-9]*|[a-z0-9]+")
_NAMES: dict[str, str] = {}


def generic_name(engine_type: str) -> str:
    """``SignalReceived`` -> ``signal.received``; ``TaskHeartbeatTimeout`` ->
    ``task.heartbeat_timeout``."""
    name = _NAMES.get(engine_type)
    if name is None:
        words = [w.lower() for w in _WORD.findall(engine_type)] or [engine_type.lower()]
        name = words[0] + ("." + "_".join(words[1:]) if len(words) > 1 else "")
        _NAMES[engine_type] = name
    return name


def map_event(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The gateway event name and payload for one engine event."""
    kind = str(event.get("type", ""))
    run_id = event.get("runId")
    node_id = event.get("nodeId")
    iteration = event.get("iteration", 0)
    if kind in _NODE_STATES:
        name, state = _NODE_STATES[kind]
        return name, {"runId": run_id, "nodeId": node_id, "state": state}
    if kind == "NodePending":
        return "node.pending", {
            "runId": run_id,
            "nodeId": node_id,
            "state": "pending",
            "iteration": iteration,
        }
    if kind == "NodeFailed":
        return "node.failed", {
            "runId": run_id,
            "nodeId": node_id,
            "state": "failed",
            "error": event.get("error"),
        }
    if kind == "NodeRetrying":
        return "node.retrying", {
            "runId": run_id,
            "nodeId": node_id,
            "state": "in-progress",
            "attempt": event.get("attempt"),
        }
    if kind in ("NodeWaitingApproval", "NodeWaitingTimer"):
        name = "node.waiting_approval" if kind == "NodeWaitingApproval" else "node.waiting_timer"
        return name, {
            "runId": run_id,
            "nodeId": node_id,
            "state": "waiting",
            "iteration": iteration,
        }
    if kind == "NodeOutput":
        return "task.output", {
            "runId": run_id,
            "nodeId": node_id,
            "output": event.get("text", ""),
            "stream": event.get("stream", "stdout"),
        }
    if kind == "TaskHeartbeat":
        return "task.heartbeat", {
            "runId": run_id,
            "nodeId": node_id,
            "iteration": iteration,
            "attempt": event.get("attempt"),
        }
    if kind == "ApprovalRequested":
        return "approval.requested", {"runId": run_id, "nodeId": node_id, "iteration": iteration}
    if kind in ("ApprovalGranted", "ApprovalDenied"):
        return "approval.decided", {
            "runId": run_id,
            "nodeId": node_id,
            "iteration": iteration,
            "approved": kind == "ApprovalGranted",
        }
    if kind == "ApprovalAutoApproved":
        return "approval.auto_approved", {
            "runId": run_id,
            "nodeId": node_id,
            "iteration": iteration,
        }
    if kind == "TokenUsageReported":
        return "token.usage", {"runId": run_id, **usage_item(event, 0)}
    if kind == "TimeTravelJumped":  # upstream's name and payload (reference engine 7.3)
        return "run.time_travel_jumped", {
            "runId": run_id,
            "fromFrameNo": event.get("fromFrameNo"),
            "toFrameNo": event.get("toFrameNo"),
            "timestampMs": event.get("timestampMs"),
            "caller": event.get("caller"),
        }
    if kind in TERMINAL_EVENTS:
        payload: dict[str, Any] = {"runId": run_id, "status": TERMINAL_EVENTS[kind]}
        if kind == "RunFailed":
            payload["error"] = event.get("error")
        return "run.completed", payload
    return generic_name(kind), event


def map_event_json(event_json: str) -> tuple[str, str]:
    """:func:`map_event` on a stored event's JSON text: the name and the payload's JSON.

    An unmapped event's payload is the engine event itself, so its stored text is reused
    as is (encoded once, when it was committed).
    """
    event = jsonutil.loads(event_json)
    if not isinstance(event, dict):
        event = {}
    name, payload = map_event(event)
    return name, (event_json if payload is event else jsonutil.dumps(payload))


__all__ = ["TERMINAL_EVENTS", "generic_name", "map_event", "map_event_json"]
