"""How cron rows name registered workflows (``gateway:<key>``), and rows as RPCs answer them."""

from __future__ import annotations

from typing import Any

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
