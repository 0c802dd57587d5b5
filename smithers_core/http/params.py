"""Path and query parameters with JavaScript semantics (reference/server.md 1.6, 2.3, 5.3):
``decodeURIComponent`` for path segments, ``Number()`` and ``parseInt`` for query values."""

from __future__ import annotations

import math
import re

from smithers_core.http.errors import HttpError
from smithers_core.ids import clip

_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_PREFIXED = re.compile(r"^0([xXoObB])([0-9a-fA-F]+)$")
_INT_PREFIX = re.compile(r"^\s*([+-]?\d+)")
_HEX = frozenset("0123456789abcdefABCDEF")

MAX_SQL_INT = 2**63 - 1
"""The largest integer SQLite stores; numbers parsed here are clamped to +-this (a limit or a
cursor beyond it means the same as at it), so they bind in a query instead of overflowing."""


def clamp_sql_int(n: int) -> int:
    """``n`` clamped to SQLite's 64-bit integer range."""
    return max(-MAX_SQL_INT - 1, min(n, MAX_SQL_INT))


def strict_unquote(segment: str) -> str:
    """``decodeURIComponent``: a malformed escape, bad UTF-8 or a NUL is 400
    ``INVALID_REQUEST`` "URI malformed" (changed, issue 13: upstream answers 500), unlike
    ``urllib.parse.unquote``, which lets them through."""
    if "%" not in segment:
        return segment
    out = bytearray()
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "%":
            pair = segment[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise HttpError(400, "INVALID_REQUEST", "URI malformed")
            out.append(int(pair, 16))
            i += 3
        else:
            out.extend(ch.encode("utf-8"))
            i += 1
    if 0 in out:
        raise HttpError(400, "INVALID_REQUEST", "URI malformed")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(400, "INVALID_REQUEST", "URI malformed") from exc


def js_number(raw: str) -> float:
    """``Number(raw)``: trims whitespace, ``""`` is 0, hex/octal/binary prefixes, else NaN."""
    text = raw.strip()
    if text == "":
        return 0.0
    if text in ("Infinity", "+Infinity"):
        return math.inf
    if text == "-Infinity":
        return -math.inf
    if _DECIMAL.match(text):
        return float(text)
    m = _PREFIXED.match(text)
    if m:
        base = {"x": 16, "o": 8, "b": 2}[m.group(1).lower()]
        try:
            return float(int(m.group(2), base))
        except ValueError:
            return math.nan
        except OverflowError:  # beyond a double, as Number("0xfff...") is Infinity
            return math.inf
    return math.nan


def positive_int(raw: str | None, default: int) -> int:
    """Absent -> default; not finite or <= 0 -> 400; else floor (so "0.5" gives 0), at most
    :data:`MAX_SQL_INT`."""
    if raw is None:
        return default
    n = js_number(raw)
    if not math.isfinite(n) or n <= 0:
        raise HttpError(400, "INVALID_REQUEST", f'Expected a positive integer, got "{clip(raw)}"')
    return clamp_sql_int(math.floor(n))


def optional_int(raw: str | None, default: int) -> int:
    """Absent -> default; not finite -> 400; else floor (clamped, :func:`clamp_sql_int`)."""
    if raw is None:
        return default
    n = js_number(raw)
    if not math.isfinite(n):
        raise HttpError(400, "INVALID_REQUEST", f'Expected a number, got "{clip(raw)}"')
    return clamp_sql_int(math.floor(n))


def int_prefix(raw: str | None) -> int | None:
    """``parseInt(raw, 10)``: the leading base-10 integer (clamped, :func:`clamp_sql_int`), or
    None."""
    if raw is None:
        return None
    m = _INT_PREFIX.match(raw)
    if m is None:
        return None
    digits = m.group(1)
    if len(digits.lstrip("+-").lstrip("0")) > 19:  # beyond int64 (and int()'s digit limit)
        return clamp_sql_int(-(10**19) if digits.startswith("-") else 10**19)
    return clamp_sql_int(int(digits))
