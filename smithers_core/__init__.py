"""Smithers for Python: the minimal core (hook specs, plugin manager, engine, store, hosts)."""

from __future__ import annotations

from importlib import metadata

from smithers_core.errors import SmithersError
from smithers_core.hookspecs import hookimpl
from smithers_core.workflow.context import Ctx, TaskContext
from smithers_core.workflow.definition import Workflow, workflow
from smithers_core.workflow.loader import load_workflow
from smithers_core.workflow.models import ApprovalDecision, Ranking, RunAuth, Selection
from smithers_core.workflow.nodes import (
    Approval,
    ApprovalOption,
    AutoApprove,
    Loop,
    Par,
    Seq,
    Task,
    Timer,
    WaitSignal,
)

try:
    __version__ = metadata.version("smithers-core")
except metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0.0.0"

__all__ = [
    "Approval",
    "ApprovalDecision",
    "ApprovalOption",
    "AutoApprove",
    "Ctx",
    "Loop",
    "Par",
    "Ranking",
    "RunAuth",
    "Selection",
    "Seq",
    "SmithersError",
    "Task",
    "TaskContext",
    "Timer",
    "WaitSignal",
    "Workflow",
    "__version__",
    "hookimpl",
    "load_workflow",
    "workflow",
]
