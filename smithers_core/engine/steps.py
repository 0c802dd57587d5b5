"""Plain values of one scheduling cycle, and the small pure helpers the cycle shares.

A cycle plans a :class:`Step`: the changes to commit in one transaction, the attempts to start
after that commit, when to wake up, and what the run waits for. An :class:`Inflight` is an
attempt running in this process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import BaseModel

from smithers_core import jsonutil
from smithers_core.engine.render import Key, PLeaf, call_render_code
from smithers_core.store.base import Tx
from smithers_core.workflow.context import Ctx, TaskContext
from smithers_core.workflow.nodes import Task

Change = Callable[[Tx], None]


@dataclass(slots=True)
class Inflight:
    """An attempt running in this process; ``reason`` says why it was cancelled, if it was."""

    key: Key
    attempt: int
    scope: anyio.CancelScope
    tctx: TaskContext
    reason: str | None = None

    def cancel(self, reason: str) -> None:
        """Stop the attempt: tell its task (threads poll ``cancelled``) and cancel its scope."""
        self.reason = reason
        self.tctx.mark_cancelled()
        self.scope.cancel()


@dataclass(slots=True)
class StartSpec:
    """A task attempt to start once the step's changes committed."""

    pleaf: PLeaf
    attempt: int
    deps: dict[str, Any]
    last_heartbeat: Any


@dataclass(slots=True)
class Step:
    """What one cycle decided: changes to commit, attempts to start, the earliest time to look
    again, failed nodes that fail the run, what the run waits for, and whether it is done."""

    changes: list[Change] = field(default_factory=list)
    starts: list[StartSpec] = field(default_factory=list)
    wake_at: int | None = None
    fatal: list[Key] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)
    done: bool = False
    mounted: int = 0  # how many of ``changes`` (the first ones) mount nodes and the frame
    # the signal waits left waiting: (node_id, iteration) -> (tree position, output model)
    wait_models: dict[Key, tuple[int, type[BaseModel] | None]] = field(default_factory=dict)

    def wake(self, at: int) -> None:
        """Look again at ``at`` (ms) at the latest."""
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)


def apply_all(changes: list[Change], tx: Tx) -> None:
    """Run a step's changes, in order, in one transaction."""
    for change in changes:
        change(tx)


def backoff_delay(task: Task, failures: int, cap_ms: int) -> int:
    """How long to wait before retrying ``task`` after ``failures`` failed attempts."""
    if failures <= 0:
        return 0
    base = task.backoff_ms
    if task.backoff == "fixed":
        delay = base
    elif task.backoff == "linear":
        delay = base * failures
    else:
        delay = base * (2 ** min(failures - 1, 30))
    return int(min(delay, cap_ms))


def render_predicate(fn: Callable[[Ctx], Any], ctx: Ctx, what: str) -> bool:
    """Evaluate render-time user code (a loop's ``until``, an auto-approve ``condition``)."""
    return bool(call_render_code(fn, ctx, what))


def model_name(model: type[BaseModel] | None) -> str:
    """The output table name of a node's output model (empty without one)."""
    return model.__name__ if model is not None else ""


@functools.lru_cache(maxsize=512)
def _schema_json(model: type[BaseModel]) -> str:
    return jsonutil.dumps(model.model_json_schema())


def schema_json(model: type[BaseModel] | None) -> str | None:
    """The JSON schema of a node's output model, encoded once per model (None without one)."""
    return _schema_json(model) if model is not None else None


def dump_output(value: Any) -> Any:
    """A task's return value as JSON data (pydantic models by alias)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return value
