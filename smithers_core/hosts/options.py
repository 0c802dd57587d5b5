"""Host option defaults and their environment overrides (reference/server.md 2.1, D9, D12).

A time option is the value given, else its ``SMITHERS_*`` environment variable, else the
upstream default.
"""

from __future__ import annotations

import os

DEFAULT_PORT = 7331
DEFAULT_MAX_BODY_BYTES = 1_048_576
HEADERS_TIMEOUT_MS = 30_000
REQUEST_TIMEOUT_MS = 60_000
SSE_KEEPALIVE_MS = 10_000
SSE_POLL_MS = 250
MAX_WORKFLOW_PATH = 4096
"""The longest ``workflowPath`` start_server takes (longer is 400 ``INVALID_REQUEST``)."""


def option_ms(given: int | None, env_name: str, default: int) -> int:
    """``given`` if not None, else the integer in ``env_name`` if set, else ``default``."""
    if given is not None:
        return given
    raw = os.environ.get(env_name)
    return int(raw) if raw else default


__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "HEADERS_TIMEOUT_MS",
    "MAX_WORKFLOW_PATH",
    "REQUEST_TIMEOUT_MS",
    "SSE_KEEPALIVE_MS",
    "SSE_POLL_MS",
    "option_ms",
]
