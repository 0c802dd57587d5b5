"""Duration strings (``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"``, ``"7d"``) and timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from smithers_core.errors import SmithersError

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration_ms(value: str | int | float | timedelta) -> int:
    """Milliseconds in a duration string, a number of ms, or a ``timedelta``."""
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise SmithersError("INVALID_INPUT", f"Negative duration: {value}")
        return int(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return int(float(match.group(1)) * _UNITS_MS[match.group(2)])
    raise SmithersError(
        "INVALID_INPUT", f"Invalid duration {value!r}; use e.g. '500ms', '30s', '2m', '1h', '7d'"
    )


def parse_instant_ms(value: str | datetime) -> int:
    """Epoch milliseconds of a ``datetime`` (naive means UTC) or an ISO-8601 string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise SmithersError("INVALID_INPUT", f"Invalid timestamp {value!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def iso_from_ms(ms: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z`` suffix, as upstream prints times."""
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
