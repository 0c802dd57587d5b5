"""A workflow registered with a host under a key, and the options a plugin serves for it.

``schedule`` (a scheduling plugin), ``webhook`` (a webhook plugin) and ``ui`` (a UI plugin) are
validated here and stored with the registration; the host checks at ``listen()`` that some
installed plugin implements each option in use (D3, ``CONFIGURATION_UNSUPPORTED``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
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
    """``register(..., webhook=...)``: a signed inbound webhook for the workflow.

    ``scheme`` picks how deliveries are signed: ``"hmac"`` (upstream's: hex HMAC-SHA256 of the
    body in ``signature_header`` after ``signature_prefix``), ``"github"`` (the same, and
    ``x-github-delivery`` as the delivery id), ``"stripe"`` (``Stripe-Signature``) or
    ``"standard"`` (Standard Webhooks). ``secrets`` are accepted besides ``secret`` while a
    secret rotates; ``secret_env`` / ``secret_file`` read it from the environment or a file
    (D2). A ``delivery_id_header`` (or ``delivery_id_path`` into the JSON body; Stripe's
    ``id`` by default) makes repeated deliveries answer ``duplicate: true``.
    """

    secret: str | None = Field(default=None, min_length=1)
    secrets: list[str] = Field(default_factory=list, max_length=16)
    secret_env: str | None = None
    secret_file: str | None = None
    scheme: Literal["hmac", "github", "stripe", "standard"] = "hmac"
    signature_header: str | None = None
    signature_prefix: str | None = None
    delivery_id_header: str | None = None
    delivery_id_path: str | None = None
    replay_window_s: int = Field(default=7 * 24 * 3600, ge=1)
    timestamp_tolerance_s: int = Field(default=300, ge=1)
    signal: WebhookSignal | None = None
    run: WebhookRun | None = None

    @model_validator(mode="after")
    def _resolve_secret(self) -> WebhookOption:
        if self.secret is None and self.secret_env:
            self.secret = os.environ.get(self.secret_env) or None
            if self.secret is None:
                raise ValueError(f"environment variable {self.secret_env} is not set")
        if self.secret is None and self.secret_file:
            try:
                self.secret = Path(self.secret_file).read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise ValueError(f"cannot read secret_file: {exc.strerror}") from exc
        if self.secret is None and not self.secrets:
            raise ValueError("a secret is required (secret, secrets, secret_env or secret_file)")
        return self

    def all_secrets(self) -> list[str]:
        """Every secret a delivery may be signed with (the current one first)."""
        found = [self.secret] if self.secret else []
        return found + [s for s in self.secrets if s and s not in found]


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
    """The option model, or ``INVALID_INPUT`` naming each field and what is wrong, never the
    values (a webhook's are secrets)."""
    try:
        return model.model_validate(dict(value))
    except ValidationError as exc:
        problems = "; ".join(
            (".".join(str(p) for p in err["loc"]) or what) + ": " + err["msg"]
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        )
        raise SmithersError("INVALID_INPUT", f"Invalid {what}: {problems}") from None


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
