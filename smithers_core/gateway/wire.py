"""The gateway's wire: response and event frames, the HTTP status of each error code, and the
one way any exception becomes an RPC error (reference 2.2-2.4)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from smithers_core import jsonutil
from smithers_core.errors import SmithersError
from smithers_core.gateway.limits import MAX_ID
from smithers_core.http.body import BodyTooLarge, ClientDisconnected

API_VERSION = "v1"
API_VERSION_HEADER = (b"x-smithers-api-version", b"v1")

_STATUS: dict[str, int] = {}
for _status, _codes in (
    (401, "UNAUTHORIZED Unauthorized"),
    (403, "FORBIDDEN Forbidden"),
    (
        404,
        "NOT_FOUND METHOD_NOT_FOUND RunNotFound ScoreNotFound NodeNotFound AttemptNotFound"
        " IterationNotFound NodeHasNoOutput EXTENSION_METHOD_NOT_FOUND",
    ),
    (
        400,
        "INVALID_REQUEST InvalidRequest INVALID_FRAME INVALID_INPUT InvalidInput"
        " PROTOCOL_UNSUPPORTED InvalidRunId InvalidNodeId InvalidIteration InvalidDelta"
        " InvalidFrameNo ConfirmationRequired FrameOutOfRange SeqOutOfRange SSRF_BLOCKED"
        " INVALID_JSON",
    ),
    (
        409,
        "AttemptNotFinished Busy AlreadyDecided RUN_NOT_ACTIVE RUN_ACTIVE CONFLICT"
        " REVISION_CONFLICT",
    ),
    (413, "DiffTooLarge PayloadTooLarge PAYLOAD_TOO_LARGE"),
    (429, "RateLimited BackpressureDisconnect QUOTA_EXCEEDED"),
    (501, "UnsupportedSandbox"),
):
    for _code in _codes.split():
        _STATUS[_code] = _status


def status_for_code(code: str) -> int:
    """``statusForRpcError``; everything unlisted is 500 (``EXTENSION_METHOD_NOT_FOUND`` is
    404 by D7, and ``INVALID_JSON`` 400 as upstream's HTTP RPC answers it)."""
    return _STATUS.get(code, 500)


def error_object(exc: SmithersError) -> dict[str, Any]:
    """``{version, code, message, ...details}``: details are spread into the error object."""
    out: dict[str, Any] = {"version": API_VERSION, "code": exc.code, "message": exc.message}
    if exc.details:
        for key, value in exc.details.items():
            if key not in out:
                out[key] = value
    return out


_TRANSLATE = {
    "RUN_NOT_FOUND": "NOT_FOUND",
    "WORKFLOW_NOT_FOUND": "NOT_FOUND",
    "RUN_ALREADY_EXISTS": "CONFLICT",
    "ENGINE_CLOSED": "SERVER_ERROR",
    "WORKFLOW_LOAD_FAILED": "SERVER_ERROR",
}


def translate(exc: SmithersError) -> SmithersError:
    """Engine and run-service codes -> this surface's codes (the gateway's table of D8)."""
    code = _TRANSLATE.get(exc.code)
    if code is None:
        return exc
    if exc.code == "RUN_NOT_FOUND":
        return SmithersError(code, exc.message)
    return SmithersError(code, exc.message, exc.details)


def rpc_error(exc: BaseException) -> SmithersError:
    """The RPC error of any exception, chosen by its type (never by its message): a
    ``SmithersError`` as raised, a body over the limit ``PayloadTooLarge``, a client gone
    mid-body ``ConnectionClosed``, anything else ``SERVER_ERROR``."""
    if isinstance(exc, BodyTooLarge):
        return SmithersError("PayloadTooLarge", exc.message, {"maxBytes": exc.max_bytes})
    if isinstance(exc, ClientDisconnected):
        return SmithersError("ConnectionClosed", "Client disconnected")
    if isinstance(exc, SmithersError):
        return exc
    return SmithersError("SERVER_ERROR", str(exc) or type(exc).__name__)


def ok_frame(frame_id: str, payload: Any) -> dict[str, Any]:
    return {
        "type": "res",
        "id": frame_id,
        "ok": True,
        "apiVersion": API_VERSION,
        "payload": payload,
    }


def ok_text(frame_id: str, payload_json: str) -> str:
    """``encode(ok_frame(frame_id, payload))`` for a payload already encoded as JSON."""
    return (
        '{"type":"res","id":'
        + jsonutil.dumps(frame_id)
        + ',"ok":true,"apiVersion":"v1","payload":'
        + payload_json
        + "}"
    )


def error_frame(frame_id: str, exc: SmithersError) -> dict[str, Any]:
    return {
        "type": "res",
        "id": frame_id,
        "ok": False,
        "apiVersion": API_VERSION,
        "error": error_object(exc),
    }


def request_id_of(headers: Mapping[str, str]) -> str:
    """``X-Request-Id`` (clipped to the frame id limit) or a fresh UUID: an HTTP answer's id."""
    return (headers.get("x-request-id") or str(uuid.uuid4()))[:MAX_ID]


def encode(frame: Any) -> str:
    return jsonutil.dumps(frame)


_EVENT_HEADS: dict[str, str] = {}


def event_text(name: str, payload_json: str, seq: int, state_version: int) -> str:
    """An event frame, built by concatenation so a broadcast encodes its payload once."""
    head = _EVENT_HEADS.get(name)
    if head is None:
        head = '{"type":"event","event":' + jsonutil.dumps(name) + ',"payload":'
        if len(_EVENT_HEADS) < 1024:  # event names are a small fixed set; stay bounded
            _EVENT_HEADS[name] = head
    return (
        head
        + payload_json
        + ',"seq":'
        + str(seq)
        + ',"stateVersion":'
        + str(state_version)
        + ',"apiVersion":"v1"}'
    )


__all__ = [
    "API_VERSION",
    "API_VERSION_HEADER",
    "encode",
    "error_frame",
    "error_object",
    "event_text",
    "ok_frame",
    "ok_text",
    "request_id_of",
    "rpc_error",
    "status_for_code",
    "translate",
]
