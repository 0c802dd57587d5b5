"""The DevTools node tree of one frame (reference gateway 5.4, engine 6.1).

A frame's ``xml_json`` is ``{kind:"element", tag, props, children}`` (or ``{kind:"text",
text}``). Each element becomes a node ``{id, type, name, props, children, depth}``, and the
leaves that have node rows (``smithers:task``, ``smithers:wait-for-event``, ``smithers:timer``
with an ``id`` prop) also get ``task``: ``{nodeId, kind, label?, iteration, state,
lastAttempt, attempt, output?}`` read from ``_smithers_nodes``.

Node ids are stable across frames: a node's id is a 53-bit FNV-1a hash (a safe JavaScript
integer) of its *path*, the chain of ``tag#id`` (or bare ``tag`` for elements without an
``id`` prop) from the root, with ``~n`` appended to the n-th repeat of a key among siblings.
So a task keeps its id while its loop iterates, and two runs of one workflow share ids.
Id 0 is the empty root of a run without frames (``name: "(empty)"``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

TreeNode = dict[str, Any]
StateKey = tuple[str, int]

#: frame tag -> (DevTools ``type``, ``name``)
TAGS: dict[str, tuple[str, str]] = {
    "smithers:workflow": ("workflow", "Workflow"),
    "smithers:sequence": ("sequence", "Sequence"),
    "smithers:parallel": ("parallel", "Parallel"),
    "smithers:ralph": ("loop", "Loop"),
    "smithers:branch": ("branch", "Branch"),
    "smithers:task": ("task", "Task"),
    "smithers:wait-for-event": ("wait-for-event", "WaitForEvent"),
    "smithers:timer": ("timer", "Timer"),
    "smithers:subflow": ("subflow", "Subflow"),
    "smithers:saga": ("saga", "Saga"),
    "smithers:try-catch-finally": ("try-catch", "TryCatchFinally"),
    "smithers:worktree": ("worktree", "Worktree"),
    "smithers:merge-queue": ("merge-queue", "MergeQueue"),
}
#: tags whose elements with an ``id`` prop have node rows
TASK_TAGS = frozenset({"smithers:task", "smithers:wait-for-event", "smithers:timer"})

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1
_MASK53 = (1 << 53) - 1

EMPTY_ROOT: TreeNode = {
    "id": 0,
    "type": "workflow",
    "name": "(empty)",
    "props": {},
    "children": [],
    "depth": 0,
}


def node_id_of(path: str) -> int:
    """The node id of a tree path: FNV-1a 64 of its UTF-8 bytes, cut to 53 bits, never 0."""
    h = _FNV_OFFSET
    for byte in path.encode("utf-8", "surrogatepass"):
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return (h & _MASK53) or 1


def _type_and_name(tag: str, props: Mapping[str, str]) -> tuple[str, str]:
    if tag == "smithers:task" and props.get("needsApproval") == "true":
        return "approval", "Approval"
    known = TAGS.get(tag)
    if known is not None:
        return known
    short = tag.split(":", 1)[-1] or tag
    return short, short


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _task(
    props: Mapping[str, str], type_: str, states: Mapping[StateKey, Mapping[str, Any]]
) -> TreeNode:
    node_id = props["id"]
    iteration = _int(props.get("iteration"))
    row = states.get((node_id, iteration))
    last = row.get("lastAttempt") if row is not None else None
    task: TreeNode = {
        "nodeId": node_id,
        "kind": "approval" if type_ == "approval" else props.get("kind", type_),
        "iteration": iteration,
        "state": str(row.get("state")) if row is not None else "pending",
        "lastAttempt": last,
        "attempt": last,
    }
    for key in ("label", "agent"):
        if key in props:
            task[key] = props[key]
    output = props.get("output") or props.get("outputTableName")
    if output is not None:
        task["output"] = output
    return task


class _Builder:
    def __init__(self, states: Mapping[StateKey, Mapping[str, Any]]) -> None:
        self.states = states
        self.seen: set[int] = set()

    def _id(self, path: str) -> int:
        node_id = node_id_of(path)
        salt = 0
        while node_id in self.seen:  # a hash collision inside one tree: deterministic re-hash
            salt += 1
            node_id = node_id_of(f"{path}!{salt}")
        self.seen.add(node_id)
        return node_id

    def node(self, element: Mapping[str, Any], path: str, depth: int) -> TreeNode:
        if element.get("kind") == "text":
            text = element.get("text")
            return {
                "id": self._id(path),
                "type": "text",
                "name": "#text",
                "props": {"text": text if isinstance(text, str) else str(text)},
                "children": [],
                "depth": depth,
            }
        tag = str(element.get("tag", ""))
        raw = element.get("props")
        props = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
        type_, name = _type_and_name(tag, props)
        out: TreeNode = {
            "id": self._id(path),
            "type": type_,
            "name": name,
            "props": props,
            "children": [],
            "depth": depth,
        }
        if tag in TASK_TAGS and "id" in props:
            out["task"] = _task(props, type_, self.states)
        kids = element.get("children")
        if isinstance(kids, list):
            repeats: dict[str, int] = {}
            for child in kids:
                if not isinstance(child, Mapping):
                    continue
                key = _key(child)
                n = repeats.get(key, 0)
                repeats[key] = n + 1
                child_path = f"{path}/{key}" if n == 0 else f"{path}/{key}~{n}"
                out["children"].append(self.node(child, child_path, depth + 1))
        return out


def _key(element: Mapping[str, Any]) -> str:
    if element.get("kind") == "text":
        return "#text"
    tag = str(element.get("tag", ""))
    props = element.get("props")
    if isinstance(props, Mapping) and "id" in props:
        return f"{tag}#{props['id']}"
    return tag


def build_tree(
    frame: Mapping[str, Any] | None,
    states: Mapping[StateKey, Mapping[str, Any]] | None = None,
) -> TreeNode:
    """The DevTools tree of ``frame`` (a parsed ``xml_json``; None for a run without frames)
    with task info from ``states`` (``(nodeId, iteration)`` -> a ``listNodeStates`` row)."""
    if frame is None:
        return {**EMPTY_ROOT, "props": {}, "children": []}
    return _Builder(states or {}).node(frame, _key(frame), 0)


def states_by_key(rows: list[Mapping[str, Any]]) -> dict[StateKey, Mapping[str, Any]]:
    """``listNodeStates`` rows keyed by ``(nodeId, iteration)``."""
    return {(str(r["nodeId"]), _int(r.get("iteration"))): r for r in rows}


def walk(root: TreeNode) -> Iterator[TreeNode]:
    """Every node of the tree, depth first, parents before children."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.get("children", [])))


def task_nodes(root: TreeNode) -> list[TreeNode]:
    """The nodes of the tree that carry ``task`` info, in tree order."""
    return [n for n in walk(root) if "task" in n]


__all__ = [
    "EMPTY_ROOT",
    "TAGS",
    "TASK_TAGS",
    "TreeNode",
    "build_tree",
    "node_id_of",
    "states_by_key",
    "task_nodes",
    "walk",
]
