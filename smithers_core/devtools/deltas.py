"""Deltas between DevTools trees, applying them, and a stream's re-baselining rule.

Ops, applied in order to the client's tree:

- ``{op:"addNode", parentId, index, node}``: insert the whole subtree ``node`` as child
  ``index`` of ``parentId``;
- ``{op:"removeNode", id}``: remove the node and its subtree;
- ``{op:"updateProps", id, props}``: replace the node's props;
- ``{op:"updateTask", id, task}``: replace the node's task info (``null`` removes it);
- ``{op:"replaceRoot", node}``: replace the whole tree.

A node is "the same" in both trees when its id, type, name and depth agree; otherwise it is
removed and added again. A child that changed position is moved by a remove and an add.

Stream events (``devtools.event``'s ``event``): ``{version:1, kind:"snapshot", frameNo, seq,
root}`` and ``{version:1, kind:"delta", baseFrameNo, frameNo, seq, ops}``. A stream sends a
fresh snapshot instead of a delta after :data:`MAX_DELTAS` deltas since its last snapshot,
when the delta's JSON would be larger than the snapshot's, when the frame number goes
backwards, and when it is told to (a ``TimeTravelJumped`` event).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from smithers_core import jsonutil
from smithers_core.devtools.tree import TreeNode

MAX_DELTAS = 50
Op = dict[str, Any]


class InvalidDelta(ValueError):
    """An op that does not fit the tree it is applied to."""


def _same(a: TreeNode, b: TreeNode) -> bool:
    return bool(
        a["id"] == b["id"]
        and a["type"] == b["type"]
        and a["name"] == b["name"]
        and a["depth"] == b["depth"]
    )


def _diff_node(old: TreeNode, new: TreeNode, ops: list[Op]) -> None:
    node_id = new["id"]
    if old["props"] != new["props"]:
        ops.append({"op": "updateProps", "id": node_id, "props": copy.deepcopy(new["props"])})
    if old.get("task") != new.get("task"):
        task = new.get("task")
        ops.append(
            {"op": "updateTask", "id": node_id, "task": copy.deepcopy(task) if task else None}
        )
    new_kids: list[TreeNode] = new["children"]
    new_by_id = {k["id"]: k for k in new_kids}
    current: list[TreeNode] = []
    for kid in old["children"]:
        twin = new_by_id.get(kid["id"])
        if twin is None or not _same(kid, twin):
            ops.append({"op": "removeNode", "id": kid["id"]})
        else:
            current.append(kid)
    for index, kid in enumerate(new_kids):
        if index < len(current) and current[index]["id"] == kid["id"]:
            _diff_node(current[index], kid, ops)
            continue
        at = next((i for i, c in enumerate(current) if c["id"] == kid["id"]), None)
        if at is not None:  # kept, but out of place: move it
            ops.append({"op": "removeNode", "id": kid["id"]})
            del current[at]
        ops.append(
            {"op": "addNode", "parentId": node_id, "index": index, "node": copy.deepcopy(kid)}
        )
        current.insert(index, kid)


def diff_trees(old: TreeNode, new: TreeNode) -> list[Op]:
    """The ops that turn ``old`` into ``new`` (empty when they are equal)."""
    if not _same(old, new):
        return [{"op": "replaceRoot", "node": copy.deepcopy(new)}]
    ops: list[Op] = []
    _diff_node(old, new, ops)
    return ops


class _Index:
    """Node and parent by id over a tree being edited."""

    def __init__(self, root: TreeNode) -> None:
        self.nodes: dict[Any, TreeNode] = {}
        self.parent: dict[Any, TreeNode | None] = {}
        self.add(root, None)

    def add(self, node: TreeNode, parent: TreeNode | None) -> None:
        stack: list[tuple[TreeNode, TreeNode | None]] = [(node, parent)]
        while stack:
            n, p = stack.pop()
            if n["id"] in self.nodes:
                raise InvalidDelta(f"duplicate node id {n['id']!r}")
            self.nodes[n["id"]] = n
            self.parent[n["id"]] = p
            stack.extend((c, n) for c in n.get("children", []))

    def drop(self, node: TreeNode) -> None:
        stack = [node]
        while stack:
            n = stack.pop()
            self.nodes.pop(n["id"], None)
            self.parent.pop(n["id"], None)
            stack.extend(n.get("children", []))

    def get(self, node_id: Any) -> TreeNode:
        node = self.nodes.get(node_id)
        if node is None:
            raise InvalidDelta(f"unknown node id {node_id!r}")
        return node


def apply_ops(root: TreeNode, ops: list[Op]) -> TreeNode:
    """A new tree: ``root`` (left unchanged) with ``ops`` applied; ``InvalidDelta`` when an
    op does not fit."""
    tree = copy.deepcopy(root)
    index = _Index(tree)
    for op in ops:
        kind = op.get("op")
        if kind == "replaceRoot":
            tree = copy.deepcopy(op["node"])
            index = _Index(tree)
        elif kind == "addNode":
            parent = index.get(op["parentId"])
            kids: list[TreeNode] = parent["children"]
            at = op["index"]
            if not isinstance(at, int) or not 0 <= at <= len(kids):
                raise InvalidDelta(f"index {at!r} out of range")
            node = copy.deepcopy(op["node"])
            index.add(node, parent)
            kids.insert(at, node)
        elif kind == "removeNode":
            node = index.get(op["id"])
            parent_node = index.parent.get(op["id"])
            if parent_node is None:
                raise InvalidDelta("the root cannot be removed (use replaceRoot)")
            parent_node["children"] = [c for c in parent_node["children"] if c is not node]
            index.drop(node)
        elif kind == "updateProps":
            index.get(op["id"])["props"] = copy.deepcopy(op["props"])
        elif kind == "updateTask":
            node = index.get(op["id"])
            if op.get("task") is None:
                node.pop("task", None)
            else:
                node["task"] = copy.deepcopy(op["task"])
        else:
            raise InvalidDelta(f"unknown op {kind!r}")
    return tree


def snapshot_event(root: TreeNode, frame_no: int, seq: int) -> dict[str, Any]:
    return {"version": 1, "kind": "snapshot", "frameNo": frame_no, "seq": seq, "root": root}


def delta_event(base_frame_no: int, frame_no: int, seq: int, ops: list[Op]) -> dict[str, Any]:
    return {
        "version": 1,
        "kind": "delta",
        "baseFrameNo": base_frame_no,
        "frameNo": frame_no,
        "seq": seq,
        "ops": ops,
    }


@dataclass
class StreamState:
    """What a stream last sent: the client's tree, its frame and the deltas since the last
    snapshot (``root`` None before the first event)."""

    root: TreeNode | None = None
    frame_no: int = 0
    deltas: int = 0


def next_event(
    state: StreamState,
    root: TreeNode,
    frame_no: int,
    seq: int,
    *,
    rebaseline: bool = False,
    max_deltas: int = MAX_DELTAS,
) -> dict[str, Any] | None:
    """The event that brings a client at ``state`` to ``root`` at ``frame_no``, and ``state``
    updated to match; None when nothing changed (same frame, same tree)."""
    prev = state.root
    snapshot = prev is None or rebaseline or frame_no < state.frame_no or state.deltas >= max_deltas
    event: dict[str, Any] | None = None
    if not snapshot and prev is not None:
        ops = diff_trees(prev, root)
        if not ops and frame_no == state.frame_no:
            return None
        event = delta_event(state.frame_no, frame_no, seq, ops)
        if len(jsonutil.dumps(ops)) > len(jsonutil.dumps(root)):
            event = None  # a snapshot is smaller
    if event is None:
        event = snapshot_event(root, frame_no, seq)
        state.deltas = 0
    else:
        state.deltas += 1
    state.root = root
    state.frame_no = frame_no
    return event


__all__ = [
    "MAX_DELTAS",
    "InvalidDelta",
    "Op",
    "StreamState",
    "apply_ops",
    "delta_event",
    "diff_trees",
    "next_event",
    "snapshot_event",
]
