"""HTTP-level errors: a status, an upstream wire code, a message and optional details."""

from __future__ import annotations

from typing import Any

from smithers_core.errors import SmithersError


class HttpError(SmithersError):
    """A :class:`SmithersError` that already knows its HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code, message, details)
        self.status = status
        self.headers = headers or {}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope ``{"error": {"code", "message", "details"?}}``."""
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return {"error": err}
