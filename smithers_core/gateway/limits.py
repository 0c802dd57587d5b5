"""Input bounds that apply to every RPC (gateway reference section 3).

Frames and HTTP bodies: JSON only (no NaN/Infinity, no lone surrogate), depth <= 32 where the
root is depth 1 and every child (primitive leaves included) one deeper, arrays <= 256 items,
strings <= 16,384 UTF-16 code units (D11). ``launchRun`` input: <= 1 MiB of JSON and <= 32
nested containers. More than 32 nested containers is refused before parsing (:func:`loads_client`),
so no depth reaches the parser's recursion.
"""

from __future__ import annotations

import re
from typing import Any

from smithers_core import jsonutil
from smithers_core.errors import SmithersError

MAX_BYTES = 1_048_576
MAX_DEPTH = 32
MAX_ARRAY = 256
MAX_STRING = 16_384
MAX_METHOD = 64
MAX_ID = 128
MAX_PROMPT_CODE_POINTS = 8192
FRAME_NOT_JSON = "Gateway frame must be valid JSON."
METHOD_RE = re.compile(r"^[a-z][a-zA-Z0-9]*(?:\.[a-z][a-zA-Z0-9]*)*$")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as JavaScript counts it."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _path(parts: list[str | int]) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def too_deep(field: str = "gateway frame") -> SmithersError:
    """The depth error of :func:`check_bounds`, for a text refused before parsing."""
    return SmithersError(
        "INVALID_INPUT",
        f"{field} exceeds the maximum depth of {MAX_DEPTH}.",
        {"field": field, "path": "$", "maxDepth": MAX_DEPTH},
    )


def loads_client(
    data: str | bytes,
    message: str,
    *,
    parse_float: Any = None,
    field: str = "gateway frame",
    counted: bool = False,
) -> Any:
    """:func:`jsonutil.loads_strict` with this surface's errors: more than 32 nested
    containers is :func:`too_deep` (found without parsing; ``counted``: the caller knows there
    are fewer brackets), anything that is not JSON, a lone surrogate included, is
    ``INVALID_INPUT`` ``message``."""
    nesting = None if counted else MAX_DEPTH
    try:
        return jsonutil.loads_strict(data, parse_float=parse_float, max_nesting=nesting)
    except jsonutil.JsonTooDeep:
        raise too_deep(field) from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SmithersError("INVALID_INPUT", message) from None


def check_bounds(value: Any, field: str = "gateway frame") -> None:
    """Raise ``INVALID_INPUT`` with ``{field, path, maxLength|maxDepth, actualLength}``."""
    _walk(value, 1, [], field)


def _walk(value: Any, depth: int, path: list[str | int], field: str) -> None:
    if depth > MAX_DEPTH:
        raise SmithersError(
            "INVALID_INPUT",
            f"{field} exceeds the maximum depth of {MAX_DEPTH}.",
            {"field": field, "path": _path(path), "maxDepth": MAX_DEPTH, "actualLength": depth},
        )
    if isinstance(value, str):
        if len(value) > MAX_STRING // 2:
            n = utf16_len(value)
            if n > MAX_STRING:
                raise SmithersError(
                    "INVALID_INPUT",
                    f"{field} contains a string longer than {MAX_STRING} characters.",
                    {
                        "field": field,
                        "path": _path(path),
                        "maxLength": MAX_STRING,
                        "actualLength": n,
                    },
                )
        return
    if isinstance(value, dict):
        for key, child in value.items():
            path.append(key)
            if isinstance(key, str) and len(key) > MAX_STRING // 2:
                _walk(key, depth + 1, path, field)
            _walk(child, depth + 1, path, field)
            path.pop()
        return
    if isinstance(value, list):
        if len(value) > MAX_ARRAY:
            raise SmithersError(
                "INVALID_INPUT",
                f"{field} contains an array longer than {MAX_ARRAY} items.",
                {
                    "field": field,
                    "path": _path(path),
                    "maxLength": MAX_ARRAY,
                    "actualLength": len(value),
                },
            )
        for index, child in enumerate(value):
            path.append(index)
            _walk(child, depth + 1, path, field)
            path.pop()
        return
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise SmithersError(
            "INVALID_INPUT",
            f"{field} contains a non-finite number.",
            {"field": field, "path": _path(path)},
        )
    if value is None or isinstance(value, bool | int | float):
        return
    raise SmithersError(
        "INVALID_INPUT",
        f"{field} contains a value that is not JSON.",
        {"field": field, "path": _path(path)},
    )


def clip_prompt(frame: Any) -> None:
    """Clip ``params.options.startedBy.prompt`` to 8,192 code points before the bounds check."""
    if not isinstance(frame, dict):
        return
    params = frame.get("params")
    options = params.get("options") if isinstance(params, dict) else None
    started = options.get("startedBy") if isinstance(options, dict) else None
    if isinstance(started, dict):
        prompt = started.get("prompt")
        if isinstance(prompt, str) and len(prompt) > MAX_PROMPT_CODE_POINTS:
            started["prompt"] = prompt[:MAX_PROMPT_CODE_POINTS]


def check_method(method: Any) -> str:
    if not isinstance(method, str) or len(method) > MAX_METHOD or not METHOD_RE.match(method):
        raise SmithersError("INVALID_INPUT", "Gateway method name is invalid.")
    return method


class _NonFinite(Exception):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # 1e999 overflows to inf: let the full walk report it
        raise _NonFinite
    return value


def _within_bounds(data: str | bytes) -> bool:
    """True when no value parsed from ``data`` can break a :func:`check_bounds` limit.

    A string over 16,384 UTF-16 code units needs more than 8,192 characters of text (an
    astral character is one character but two code units) or 16,384 bytes; an array over 256
    items needs 256 commas; a depth over 32 needs 32 nested containers, so 32 opening
    brackets. Non-finite numbers are caught while parsing (:func:`_finite_float`).
    """
    if isinstance(data, str):
        return (
            len(data) <= MAX_STRING // 2
            and data.count("[") + data.count("{") < MAX_DEPTH
            and data.count(",") < MAX_ARRAY
        )
    return (
        len(data) <= MAX_STRING
        and data.count(b"[") + data.count(b"{") < MAX_DEPTH
        and data.count(b",") < MAX_ARRAY
    )


def parse_request_frame(data: str | bytes, max_bytes: int) -> tuple[str, str, Any]:
    """Parse a WebSocket request frame in upstream's order; returns ``(id, method, params)``.

    A small frame that cannot break a bound skips the :func:`check_bounds` walk; every other
    frame, and any frame holding a non-finite number, is walked as before.
    """
    if isinstance(data, str):
        size = len(data) if data.isascii() else len(data.encode("utf-8"))
    else:
        size = len(data)
    if size > max_bytes:
        raise SmithersError(
            "INVALID_INPUT",
            f"Gateway RPC payload exceeds {max_bytes} bytes.",
            {"maxBytes": max_bytes},
        )
    frame: Any = None
    walked = False
    if _within_bounds(data):
        try:
            frame = loads_client(data, FRAME_NOT_JSON, parse_float=_finite_float, counted=True)
        except _NonFinite:
            walked = True
        else:
            clip_prompt(frame)
    else:
        walked = True
    if walked:
        frame = loads_client(data, FRAME_NOT_JSON)
        clip_prompt(frame)
        check_bounds(frame)
    if not isinstance(frame, dict) or frame.get("type") != "req":
        raise SmithersError("INVALID_INPUT", "Gateway frame must be a request object.")
    frame_id = frame.get("id")
    if not isinstance(frame_id, str) or len(frame_id) > MAX_ID:
        raise SmithersError(
            "INVALID_INPUT", f"Gateway frame id must be a string of at most {MAX_ID} characters."
        )
    method = check_method(frame.get("method"))
    return frame_id, method, frame.get("params")


def container_depth(value: Any) -> int:
    """Depth counting only objects and arrays (``{items:[{child:{leaf:true}}]}`` is 4)."""
    best = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            depth += 1
            best = max(best, depth)
            if depth <= MAX_DEPTH:
                stack.extend((v, depth) for v in item.values())
        elif isinstance(item, list):
            depth += 1
            best = max(best, depth)
            if depth <= MAX_DEPTH:
                stack.extend((v, depth) for v in item)
    return best


def validate_rpc_input(value: Any) -> dict[str, Any]:
    """``launchRun`` input: a non-object becomes ``{}``; <= 1 MiB; <= 32 nested containers."""
    if not isinstance(value, dict):
        return {}
    depth = container_depth(value)
    if depth > MAX_DEPTH:
        raise SmithersError(
            "INVALID_INPUT",
            f"Gateway RPC input exceeds the maximum nesting depth of {MAX_DEPTH}.",
            {"actualDepth": depth, "maxDepth": MAX_DEPTH},
        )
    try:
        size = len(jsonutil.dumps(value).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise SmithersError("INVALID_INPUT", "Gateway RPC input must be JSON.") from exc
    if size > MAX_BYTES:
        raise SmithersError(
            "INVALID_INPUT",
            f"Gateway RPC input exceeds {MAX_BYTES} bytes.",
            {"actualBytes": size, "maxBytes": MAX_BYTES},
        )
    return value


__all__ = [
    "MAX_ARRAY",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_ID",
    "MAX_METHOD",
    "MAX_STRING",
    "METHOD_RE",
    "check_bounds",
    "check_method",
    "clip_prompt",
    "container_depth",
    "loads_client",
    "parse_request_frame",
    "too_deep",
    "utf16_len",
    "validate_rpc_input",
]
