"""Cron patterns and time zones: validation and the next fire time, on croniter.

A pattern has 5 fields (minute hour day month weekday) or 6 with seconds first, as upstream's
cron-parser reads them. It is evaluated in an IANA time zone (UTC unless one is given).

Daylight saving: a time that does not exist (02:30 on a spring-forward day) fires at the
first instant after the gap (03:00); a wall-clock time that happens twice (01:30 on a
fall-back day) fires once, at its first occurrence, for patterns with a fixed hour. Patterns
whose hour is ``*`` keep firing through the repeated hour, every real occurrence.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from smithers_core.errors import SmithersError
from smithers_core.ids import clip

MAX_PATTERN = 256
DEFAULT_TZ = "UTC"


def zone(name: str | None) -> ZoneInfo:
    """The time zone ``name`` (UTC when None); ``INVALID_INPUT`` for an unknown one."""
    if name is None or name == "":
        return ZoneInfo(DEFAULT_TZ)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SmithersError(
            "INVALID_INPUT", f"Unknown time zone: {clip(name)} (an IANA name such as Europe/Paris)"
        ) from exc


def _fields(pattern: str) -> list[str]:
    return pattern.split()


def check_pattern(pattern: str) -> str:
    """The pattern, stripped; ``INVALID_INPUT`` with the parser's reason when it is not one."""
    text = pattern.strip()
    if not text or len(text) > MAX_PATTERN:
        raise SmithersError("INVALID_INPUT", f"Invalid cron pattern: 1-{MAX_PATTERN} characters")
    if len(_fields(text)) not in (5, 6):
        raise SmithersError(
            "INVALID_INPUT",
            f"Invalid cron pattern {clip(text)!r}: 5 fields, or 6 with seconds first",
        )
    try:
        croniter(text, datetime.now(UTC), second_at_beginning=True)
    except (CroniterError, ValueError, KeyError) as exc:
        raise SmithersError(
            "INVALID_INPUT", f"Invalid cron pattern {clip(text)!r}: {clip(str(exc))}"
        ) from exc
    return text


def _fixed_hour(pattern: str) -> bool:
    fields = _fields(pattern)
    hour = fields[2] if len(fields) == 6 else fields[1]
    return "*" not in hour


def next_fire_ms(pattern: str, after_ms: int, tz: str | None = None) -> int:
    """The first fire time strictly after ``after_ms`` (epoch ms) in zone ``tz``."""
    where = zone(tz)
    start = datetime.fromtimestamp(after_ms / 1000, where)
    candidate: datetime = croniter(pattern, start, second_at_beginning=True).get_next(datetime)
    wall = start.replace(tzinfo=None)
    if _fixed_hour(pattern) and candidate.replace(tzinfo=None) <= wall:
        # the clock fell back: skip the second pass of the hour, resume where the wall clock
        # passes ``start``'s time again (its later occurrence)
        later = datetime.fromtimestamp(wall.replace(tzinfo=where, fold=1).timestamp(), where)
        candidate = croniter(pattern, later, second_at_beginning=True).get_next(datetime)
    return int(candidate.timestamp() * 1000)
