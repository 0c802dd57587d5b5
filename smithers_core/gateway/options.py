"""``GatewayOptions``: every upstream option in snake_case, upstream camelCase accepted too.

Numeric options must be positive integers (upstream rejects non-positive, non-integer or
non-finite values with ``INVALID_INPUT``); the validation error is raised by ``Gateway``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from smithers_core.errors import SmithersError, validation_issues
from smithers_core.store import default_db_url

DEFAULT_FEATURES = ("streaming", "runs")
BRIDGE_POLL_MS = 1000


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def positive_int(value: Any) -> Any:
    """Upstream's numeric option check: a finite number > 0, floored to an integer."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer greater than 0")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number greater than 0")
        value = int(value)  # upstream floors
    if value <= 0:
        raise ValueError("must be an integer greater than 0")
    return value


class DefaultsOption(BaseModel):
    """``defaults``: per-gateway fallbacks for options left unset at the top level.

    ``cli_agent_tools`` is validated and kept for plugins (core runs no CLI agents).
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    cli_agent_tools: Literal["all", "explicit-only"] | None = None
    out_of_process_event_bridge: bool | None = None
    out_of_process_event_bridge_poll_ms: int | None = None

    @field_validator("out_of_process_event_bridge_poll_ms", mode="before")
    @classmethod
    def _positive_int(cls, value: Any) -> Any:
        return None if value is None else positive_int(value)


class IdentityOption(BaseModel):
    """``identity``: what the host advertises about itself in ``health`` and ``hello``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    backend: str | None = None
    version: str | None = None


class GatewayOptions(BaseModel):
    """Constructor options of :class:`~smithers_core.gateway.Gateway`.

    Time constants default to upstream's values and read ``SMITHERS_GATEWAY_*`` environment
    overrides (D12). ``db`` is a store URL (``sqlite:///smithers.db``) or a ``Store``.
    ``out_of_process_event_bridge`` and ``out_of_process_event_bridge_poll_ms`` are unset
    (None) by default and resolved at construction: the option, else ``defaults``, else the
    environment override (poll only), else upstream's default (``True``, 1,000 ms).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        arbitrary_types_allowed=True,
    )

    protocol: int = 1
    features: list[str] = Field(default_factory=lambda: list(DEFAULT_FEATURES))
    heartbeat_ms: int = Field(
        default_factory=lambda: _env_int("SMITHERS_GATEWAY_HEARTBEAT_MS", 15_000)
    )
    auth: dict[str, Any] | None = None
    allowed_origins: list[str] = Field(default_factory=list)
    ui: Any = None
    operator_ui: Any = Field(default_factory=lambda: {"path": "/console"})
    workspace_root: str | None = None
    defaults: DefaultsOption | None = None
    max_body_bytes: int = 1_048_576
    max_payload: int = 1_048_576
    max_connections: int = 1000
    max_pre_auth_connections: int = 64
    max_pre_auth_connections_per_peer: int = 8
    event_window_size: int = 10_000
    max_run_windows: int = 1000
    terminal_window_grace_ms: int = Field(
        default_factory=lambda: _env_int("SMITHERS_GATEWAY_WINDOW_GRACE_MS", 1000)
    )
    out_of_process_event_bridge: bool | None = None
    out_of_process_event_bridge_poll_ms: int | None = None
    headers_timeout: int = Field(
        default_factory=lambda: _env_int("SMITHERS_GATEWAY_HEADERS_TIMEOUT", 30_000)
    )
    request_timeout: int = Field(
        default_factory=lambda: _env_int("SMITHERS_GATEWAY_REQUEST_TIMEOUT", 60_000)
    )
    auth_deadline_ms: int = Field(
        default_factory=lambda: _env_int("SMITHERS_GATEWAY_AUTH_DEADLINE_MS", 5_000)
    )
    idle_timeout_ms: int = 0
    insecure: bool = False
    # the bash tool may run without filesystem confinement where bubblewrap is unavailable
    unconfined_tools: bool = False
    # HTTP parser: None picks $SMITHERS_HTTP, else httptools (smithers_core.http.timeouts)
    http: Literal["httptools", "h11"] | None = None
    identity: IdentityOption = Field(default_factory=IdentityOption)
    db: Any = Field(default_factory=default_db_url)
    max_outbound_bytes: int = 32 * 1024 * 1024
    max_outbound_bytes_total: int = 128 * 1024 * 1024
    max_inflight_requests: int = 64
    max_run_streams: int = 256
    max_run_streams_per_user: int = 32
    max_run_streams_per_connection: int = 8
    max_run_streams_per_run: int = 64
    run_stream_queue_limit: int = 1000
    stream_heartbeat_ms: int = Field(
        default_factory=lambda: _env_int("SMITHERS_GATEWAY_STREAM_HEARTBEAT_MS", 1000)
    )
    ws_per_message_deflate: bool = False

    @field_validator(
        "heartbeat_ms",
        "max_body_bytes",
        "max_payload",
        "max_connections",
        "max_pre_auth_connections",
        "max_pre_auth_connections_per_peer",
        "event_window_size",
        "max_run_windows",
        "terminal_window_grace_ms",
        "headers_timeout",
        "request_timeout",
        "auth_deadline_ms",
        "max_outbound_bytes",
        "max_outbound_bytes_total",
        "max_inflight_requests",
        "max_run_streams",
        "max_run_streams_per_user",
        "max_run_streams_per_connection",
        "max_run_streams_per_run",
        "run_stream_queue_limit",
        "stream_heartbeat_ms",
        "protocol",
        mode="before",
    )
    @classmethod
    def _positive_int(cls, value: Any) -> Any:
        return positive_int(value)

    @field_validator("out_of_process_event_bridge_poll_ms", mode="before")
    @classmethod
    def _optional_positive_int(cls, value: Any) -> Any:
        return None if value is None else positive_int(value)

    @field_validator("idle_timeout_ms", mode="before")
    @classmethod
    def _non_negative(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("must be a non-negative integer")
        return value

    @model_validator(mode="after")
    def _resolve_defaults(self) -> GatewayOptions:
        """Unset bridge options: ``defaults``, else the environment, else upstream's default."""
        fallback = self.defaults or DefaultsOption()
        if self.out_of_process_event_bridge is None:
            bridge = fallback.out_of_process_event_bridge
            self.out_of_process_event_bridge = True if bridge is None else bridge
        if self.out_of_process_event_bridge_poll_ms is None:
            self.out_of_process_event_bridge_poll_ms = (
                fallback.out_of_process_event_bridge_poll_ms
                or _env_int("SMITHERS_GATEWAY_BRIDGE_POLL_MS", BRIDGE_POLL_MS)
            )
        return self


def parse_options(raw: dict[str, Any]) -> GatewayOptions:
    """Validate options, turning pydantic errors into ``INVALID_INPUT``."""
    from pydantic import ValidationError

    try:
        return GatewayOptions.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        raise SmithersError(
            "INVALID_INPUT",
            f"Gateway option {field} {first.get('msg', 'is invalid')}".replace("Value error, ", ""),
            {"issues": validation_issues(exc)},
        ) from exc


__all__ = [
    "BRIDGE_POLL_MS",
    "DEFAULT_FEATURES",
    "DefaultsOption",
    "GatewayOptions",
    "IdentityOption",
    "parse_options",
    "positive_int",
]
