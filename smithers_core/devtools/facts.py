"""Plain facts about runs: ``whatHappened``'s summary and ``runs.diff`` (pure functions over
what :func:`smithers_core.store.frames.run_facts` reads).

The summary is built only from stored facts (run status and error, node states, attempts and
their errors, approval decisions, signals), never by an agent, so the same run always reads
the same way.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from smithers_core import jsonutil
from smithers_core.devtools.tree import TreeNode, task_nodes

Key = tuple[str, int]
MAX_ERROR = 300


def _iso(ms: Any) -> str | None:
    if not isinstance(ms, int):
        return None
    when = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _error_text(error_json: Any) -> str | None:
    if not isinstance(error_json, str) or not error_json:
        return None
    try:
        error = jsonutil.loads(error_json)
    except ValueError:
        return error_json[:MAX_ERROR]
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        text = ": ".join(str(p) for p in (code, message) if p) or jsonutil.dumps(error)
    else:
        text = str(error)
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _node_lines(facts: Mapping[str, Any], key: Key, row: Mapping[str, Any] | None) -> list[str]:
    node_id, iteration = key
    attempts = [
        a for a in facts["attempts"] if a["node_id"] == node_id and int(a["iteration"]) == iteration
    ]
    attempts.sort(key=lambda a: int(a["attempt"]))
    state = str(row["state"]) if row is not None else "not started"
    head = f"Node {node_id} (iteration {iteration}) is {state}"
    if attempts:
        head += f" after {_plural(len(attempts), 'attempt')}"
    lines = [head + "."]
    for a in attempts:
        error = _error_text(a.get("error_json"))
        if a["state"] != "finished" or error:
            line = f"  Attempt {a['attempt']} {a['state']}"
            lines.append(line + (f": {error}" if error else "") + ".")
    for ap in facts["approvals"]:
        if ap["node_id"] == node_id and int(ap["iteration"]) == iteration:
            lines.append("  " + _approval_text(ap))
    for sig in facts["signals"]:
        if sig.get("consumed_node_id") == node_id and sig.get("consumed_iteration") == iteration:
            lines.append("  " + _signal_text(sig))
    return lines


def _approval_text(ap: Mapping[str, Any]) -> str:
    status = str(ap["status"])
    who = ap.get("decided_by")
    if ap.get("auto_approved"):
        text = f"Approval {ap['node_id']} was approved automatically"
    elif status in ("requested", "pending"):
        text = f"Approval {ap['node_id']} is waiting for a decision"
    else:
        text = f"Approval {ap['node_id']} was {status}" + (f" by {who}" if who else "")
    note = ap.get("note")
    return text + (f' ("{note}")' if note else "") + "."


def _signal_text(sig: Mapping[str, Any]) -> str:
    text = f'Signal "{sig["signal_name"]}"'
    if sig.get("correlation_id"):
        text += f" (correlation {sig['correlation_id']})"
    when = _iso(sig.get("received_at_ms"))
    text += " received" + (f" at {when}" if when else "")
    if sig.get("consumed_node_id"):
        text += f", consumed by {sig['consumed_node_id']}"
    elif sig.get("rejected_at_ms"):
        text += ", rejected: " + (_error_text(sig.get("rejection_json")) or "no reason")
    else:
        text += ", not consumed yet"
    return text + "."


def node_keys(facts: Mapping[str, Any], node_id: str) -> list[Key]:
    """The ``(nodeId, iteration)`` keys the run has of ``node_id`` (rows and attempts)."""
    keys = {(str(r["nodeId"]), int(r["iteration"])) for r in facts["nodes"]}
    keys |= {(str(a["node_id"]), int(a["iteration"])) for a in facts["attempts"]}
    return sorted(k for k in keys if k[0] == node_id)


def summarize(
    run_id: str, facts: Mapping[str, Any], node_id: str | None, iteration: int | None
) -> str:
    """``whatHappened``'s plain-text summary of the run, or of one node (every iteration of it
    when ``iteration`` is None)."""
    run = facts["run"]
    rows = {(str(r["nodeId"]), int(r["iteration"])): r for r in facts["nodes"]}
    if node_id is not None:
        keys = [k for k in node_keys(facts, node_id) if iteration is None or k[1] == iteration]
        lines = [f"Run {run_id} is {run['status']}."]
        for key in keys:
            lines.extend(_node_lines(facts, key, rows.get(key)))
        return "\n".join(lines)
    lines = [f"Run {run_id} (workflow {run['workflow_name']}) is {run['status']}."]
    times = [
        f"{label} {when}"
        for label, when in (
            ("created", _iso(run.get("created_at_ms"))),
            ("started", _iso(run.get("started_at_ms"))),
            ("finished", _iso(run.get("finished_at_ms"))),
        )
        if when is not None
    ]
    if times:
        lines.append("Timeline: " + ", ".join(times) + ".")
    counts: dict[str, int] = {}
    for r in facts["nodes"]:
        counts[str(r["state"])] = counts.get(str(r["state"]), 0) + 1
    if counts:
        parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        lines.append(f"Nodes: {parts}.")
    else:
        lines.append("No node has been scheduled.")
    for key in sorted(rows, key=lambda k: (int(rows[k]["updatedAtMs"] or 0), k)):
        lines.extend(_node_lines(facts, key, rows[key]))
    for sig in facts["signals"]:
        if not sig.get("consumed_node_id"):
            lines.append(_signal_text(sig))
    error = _error_text(run.get("error_json"))
    if error:
        lines.append(f"Run error: {error}.")
    return "\n".join(lines)


def _views(facts: Mapping[str, Any], tree: TreeNode) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for node in task_nodes(tree):
        task = node["task"]
        out[(str(task["nodeId"]), int(task["iteration"]))] = {"state": task["state"]}
    for r in facts["nodes"]:
        out[(str(r["nodeId"]), int(r["iteration"]))] = {"state": r["state"]}
    for node_id, iteration, payload in facts["outputs"]:
        view = out.setdefault((node_id, iteration), {"state": None})
        view["output"] = jsonutil.loads(payload)
    return out


def runs_diff(
    left_id: str,
    right_id: str,
    left: Mapping[str, Any],
    right: Mapping[str, Any],
    left_tree: TreeNode,
    right_tree: TreeNode,
    left_frame: int,
    right_frame: int,
) -> dict[str, Any]:
    """``runs.diff``: per ``(nodeId, iteration)``, the state and output of each run's latest
    snapshot and whether it was ``added`` (right only), ``removed`` (left only), ``changed``
    or is ``unchanged``."""
    lv, rv = _views(left, left_tree), _views(right, right_tree)
    nodes: list[dict[str, Any]] = []
    summary = {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
    for key in sorted(set(lv) | set(rv)):
        a, b = lv.get(key), rv.get(key)
        change = (
            "added"
            if a is None
            else "removed"
            if b is None
            else "unchanged"
            if a == b
            else "changed"
        )
        summary[change] += 1
        nodes.append(
            {"nodeId": key[0], "iteration": key[1], "change": change, "left": a, "right": b}
        )

    def side(run_id: str, facts: Mapping[str, Any], frame_no: int) -> dict[str, Any]:
        run = facts["run"]
        return {
            "runId": run_id,
            "workflowName": run["workflow_name"],
            "status": run["status"],
            "frameNo": frame_no,
        }

    return {
        "leftRunId": left_id,
        "rightRunId": right_id,
        "left": side(left_id, left, left_frame),
        "right": side(right_id, right, right_frame),
        "sameStructure": _shape(left_tree) == _shape(right_tree),
        "nodes": nodes,
        "summary": summary,
    }


def _shape(tree: TreeNode) -> Any:
    return (tree["id"], tree["type"], [_shape(c) for c in tree["children"]])


__all__ = ["node_keys", "runs_diff", "summarize"]
