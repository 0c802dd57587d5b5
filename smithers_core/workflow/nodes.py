"""The tree a workflow's render function returns: Seq, Par, Loop and the leaves.

Leaves (Task, Approval, WaitSignal, Timer) carry an ``id`` that must be unique within a
render and stable across renders. ``None`` children are dropped, so ordinary Python ``if``
expressions mount or unmount parts of the tree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from smithers_core.errors import SmithersError

ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

Backoff = Literal["exponential", "fixed", "linear"]
ApprovalMode = Literal["gate", "approve", "select", "rank"]
OnDeny = Literal["fail", "continue", "skip"]
OnTimeout = Literal["fail", "skip"]
OnMax = Literal["return-last", "fail"]


def check_id(kind: str, node_id: str) -> str:
    if not isinstance(node_id, str) or not ID_PATTERN.match(node_id):
        raise SmithersError(
            "INVALID_ID",
            f"{kind} id {node_id!r} must match ^[A-Za-z0-9_.-]{{1,128}}$",
            {"id": node_id if isinstance(node_id, str) else repr(node_id)},
        )
    return node_id


def _children(items: Iterable[Node | Sequence[Node | None] | None]) -> tuple[Node, ...]:
    out: list[Node] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, list | tuple):
            out.extend(_children(item))
            continue
        if not isinstance(item, Node):
            raise SmithersError(
                "INVALID_NODE", f"Expected a workflow node, got {type(item).__name__}"
            )
        out.append(item)
    return tuple(out)


class Node:
    """Base class of every tree node."""

    __slots__ = ()


class Seq(Node):
    """Children run one after another: a child starts once every earlier one is terminal."""

    __slots__ = ("children",)

    def __init__(self, *children: Node | Sequence[Node | None] | None) -> None:
        self.children = _children(children)


class Par(Node):
    """Children run concurrently, at most ``max_concurrency`` at a time when given."""

    __slots__ = ("children", "id", "max_concurrency")

    def __init__(
        self,
        *children: Node | Sequence[Node | None] | None,
        max_concurrency: int | None = None,
        id: str | None = None,
    ) -> None:
        self.children = _children(children)
        if max_concurrency is not None and max_concurrency < 1:
            raise SmithersError("INVALID_NODE", "Par max_concurrency must be >= 1")
        self.max_concurrency = max_concurrency
        self.id = check_id("Par", id) if id is not None else None


class Loop(Node):
    """Repeat ``body`` (a node, or ``body(i) -> node``) until ``until`` is true (D4)."""

    __slots__ = ("body", "id", "max_iterations", "on_max", "until")

    def __init__(
        self,
        id: str,
        body: Node | Callable[[int], Node | None],
        *,
        until: bool | Callable[[Any], bool] = False,
        max_iterations: int = 5,
        on_max: OnMax = "return-last",
    ) -> None:
        self.id = check_id("Loop", id)
        self.body = body
        self.until = until
        if max_iterations < 1:
            raise SmithersError("INVALID_NODE", "Loop max_iterations must be >= 1")
        self.max_iterations = max_iterations
        if on_max not in ("return-last", "fail"):
            raise SmithersError("INVALID_NODE", "Loop on_max must be return-last or fail")
        self.on_max = on_max


class Leaf(Node):
    """A schedulable node keyed ``(id, iteration)``."""

    __slots__ = ("after", "continue_on_fail", "id", "label", "needs")
    kind = "leaf"

    def __init__(
        self,
        id: str,
        *,
        needs: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
        continue_on_fail: bool = False,
        label: str | None = None,
    ) -> None:
        self.id = check_id(type(self).__name__, id)
        self.needs = dict(needs or {})
        for target in self.needs.values():
            check_id("needs target", target)
        self.after = tuple(after)
        self.continue_on_fail = continue_on_fail
        self.label = label

    @property
    def output_model(self) -> type[BaseModel] | None:
        return None


class Task(Leaf):
    """A unit of work: ``fn(TaskContext, **needs)`` (sync or async) or a static ``value``."""

    __slots__ = (
        "backoff",
        "backoff_ms",
        "fn",
        "heartbeat_timeout_ms",
        "output",
        "retries",
        "skip_if",
        "timeout_ms",
        "value",
    )
    kind = "task"

    def __init__(
        self,
        id: str,
        fn: Callable[..., Any] | None = None,
        *,
        value: Any = None,
        output: type[BaseModel] | None = None,
        needs: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
        retries: int = 0,
        backoff: Backoff = "exponential",
        backoff_ms: int = 1000,
        timeout_ms: int | None = None,
        heartbeat_timeout_ms: int | None = None,
        continue_on_fail: bool = False,
        skip_if: bool | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__(
            id, needs=needs, after=after, continue_on_fail=continue_on_fail, label=label
        )
        if fn is None and value is None:
            raise SmithersError("INVALID_NODE", f"Task {id!r} needs fn or value=")
        if fn is not None and value is not None:
            raise SmithersError("INVALID_NODE", f"Task {id!r} takes fn or value=, not both")
        if retries < 0:
            raise SmithersError("INVALID_NODE", f"Task {id!r} retries must be >= 0")
        if backoff not in ("exponential", "fixed", "linear"):
            raise SmithersError("INVALID_NODE", f"Task {id!r} backoff {backoff!r} is unknown")
        self.fn = fn
        self.value = value
        self.output = output
        self.retries = retries
        self.backoff = backoff
        self.backoff_ms = backoff_ms
        self.timeout_ms = timeout_ms
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.skip_if = skip_if

    @property
    def output_model(self) -> type[BaseModel] | None:
        return self.output

    @property
    def task_kind(self) -> str:
        return "static" if self.fn is None else "compute"


@dataclass(frozen=True, slots=True)
class AutoApprove:
    """Approve automatically once the last ``after`` decisions for this node were approvals.

    ``after <= 0`` approves at once. ``condition`` (a bool or ``condition(ctx) -> bool``)
    must hold too when given.
    """

    after: int = 0
    condition: bool | Callable[[Any], bool] | None = None


@dataclass(frozen=True, slots=True)
class ApprovalOption:
    key: str
    label: str
    summary: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "label": self.label}
        if self.summary is not None:
            out["summary"] = self.summary
        return out


class Approval(Leaf):
    """A human decision: a gate, or a decision node writing a typed output (D4 matrix)."""

    __slots__ = (
        "allowed_scopes",
        "allowed_users",
        "auto_approve",
        "mode",
        "on_deny",
        "options",
        "summary",
        "title",
    )
    kind = "approval"

    def __init__(
        self,
        id: str,
        title: str | None = None,
        summary: str | None = None,
        *,
        mode: ApprovalMode = "gate",
        options: Sequence[str | Mapping[str, Any] | ApprovalOption] = (),
        on_deny: OnDeny = "fail",
        allowed_users: Sequence[str] = (),
        allowed_scopes: Sequence[str] = (),
        auto_approve: AutoApprove | None = None,
        needs: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
        continue_on_fail: bool = False,
        label: str | None = None,
    ) -> None:
        super().__init__(
            id, needs=needs, after=after, continue_on_fail=continue_on_fail, label=label
        )
        if mode not in ("gate", "approve", "select", "rank"):
            raise SmithersError("INVALID_APPROVAL", f"Approval {id!r}: unknown mode {mode!r}")
        if on_deny not in ("fail", "continue", "skip"):
            raise SmithersError("INVALID_APPROVAL", f"Approval {id!r}: unknown on_deny {on_deny!r}")
        self.title = title if title is not None else (label or id)
        self.summary = summary
        self.mode = mode
        self.options = tuple(_option(o) for o in options)
        keys = [o.key for o in self.options]
        if len(set(keys)) != len(keys):
            raise SmithersError("INVALID_APPROVAL", f"Approval {id!r}: duplicate option keys")
        self.on_deny = on_deny
        self.allowed_users = tuple(allowed_users)
        self.allowed_scopes = tuple(allowed_scopes)
        self.auto_approve = auto_approve

    @property
    def output_model(self) -> type[BaseModel] | None:
        from smithers_core.workflow.models import ApprovalDecision, Ranking, Selection

        return {"gate": None, "approve": ApprovalDecision, "select": Selection, "rank": Ranking}[
            self.mode
        ]

    @property
    def wire_mode(self) -> str:
        """``approvalMode`` on the wire: ``approve`` is spelled ``decision``."""
        return "decision" if self.mode == "approve" else self.mode


def _option(value: str | Mapping[str, Any] | ApprovalOption) -> ApprovalOption:
    if isinstance(value, ApprovalOption):
        return value
    if isinstance(value, str):
        return ApprovalOption(key=value, label=value)
    if isinstance(value, Mapping) and isinstance(value.get("key"), str):
        return ApprovalOption(
            key=value["key"],
            label=str(value.get("label", value["key"])),
            summary=value.get("summary"),
        )
    raise SmithersError("INVALID_APPROVAL", f"Invalid approval option {value!r}")


class WaitSignal(Leaf):
    """Wait for a signal (name + correlation id); its validated payload is the output."""

    __slots__ = ("correlation_id", "on_timeout", "output", "signal", "timeout_ms")
    kind = "wait"

    def __init__(
        self,
        id: str,
        signal: str | None = None,
        *,
        output: type[BaseModel] | None = None,
        correlation_id: str | None = None,
        timeout_ms: int | None = None,
        on_timeout: OnTimeout = "fail",
        needs: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
        continue_on_fail: bool = False,
        label: str | None = None,
    ) -> None:
        super().__init__(
            id, needs=needs, after=after, continue_on_fail=continue_on_fail, label=label
        )
        self.signal = (signal if signal is not None else id).strip()
        if not self.signal:
            raise SmithersError("INVALID_NODE", f"WaitSignal {id!r}: empty signal name")
        self.output = output
        self.correlation_id = correlation_id
        self.timeout_ms = timeout_ms
        if on_timeout not in ("fail", "skip"):
            raise SmithersError("INVALID_NODE", f"WaitSignal {id!r}: on_timeout fail or skip")
        self.on_timeout = on_timeout

    @property
    def output_model(self) -> type[BaseModel] | None:
        return self.output


class Timer(Leaf):
    """Wait for a duration (from when the timer is first reached) or until an instant."""

    __slots__ = ("duration", "duration_ms", "until", "until_ms")
    kind = "timer"

    def __init__(
        self,
        id: str,
        duration: str | int | timedelta | None = None,
        *,
        until: datetime | str | None = None,
        needs: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
        label: str | None = None,
    ) -> None:
        from smithers_core.workflow.durations import parse_duration_ms, parse_instant_ms

        super().__init__(id, needs=needs, after=after, label=label)
        if (duration is None) == (until is None):
            raise SmithersError("INVALID_NODE", f"Timer {id!r} takes duration= or until=")
        self.duration = duration
        self.until = until
        self.duration_ms = parse_duration_ms(duration) if duration is not None else None
        self.until_ms = parse_instant_ms(until) if until is not None else None


__all__ = [
    "ID_PATTERN",
    "Approval",
    "ApprovalOption",
    "AutoApprove",
    "Leaf",
    "Loop",
    "Node",
    "Par",
    "Seq",
    "Task",
    "Timer",
    "WaitSignal",
    "check_id",
]
