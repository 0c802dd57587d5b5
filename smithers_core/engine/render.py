"""Render: call the workflow's build function and turn its tree into a plan and a frame.

The plan keeps the tree shape the scheduler walks (sequence, parallel, loop) with each leaf
keyed ``(node_id, iteration)``. The frame is upstream's canonical JSON tree (D5): elements
``{kind, tag, props, children}`` with string props in sorted order, hashed with sha256.
Every render error is a typed ``SmithersError`` (``DUPLICATE_ID``, ``INVALID_NEEDS``,
``INVALID_APPROVAL``, ``NESTED_LOOP_UNSUPPORTED``, ``RENDER_FAILED``).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from smithers_core import jsonutil
from smithers_core.errors import SmithersError
from smithers_core.store.loops import LoopState
from smithers_core.workflow.context import Ctx
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.nodes import (
    Approval,
    Leaf,
    Loop,
    Node,
    Par,
    Seq,
    Task,
    Timer,
    WaitSignal,
)

Key = tuple[str, int]
T = TypeVar("T")


@dataclass(slots=True)
class PLeaf:
    leaf: Leaf
    key: Key
    ordinal: int
    loop_id: str | None
    path: tuple[tuple[int, int, bool], ...]  # (container serial, child index, is sequence)


@dataclass(slots=True)
class PSeq:
    children: list[PNode]


@dataclass(slots=True)
class PPar:
    children: list[PNode]
    max_concurrency: int | None


@dataclass(slots=True)
class PLoop:
    loop: Loop
    iteration: int
    done: bool
    child: PNode | None


PNode = PLeaf | PSeq | PPar | PLoop


@dataclass(slots=True)
class RenderPlan:
    root: PNode | None
    leaves: dict[Key, PLeaf]
    loops: dict[str, PLoop]
    frame: dict[str, Any]
    frame_json: str
    frame_hash: str
    mounted: list[str]
    task_index: list[dict[str, Any]]
    ids: dict[str, Key] = field(default_factory=dict)


_SIGNATURES: dict[Any, tuple[set[str], set[str], bool]] = {}


def _fn_params(fn: Callable[..., Any]) -> tuple[set[str], set[str], bool]:
    """(required names, optional names, accepts **kwargs) after the TaskContext parameter."""
    # Keyed by the code object: every render creates new lambdas, but they share their code
    # (and so their parameters); keying by the function would miss and grow without bound.
    code = getattr(fn, "__code__", None)
    key = (code, inspect.ismethod(fn)) if code is not None else None
    cached = _SIGNATURES.get(key) if key is not None else None
    if cached is not None:
        return cached
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        result: tuple[set[str], set[str], bool] = (set(), set(), True)
    else:
        positional = [
            p
            for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        rest = positional[1:]
        required = {p.name for p in rest if p.default is p.empty}
        optional = {p.name for p in rest if p.default is not p.empty}
        result = (required, optional, any(p.kind == p.VAR_KEYWORD for p in params))
    try:
        if key is not None:
            _SIGNATURES[key] = result
    except TypeError:
        pass
    return result


def _props(**values: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        else:
            out[k] = str(v)
    return dict(sorted(out.items()))


def _element(tag: str, props: dict[str, str], children: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "element", "tag": tag, "props": props, "children": children}


class _Renderer:
    def __init__(self, loops: Mapping[str, LoopState]) -> None:
        self.loop_states = loops
        self.leaves: dict[Key, PLeaf] = {}
        self.ids: dict[str, Key] = {}
        self.loops: dict[str, PLoop] = {}
        self.ordinal = 0
        self.serial = 0

    def visit(
        self,
        node: Node,
        iteration: int,
        loop_id: str | None,
        path: tuple[tuple[int, int, bool], ...],
    ) -> tuple[PNode | None, dict[str, Any] | None]:
        if isinstance(node, Seq | Par):
            self.serial += 1
            serial = self.serial
            is_seq = isinstance(node, Seq)
            kids: list[PNode] = []
            frames: list[dict[str, Any]] = []
            for index, child in enumerate(node.children):
                p, f = self.visit(child, iteration, loop_id, (*path, (serial, index, is_seq)))
                if p is not None and f is not None:
                    kids.append(p)
                    frames.append(f)
            if is_seq:
                return PSeq(kids), _element("smithers:sequence", {}, frames)
            assert isinstance(node, Par)
            props = _props(id=node.id, maxConcurrency=node.max_concurrency)
            return PPar(kids, node.max_concurrency), _element("smithers:parallel", props, frames)
        if isinstance(node, Loop):
            if loop_id is not None:
                raise SmithersError(
                    "NESTED_LOOP_UNSUPPORTED",
                    f"Loop {node.id!r} is inside loop {loop_id!r}; nested loops are not supported",
                    {"loopId": node.id, "parentLoopId": loop_id},
                )
            if node.id in self.loops or node.id in self.ids:
                raise SmithersError(
                    "DUPLICATE_ID", f"Duplicate node id {node.id!r}", {"nodeId": node.id}
                )
            state = self.loop_states.get(node.id) or LoopState()
            body = node.body(state.iteration) if callable(node.body) else node.body
            child_p: PNode | None = None
            child_f: list[dict[str, Any]] = []
            if body is not None:
                if not isinstance(body, Node):
                    raise SmithersError(
                        "INVALID_NODE", f"Loop {node.id!r} body returned {type(body).__name__}"
                    )
                self.serial += 1
                p, f = self.visit(body, state.iteration, node.id, (*path, (self.serial, 0, False)))
                child_p = p
                if f is not None:
                    child_f.append(f)
            ploop = PLoop(node, state.iteration, state.done, child_p)
            self.loops[node.id] = ploop
            props = _props(id=node.id, maxIterations=node.max_iterations, onMaxReached=node.on_max)
            return ploop, _element("smithers:ralph", props, child_f)
        if isinstance(node, Leaf):
            return self.leaf(node, iteration, loop_id, path)
        raise SmithersError("INVALID_NODE", f"Not a workflow node: {type(node).__name__}")

    def leaf(
        self,
        node: Leaf,
        iteration: int,
        loop_id: str | None,
        path: tuple[tuple[int, int, bool], ...],
    ) -> tuple[PNode, dict[str, Any]]:
        if node.id in self.ids or node.id in self.loops:
            raise SmithersError(
                "DUPLICATE_ID", f"Duplicate node id {node.id!r}", {"nodeId": node.id}
            )
        key = (node.id, iteration)
        self.ids[node.id] = key
        pleaf = PLeaf(node, key, self.ordinal, loop_id, path)
        self.ordinal += 1
        self.leaves[key] = pleaf
        if isinstance(node, Task):
            output = node.output.__name__ if node.output is not None else None
            props = _props(
                id=node.id,
                label=node.label,
                kind=node.task_kind,
                iteration=iteration,
                output=output,
            )
            return pleaf, _element("smithers:task", props, [])
        if isinstance(node, Approval):
            if node.mode in ("select", "rank") and not node.options:
                raise SmithersError(
                    "INVALID_APPROVAL",
                    f"Approval {node.id!r} in mode {node.mode!r} needs at least one option",
                    {"nodeId": node.id},
                )
            props = _props(
                id=node.id,
                label=node.label or node.title,
                needsApproval="true",
                approvalMode=node.wire_mode,
                iteration=iteration,
            )
            return pleaf, _element("smithers:task", props, [])
        if isinstance(node, WaitSignal):
            props = _props(
                id=node.id,
                event=node.signal,
                correlationId=node.correlation_id,
                iteration=iteration,
            )
            return pleaf, _element("smithers:wait-for-event", props, [])
        if isinstance(node, Timer):
            props = _props(
                id=node.id,
                duration=node.duration if isinstance(node.duration, str) else node.duration_ms,
                until=node.until if isinstance(node.until, str) else node.until_ms,
                iteration=iteration,
            )
            return pleaf, _element("smithers:timer", props, [])
        raise SmithersError("INVALID_NODE", f"Unknown leaf type {type(node).__name__}")


def _produces_output(leaf: Leaf) -> bool:
    if isinstance(leaf, Task | WaitSignal):
        return True
    return isinstance(leaf, Approval) and leaf.mode != "gate"


def _structurally_before(a: PLeaf, b: PLeaf) -> bool:
    """True when ``b`` cannot start before ``a`` is terminal (a sequence orders them)."""
    for (sa, ia, seq_a), (sb, ib, _) in zip(a.path, b.path, strict=False):
        if sa != sb:
            return False
        if ia != ib:
            return seq_a and ia < ib
    return False


def _check_needs(leaves: dict[Key, PLeaf], ids: dict[str, Key]) -> None:
    edges: dict[Key, list[Key]] = {}
    for key, pleaf in leaves.items():
        leaf = pleaf.leaf
        targets: list[Key] = []
        for param, target in leaf.needs.items():
            tkey = ids.get(target)
            if tkey is None:
                raise SmithersError(
                    "INVALID_NEEDS",
                    f"Node {leaf.id!r} needs {target!r} (as {param!r}), which is not mounted",
                    {"nodeId": leaf.id, "target": target},
                )
            if not _produces_output(leaves[tkey].leaf):
                raise SmithersError(
                    "INVALID_NEEDS",
                    f"Node {leaf.id!r} needs {target!r}, which produces no output",
                    {"nodeId": leaf.id, "target": target},
                )
            targets.append(tkey)
        for target in leaf.after:
            tkey = ids.get(target)
            if tkey is None:
                raise SmithersError(
                    "INVALID_NEEDS",
                    f"Node {leaf.id!r} runs after {target!r}, which is not mounted",
                    {"nodeId": leaf.id, "target": target},
                )
            targets.append(tkey)
        if targets:
            edges[key] = targets
        if isinstance(leaf, Task) and leaf.fn is not None:
            required, optional, var_kw = _fn_params(leaf.fn)
            missing = required - set(leaf.needs)
            extra = set(leaf.needs) - required - optional
            if missing or (extra and not var_kw):
                raise SmithersError(
                    "INVALID_NEEDS",
                    f"Task {leaf.id!r}: every parameter after the TaskContext must be named in "
                    f"needs (missing: {sorted(missing)}, unknown: {sorted(extra)})",
                    {"nodeId": leaf.id},
                )
    if not edges:
        return
    # A cycle needs at least one explicit edge; structural order supplies the others.
    ordered = list(leaves.values())

    def waits_for(k: Key) -> list[Key]:
        out = list(edges.get(k, ()))
        me = leaves[k]
        out.extend(o.key for o in ordered if o.key != k and _structurally_before(o, me))
        return out

    for start, target_keys in edges.items():
        for target_key in target_keys:
            # does ``target_key`` (transitively) wait for ``start``?
            seen: set[Key] = set()
            stack = [target_key]
            steps = 0
            while stack:
                steps += 1
                if steps > 200_000:
                    break
                cur = stack.pop()
                if cur == start:
                    raise SmithersError(
                        "INVALID_NEEDS",
                        f"Node {start[0]!r} needs {target_key[0]!r}, which cannot finish before "
                        "it (a cycle, or a target later in the same sequence)",
                        {"nodeId": start[0], "target": target_key[0]},
                    )
                if cur in seen:
                    continue
                seen.add(cur)
                stack.extend(waits_for(cur))


def call_render_code(fn: Callable[[Ctx], T], ctx: Ctx, what: str) -> T:
    """Run user code that executes at render time (``build``, a loop's ``until``, an
    auto-approve ``condition``): any exception fails the run with ``RENDER_FAILED`` (D4)."""
    try:
        return fn(ctx)
    except SmithersError as exc:
        if exc.code == "MISSING_OUTPUT":
            raise SmithersError("RENDER_FAILED", exc.message, exc.details) from exc
        raise
    except Exception as exc:
        raise SmithersError(
            "RENDER_FAILED",
            f"{what} failed: {type(exc).__name__}: {exc}",
            {"error": type(exc).__name__},
        ) from exc


def render(
    workflow: Workflow,
    ctx: Ctx,
    loops: Mapping[str, LoopState],
) -> RenderPlan:
    """Render the workflow once. Raises ``SmithersError`` with a render error code."""
    tree = call_render_code(workflow.build, ctx, f"Render of workflow {workflow.name!r}")
    renderer = _Renderer(loops)
    children: list[dict[str, Any]] = []
    root: PNode | None = None
    if tree is not None:
        if not isinstance(tree, Node):
            raise SmithersError(
                "RENDER_FAILED", f"build() returned {type(tree).__name__}, not a workflow node"
            )
        root, frame_child = renderer.visit(tree, 0, None, ())
        if frame_child is not None:
            children.append(frame_child)
    _check_needs(renderer.leaves, renderer.ids)
    frame = _element("smithers:workflow", _props(name=workflow.name), children)
    text = jsonutil.canonical(frame)
    ordered = sorted(renderer.leaves.values(), key=lambda p: p.ordinal)
    return RenderPlan(
        root=root,
        leaves=renderer.leaves,
        loops=renderer.loops,
        frame=frame,
        frame_json=text,
        frame_hash=hashlib.sha256(text.encode()).hexdigest(),
        mounted=[f"{p.key[0]}::{p.key[1]}" for p in ordered],
        task_index=[
            {"nodeId": p.key[0], "ordinal": p.ordinal, "iteration": p.key[1]} for p in ordered
        ],
        ids=renderer.ids,
    )
