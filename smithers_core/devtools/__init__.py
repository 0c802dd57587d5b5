"""DevTools trees: snapshots built from stored frames, deltas between them (issue 19).

Pure functions only (no I/O): :mod:`.tree` turns a frame's ``xml_json`` plus the run's node
rows into the DevTools node tree, :mod:`.deltas` diffs two trees into ops, applies ops and
decides when a stream re-baselines with a fresh snapshot.
"""

from __future__ import annotations

from smithers_core.devtools.deltas import (
    MAX_DELTAS,
    InvalidDelta,
    StreamState,
    apply_ops,
    delta_event,
    diff_trees,
    next_event,
    snapshot_event,
)
from smithers_core.devtools.tree import (
    EMPTY_ROOT,
    TreeNode,
    build_tree,
    node_id_of,
    task_nodes,
)

__all__ = [
    "EMPTY_ROOT",
    "MAX_DELTAS",
    "InvalidDelta",
    "StreamState",
    "TreeNode",
    "apply_ops",
    "build_tree",
    "delta_event",
    "diff_trees",
    "next_event",
    "node_id_of",
    "snapshot_event",
    "task_nodes",
]
