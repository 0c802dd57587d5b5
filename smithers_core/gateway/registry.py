"""The gateway's registered workflows: lookup by key, ``listWorkflows`` summaries, which key a
stored run belongs to, and the check that every registration option in use has a plugin."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from smithers_core.errors import SmithersError
from smithers_core.ids import clip
from smithers_core.registrations import Registration
from smithers_core.workflow.definition import Workflow

DEFAULT_OPERATOR_UI = {"path": "/console"}


@functools.lru_cache(maxsize=512)
def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a workflow's input model (beyond upstream: clients build launch
    forms from it), computed once per model."""
    return model.model_json_schema()


class WorkflowRegistry(Mapping[str, Registration]):
    """Registrations by key (a read-only mapping; :meth:`add` replaces a key)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Registration] = {}

    def __getitem__(self, key: str) -> Registration:
        return self._by_key[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    def add(self, registration: Registration) -> None:
        self._by_key[registration.key] = registration

    def require(self, key: str | None) -> Registration:
        """The registration of ``key``, else ``NOT_FOUND`` ``Unknown workflow``."""
        reg = self._by_key.get(key or "")
        if reg is None:
            shown = clip(str(key))
            raise SmithersError("NOT_FOUND", f"Unknown workflow: {shown}", {"workflow": shown})
        return reg

    def key_of(
        self, config: Mapping[str, Any], workflow_name: Any, workflow_path: Any
    ) -> str | None:
        """The key a stored run belongs to: the key it was launched under, else a registered
        workflow of its name, else its file's stem, else its workflow name."""
        key = config.get("gatewayWorkflowKey")
        if isinstance(key, str) and key:
            return key
        if isinstance(workflow_name, str) and workflow_name in self._by_key:
            return workflow_name
        if isinstance(workflow_path, str) and workflow_path:
            return Path(workflow_path).stem
        return workflow_name if isinstance(workflow_name, str) else None

    def workflow_of(self, row: Mapping[str, Any], config: Mapping[str, Any]) -> Workflow | None:
        """The registered workflow of a stored run row (the engine's resolver), or None."""
        key = self.key_of(config, row.get("workflow_name"), row.get("workflow_path"))
        reg = self._by_key.get(key or "")
        return reg.workflow if reg is not None else None

    def summaries(self, *, include_system: bool, schemas: bool = False) -> list[dict[str, Any]]:
        """``listWorkflows`` items, sorted by key; ``schemas`` adds each ``inputSchema``."""
        out = []
        for key in sorted(self._by_key):
            reg = self._by_key[key]
            if reg.system and not include_system:
                continue
            item: dict[str, Any] = {"key": key}
            if reg.workflow.name != key:
                item["readableName"] = reg.workflow.name
            doc = inspect.getdoc(reg.workflow.build)
            if doc:
                item["description"] = doc.strip().splitlines()[0]
            item.update(hasUi=bool(reg.ui), uiPath=reg.ui_path, system=reg.system)
            if schemas:
                item["inputSchema"] = input_schema(reg.workflow.input_model)
            out.append(item)
        return out

    def check_options(self, provided: set[str], *, has_ui: bool, ui: Any, operator_ui: Any) -> None:
        """``CONFIGURATION_UNSUPPORTED`` for an option in use that no plugin implements (D3):
        ``provided`` names the options schedulers implement; ``has_ui`` says a UI plugin
        contributed mounts. ``operator_ui`` left at its default needs nothing."""
        for reg in self._by_key.values():
            if reg.schedule and "schedule" not in provided:
                raise _unsupported(f"'schedule' on workflow '{reg.key}' needs a scheduling plugin")
            if reg.webhook and "webhook" not in provided:
                raise _unsupported(f"'webhook' on workflow '{reg.key}' needs a webhook plugin")
            if reg.ui and not has_ui:
                raise _unsupported(f"'ui' on workflow '{reg.key}' needs a UI plugin")
        if ui and not has_ui:
            raise _unsupported("'ui' on the gateway needs a UI plugin")
        if operator_ui not in (False, None, DEFAULT_OPERATOR_UI) and not has_ui:
            raise _unsupported("'operator_ui' on the gateway needs a UI plugin")


def _unsupported(message: str) -> SmithersError:
    return SmithersError("CONFIGURATION_UNSUPPORTED", f"{message}; none is installed")


__all__ = ["DEFAULT_OPERATOR_UI", "WorkflowRegistry"]
