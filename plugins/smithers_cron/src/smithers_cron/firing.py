"""Starting a scheduled workflow's run: one place for the scheduler and ``cronRun``."""

from __future__ import annotations

import uuid
from typing import Any

from smithers_core.contributions import HostContext
from smithers_core.registrations import Registration
from smithers_core.workflow.models import RunAuth

PATH_PREFIX = "gateway:"


def workflow_path(key: str) -> str:
    """How a cron row names a registered workflow (``gateway:<key>``)."""
    return PATH_PREFIX + key


def key_of(path: Any) -> str | None:
    """The workflow key of a row's ``workflowPath``, or None for another kind of path."""
    if isinstance(path, str) and path.startswith(PATH_PREFIX) and len(path) > len(PATH_PREFIX):
        return path[len(PATH_PREFIX) :]
    return None


def with_workflow(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the RPCs answer it: plus ``workflow``, the key from its ``workflowPath``."""
    return {**row, "workflow": key_of(row.get("workflowPath"))}


async def launch(
    host: HostContext,
    key: str,
    reg: Registration,
    auth: RunAuth,
    run_input: Any = None,
    run_id: str | None = None,
) -> str:
    """Start a run of ``reg`` as ``auth``; returns its id."""
    run_id = run_id or str(uuid.uuid4())
    config = {
        "gatewayWorkflowKey": key,
        "gatewayTriggeredBy": auth.triggered_by,
        "gatewaySystem": reg.system,
    }
    await host.run_service.launch(
        reg.workflow,
        run_input if run_input is not None else {},
        run_id=run_id,
        auth=auth,
        config=config,
    )
    return run_id
