"""Smithers for Python: the minimal core (hook specs, plugin manager, engine, store, hosts).

The package root is the public API: the workflow model (``workflow``, ``Task``, ``Seq`` ...),
the three hosts (``start_server``, ``create_serve_app``, ``Gateway``), ``SmithersError`` and
``hookimpl`` for plugins. ``tests/test_public_api.py`` pins these names.
"""

from __future__ import annotations

from importlib import metadata

from smithers_core.errors import SmithersError
from smithers_core.gateway.gateway import Gateway
from smithers_core.hookspecs import hookimpl
from smithers_core.hosts.serve import create_serve_app
from smithers_core.hosts.server import start_server
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
    "Gateway",
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
    "create_serve_app",
    "hookimpl",
    "load_workflow",
    "start_server",
    "workflow",
]
