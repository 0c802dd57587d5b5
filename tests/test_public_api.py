"""The public names of ``smithers_core`` are pinned (as httpx pins its API): adding or
removing one is a deliberate change made here too."""

from __future__ import annotations

import inspect

import smithers_core

PUBLIC = [
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


def test_all_is_pinned() -> None:
    assert sorted(smithers_core.__all__) == sorted(PUBLIC)


def test_every_public_attribute_is_exported() -> None:
    attributes = {
        name
        for name, value in vars(smithers_core).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    attributes.discard("annotations")  # ``from __future__ import annotations``
    assert attributes == set(PUBLIC) - {"__version__"}


def test_the_hosts_import_from_the_package_root() -> None:
    from smithers_core import Gateway, create_serve_app, start_server

    assert Gateway.__module__ == "smithers_core.gateway.gateway"
    assert callable(start_server) and callable(create_serve_app)
