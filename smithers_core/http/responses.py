"""Compact JSON responses with the headers each surface promises (reference/server.md 1.3)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from smithers_core import jsonutil
from smithers_core.http.errors import HttpError, error_body

STRICT_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


def json_response(
    status: int, body: Any, *, strict: bool = True, headers: dict[str, str] | None = None
) -> Response:
    """``Content-Type: application/json`` (plus ``no-store``/``nosniff`` when ``strict``)."""
    out = dict(STRICT_HEADERS) if strict else {}
    if headers:
        out.update(headers)
    return Response(
        jsonutil.dumps(body).encode("utf-8"),
        status_code=status,
        media_type=None,
        headers={"content-type": "application/json", **out},
    )


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    strict: bool = True,
    headers: dict[str, str] | None = None,
) -> Response:
    return json_response(status, error_body(code, message, details), strict=strict, headers=headers)


def http_error_response(exc: HttpError, *, strict: bool = True) -> Response:
    return error_response(
        exc.status, exc.code, exc.message, exc.details, strict=strict, headers=exc.headers
    )
