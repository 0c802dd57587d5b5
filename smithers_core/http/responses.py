"""The one set of JSON response helpers every host uses (reference/server.md 1.3, gateway 9).

A :class:`Reply` is a finished response (status, headers, body bytes) and an ASGI app, so a
handler can return it and the host sends it with ``await reply(scope, receive, send)``.
Header sets: :data:`PLAIN` (``Content-Type`` only, the serve app), :data:`STRICT` (plus
``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``, start_server) and
:data:`GATEWAY` (plus ``X-Smithers-API-Version: v1``).
"""

from __future__ import annotations

from typing import Any, Protocol

from smithers_core import jsonutil
from smithers_core.http.asgi import Headers, respond
from smithers_core.http.errors import HttpError, error_body

PLAIN: Headers = [(b"content-type", b"application/json")]
STRICT: Headers = [
    *PLAIN,
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]
GATEWAY: Headers = [*STRICT, (b"x-smithers-api-version", b"v1")]


class Response(Protocol):
    """Anything a host handler may return: an ASGI app that knows its status."""

    status_code: int

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


class Reply:
    """A whole response held in memory; calling it sends it."""

    __slots__ = ("body", "headers", "status_code")

    def __init__(self, status_code: int, body: bytes, headers: Headers) -> None:
        self.status_code = status_code
        self.body = body
        self.headers = headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await respond(send, self.status_code, self.body, self.headers)


def json_reply(status: int, value: Any, headers: Headers = STRICT) -> Reply:
    """``value`` encoded once as compact JSON."""
    return Reply(status, jsonutil.dumps(value).encode("utf-8"), headers)


async def send_json(send: Any, status: int, value: Any, headers: Headers = STRICT) -> None:
    """Send ``value`` as a JSON response straight through an ASGI ``send``."""
    await respond(send, status, jsonutil.dumps(value).encode("utf-8"), headers)


def json_response(
    status: int, body: Any, *, strict: bool = True, headers: dict[str, str] | None = None
) -> Reply:
    """A JSON reply with :data:`STRICT` (or :data:`PLAIN`) headers plus ``headers``."""
    base = STRICT if strict else PLAIN
    if headers:
        base = [*base, *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())]
    return json_reply(status, body, base)


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    strict: bool = True,
    headers: dict[str, str] | None = None,
) -> Reply:
    """The host error envelope ``{"error": {"code", "message", "details"?}}``."""
    return json_response(status, error_body(code, message, details), strict=strict, headers=headers)


def http_error_response(exc: HttpError, *, strict: bool = True) -> Reply:
    return error_response(
        exc.status, exc.code, exc.message, exc.details, strict=strict, headers=exc.headers
    )


__all__ = [
    "GATEWAY",
    "PLAIN",
    "STRICT",
    "Reply",
    "Response",
    "error_response",
    "http_error_response",
    "json_reply",
    "json_response",
    "send_json",
]
