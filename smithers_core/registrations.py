"""A workflow registered with a host under a key, and the options a plugin serves for it.

``schedule`` (a scheduling plugin), ``webhook`` (a webhook plugin) and ``ui`` (a UI plugin) are
validated here and stored with the registration; the host checks at ``listen()`` that some
installed plugin implements each option in use (D3, ``CONFIGURATION_UNSUPPORTED``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from smithers_core.errors import SmithersError
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.loader import load_workflow

MAX_KEY = 256


class _Option(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class WebhookSignal(_Option):
    """``webhook.signal``: deliver each delivery as a signal to a run found in the payload."""

    name: str
    correlation_id_path: str | None = None
    run_id_path: str | None = None
    payload_path: str | None = None


class WebhookRun(_Option):
    """``webhook.run``: launch a run per delivery, with input taken from the payload."""

    enabled: bool = True
    input_path: str | None = None


class WebhookOption(_Option):
    """``register(..., webhook=...)``: an HMAC-signed inbound webhook for the workflow."""

    secret: str = Field(min_length=1)
    signature_header: str | None = None
    signature_prefix: str | None = None
    signal: WebhookSignal | None = None
    run: WebhookRun | None = None


class UiOption(_Option):
    """``register(..., ui=...)``: a page for the workflow, served by a UI plugin."""

    entry: str | None = None
    path: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9/_:.-]*$")
    title: str | None = None
    props: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered workflow and its options."""

    key: str
    workflow: Workflow
    schedule: str | None = None
    webhook: WebhookOption | None = None
    ui: bool | UiOption | None = None
    system: bool = False

    @property
    def ui_path(self) -> str | None:
        """Where the workflow's page is served (``/workflows/<key>`` unless ``ui.path``)."""
        if not self.ui:
            return None
        if isinstance(self.ui, UiOption) and self.ui.path:
            return self.ui.path
        return f"/workflows/{self.key}"


def _validate(model: type[BaseModel], value: Mapping[str, Any], what: str) -> Any:
    try:
        return model.model_validate(dict(value))
    except ValidationError as exc:
        raise SmithersError("INVALID_INPUT", f"Invalid {what}: {exc}") from exc


def make_registration(
    key: str,
    workflow: Workflow | str | os.PathLike[str],
    schedule: str | None = None,
    webhook: Mapping[str, Any] | None = None,
    ui: bool | Mapping[str, Any] | None = None,
    *,
    system: bool = False,
) -> Registration:
    """Validate a registration (``INVALID_INPUT``); ``workflow`` may be a ``file.py[:name]``."""
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
        raise SmithersError("INVALID_INPUT", "Workflow key must be a non-empty string")
    wf = workflow if isinstance(workflow, Workflow) else load_workflow(os.fspath(workflow))
    if schedule is not None and (not isinstance(schedule, str) or not schedule.strip()):
        raise SmithersError("INVALID_INPUT", f"Invalid schedule for workflow '{key}'")
    hook = _validate(WebhookOption, webhook, "webhook") if webhook is not None else None
    ui_value: bool | UiOption | None = (
        ui if ui is None or isinstance(ui, bool) else _validate(UiOption, ui, "ui")
    )
    return Registration(key, wf, schedule, hook, ui_value, system)


__all__ = [
    "Registration",
    "UiOption",
    "WebhookOption",
    "WebhookRun",
    "WebhookSignal",
    "make_registration",
]
