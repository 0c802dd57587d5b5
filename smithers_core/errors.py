"""One error type for every surface: a stable code, a message and optional details."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

MAX_ISSUE_INPUT = 128
"""An issue's echoed ``input`` is kept only when its JSON is at most this long."""


class SmithersError(Exception):
    """A typed, user-facing error.

    ``code`` is the upstream wire code (``UNAUTHORIZED``, ``RUN_NOT_FOUND``, ...); hosts map it
    to their own status codes and envelopes and never build error JSON by hand.
    """

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The ``{code, message, details?}`` object used inside every error envelope."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"SmithersError({self.code!r}, {self.message!r}, {self.details!r})"


def sole_error(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, else ``exc``.

    A task group wraps even a lone failure in an ``ExceptionGroup``; hosts unwrap start-up
    failures with this so callers see the ``SmithersError`` itself.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def validation_issues(exc: ValidationError) -> list[dict[str, Any]]:
    """A pydantic error's issues for an error's details: no docs URL, no context, and the
    offending ``input`` echoed only when short (a client must not get its megabyte back)."""
    issues: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False, include_context=False):
        issue: dict[str, Any] = dict(error)
        if "input" in issue:
            try:
                short = len(json.dumps(issue["input"], default=str)) <= MAX_ISSUE_INPUT
            except (TypeError, ValueError):
                short = False
            if not short:
                del issue["input"]
        issues.append(issue)
    return issues
