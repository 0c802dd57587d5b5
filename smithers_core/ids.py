"""Run ids (D4) and the cap on values a surface echoes back to a client.

A run id is 1-128 characters of ``A-Z a-z 0-9 _ . -`` (D4's id pattern) and never ``.`` nor
contains ``..``, so it is safe in a URL path segment, a file name and a log line. Every surface
checks ids it is given (start_server and serve routes and bodies, gateway RPC params, the CLI)
before anything else reads them; each answers a bad id with its own 400 code.

Values a surface echoes in an error message (a header, a name) are clipped to
:data:`MAX_ECHO` characters by :func:`clip`.
"""

from __future__ import annotations

import re
from typing import Any

from smithers_core.errors import SmithersError

MAX_RUN_ID = 128
MAX_ECHO = 128
RUN_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
_RUN_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
RUN_ID_RULE = "1-128 characters of A-Z a-z 0-9 _ . - (not '.', no '..')"


def is_run_id(value: Any) -> bool:
    """True when ``value`` is a valid run id."""
    return (
        isinstance(value, str)
        and _RUN_ID.fullmatch(value) is not None
        and value != "."
        and ".." not in value
    )


def run_id_error(field: str = "runId", code: str = "INVALID_INPUT") -> SmithersError:
    """The error for a bad id in ``field`` (the id itself is never echoed)."""
    return SmithersError(
        code,
        f"{field} must be a run id: {RUN_ID_RULE}",
        {"field": field, "pattern": RUN_ID_PATTERN},
    )


def check_run_id(value: Any, field: str = "runId", code: str = "INVALID_INPUT") -> str:
    """``value`` when it is a valid run id, else :func:`run_id_error`."""
    if not is_run_id(value):
        raise run_id_error(field, code)
    return str(value)


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters (an echoed value never grows an answer)."""
    return text if len(text) <= limit else text[:limit]


__all__ = [
    "MAX_ECHO",
    "MAX_RUN_ID",
    "RUN_ID_PATTERN",
    "RUN_ID_RULE",
    "check_run_id",
    "clip",
    "is_run_id",
    "run_id_error",
]
