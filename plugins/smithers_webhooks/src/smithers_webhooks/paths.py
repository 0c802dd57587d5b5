"""Path expressions over a delivery's JSON (reference 9.4 step 5).

A path is dot-separated keys; a numeric segment indexes a list; an empty or absent path is the
whole payload. Ids found this way are coerced: a trimmed non-empty string stays, a finite
number becomes its decimal string, a boolean ``"true"``/``"false"``, anything else is absent.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = object()


def at(payload: Any, path: str | None) -> Any:
    """The value at ``path`` (the whole payload when empty), else :data:`MISSING`."""
    if not path:
        return payload
    value = payload
    for segment in path.split("."):
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return MISSING
    return value


def id_at(payload: Any, path: str | None) -> str | None:
    """The id at ``path``, coerced; None when absent or empty."""
    if not path:
        return None
    value = at(payload, path)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and math.isfinite(value):
        return str(int(value)) if float(value).is_integer() else repr(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None
