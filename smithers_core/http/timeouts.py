"""Header and request timeouts enforced at the protocol level (D9).

uvicorn has no headers timeout, so this subclasses its h11 protocol: a timer runs from the first
byte of a request (or the connection's start) until its headers are parsed
(``headers_timeout``), another until its body is complete (``request_timeout``). On expiry the
client gets 408 ``REQUEST_TIMEOUT`` when no response has started, then the connection closes.
Responses are never limited, so SSE and WebSocket streams are unaffected. Written against
uvicorn 0.54's h11 protocol; the hooks used are ``connection_made``, ``data_received``,
``handle_events``, ``on_response_complete`` and ``connection_lost`` (tests/test_http_limits.py
exercises them, so an incompatible uvicorn fails CI).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from smithers_core import jsonutil
from smithers_core.http.errors import error_body


def _timeout_bytes() -> bytes:
    body = jsonutil.dumps(
        error_body("REQUEST_TIMEOUT", "The request was not received in time")
    ).encode()
    head = (
        b"HTTP/1.1 408 Request Timeout\r\n"
        b"content-type: application/json\r\n"
        b"cache-control: no-store\r\n"
        b"x-content-type-options: nosniff\r\n"
        b"connection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


TIMEOUT_RESPONSE = _timeout_bytes()


class TimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with ``headers_timeout_s`` and ``request_timeout_s``."""

    headers_timeout_s: float | None = None
    request_timeout_s: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_timer: asyncio.TimerHandle | None = None
        self._request_timer: asyncio.TimerHandle | None = None

    # -- timers -----------------------------------------------------------------------------
    def _arm(self) -> None:
        if self._headers_timer is None and self.headers_timeout_s is not None:
            self._headers_timer = self.loop.call_later(self.headers_timeout_s, self._expired)
        if self._request_timer is None and self.request_timeout_s is not None:
            self._request_timer = self.loop.call_later(self.request_timeout_s, self._expired)

    def _cancel_headers(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _cancel_request(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _expired(self) -> None:
        self._cancel_headers()
        self._cancel_request()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        started = cycle is not None and cycle.response_started and not cycle.response_complete
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if not started:
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()

    # -- protocol hooks -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm()
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if state is not h11.IDLE:
            self._cancel_headers()
        if state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED) or (
            state is h11.IDLE and self.cycle is not None and self.cycle.response_complete
        ):
            self._cancel_request()

    def on_response_complete(self) -> None:
        self._cancel_headers()
        self._cancel_request()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_headers()
        self._cancel_request()
        super().connection_lost(exc)


def timeout_protocol(
    headers_timeout_ms: int | None, request_timeout_ms: int | None
) -> type[TimeoutH11Protocol]:
    """A protocol class bound to these limits (either may be None for no limit)."""
    return type(
        "BoundTimeoutH11Protocol",
        (TimeoutH11Protocol,),
        {
            "headers_timeout_s": None if not headers_timeout_ms else headers_timeout_ms / 1000,
            "request_timeout_s": None if not request_timeout_ms else request_timeout_ms / 1000,
        },
    )
