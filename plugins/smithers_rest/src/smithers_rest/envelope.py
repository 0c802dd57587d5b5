"""The facade's envelopes (reference 9.2): ``{ok: true, data[, seq]}`` and
``{ok: false, error: {code, message[, details]}}`` with the code's status (reference 2.4)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from smithers_core.errors import SmithersError
from smithers_core.gateway.wire import rpc_error, status_for_code
from smithers_core.http.responses import GATEWAY, send_json

log = logging.getLogger("smithers.rest")

ROUTE_NOT_FOUND = SmithersError("NOT_FOUND", "Route not found")


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{ok: false, error}``; also what core answers the facade's auth failures with."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = dict(details)
    return {"ok": False, "error": error}


def failure(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and body of any failure; unexpected exceptions are logged, answered 500."""
    if not isinstance(exc, SmithersError):
        log.error("REST facade request failed", exc_info=exc)
    error = rpc_error(exc)
    return status_for_code(error.code), error_body(error.code, error.message, error.details)


async def send_failure(send: Any, exc: BaseException) -> None:
    status, body = failure(exc)
    await send_json(send, status, body, GATEWAY)


async def send_ok(send: Any, data: Any, seq: int | None = None) -> None:
    body: dict[str, Any] = {"ok": True, "data": data}
    if seq is not None:
        body["seq"] = seq
    await send_json(send, 200, body, GATEWAY)


__all__ = ["ROUTE_NOT_FOUND", "error_body", "failure", "send_failure", "send_ok"]
