"""Header and request timeouts enforced at the protocol level (D9), on httptools and on h11.

uvicorn has no headers timeout, so this subclasses its HTTP protocols: a timer runs from the
first byte of a request (or the connection's start) until its headers are parsed
(``headers_timeout``), another until its body is complete (``request_timeout``). On expiry the
client gets 408 ``REQUEST_TIMEOUT`` when no response has started, then the connection closes.
Responses are never limited, so SSE and WebSocket streams are unaffected (a connection handed
to a WebSocket protocol drops both timers).

The uvicorn internals used (tested on 0.55; tests/test_http_limits.py exercises
both protocols, so an incompatible uvicorn fails CI): the classes ``HttpToolsProtocol`` and
``H11Protocol``, their attributes ``loop``, ``transport``, ``cycle`` (with ``response_started``,
``response_complete``, ``disconnected``, ``message_event``) and h11's ``conn``; the hooks
``connection_made``, ``data_received``, ``on_response_complete``, ``connection_lost``, h11's
``handle_events`` and httptools' parser callbacks ``on_message_begin``, ``on_headers_complete``
and ``on_message_complete``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

from smithers_core import jsonutil
from smithers_core.errors import SmithersError
from smithers_core.http.errors import error_body

HttpImpl = Literal["httptools", "h11"]
HTTP_ENV = "SMITHERS_HTTP"


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


def http_impl(choice: str | None = None) -> HttpImpl:
    """The HTTP parser to serve with: ``choice``, else ``$SMITHERS_HTTP``, else httptools when
    it is installed (it is a dependency; h11 is the fallback on platforms without a wheel)."""
    value = (choice or os.environ.get(HTTP_ENV) or "").strip().lower()
    if value in ("", "auto"):
        try:
            import httptools  # noqa: F401
        except ImportError:  # pragma: no cover - httptools is a dependency
            return "h11"
        return "httptools"
    if value not in ("httptools", "h11"):
        raise SmithersError(
            "INVALID_INPUT", f"Unknown HTTP implementation {value!r} (httptools or h11)"
        )
    return value  # type: ignore[return-value]


class TimeoutMixin:
    """The two limits; the protocol subclasses below say when a request starts and ends.

    One timer per connection, not two per request: a request records when it began, and the
    timer, when it fires, compares that with the limits and either answers 408 or re-arms for
    the current request's deadline. A keep-alive connection serving many short requests
    therefore schedules about one timer per ``headers_timeout``, not two per request.
    """

    headers_timeout_s: float | None = None
    request_timeout_s: float | None = None
    _timer: asyncio.TimerHandle | None = None
    _began: float | None = None  # when the current request began; None between requests
    _headers_done = False
    _body_done = False
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def _due(self, began: float) -> float | None:
        due = None
        if self.headers_timeout_s is not None and not self._headers_done:
            due = began + self.headers_timeout_s
        if self.request_timeout_s is not None and not self._body_done:
            end = began + self.request_timeout_s
            due = end if due is None else min(due, end)
        return due

    def _arm(self) -> None:
        if self._began is not None:
            return
        self._began = began = self.loop.time()
        self._headers_done = self._body_done = False
        if self._timer is None:
            due = self._due(began)
            if due is not None:
                self._timer = self.loop.call_at(due, self._check)

    def _cancel_headers(self) -> None:
        self._headers_done = True

    def _cancel_request(self) -> None:
        self._body_done = True

    def _cancel_all(self) -> None:
        self._began = None

    def _drop_timer(self) -> None:
        self._began = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _handed_over(self) -> bool:
        """True once the connection belongs to a WebSocket protocol (no request to time)."""
        protocol: object = self.transport.get_protocol()
        return protocol is not self

    def _cancel_if_upgraded(self) -> None:
        if self._handed_over():
            self._drop_timer()

    def _check(self) -> None:
        self._timer = None
        began = self._began
        if began is None or self.transport.is_closing() or self._handed_over():
            return
        due = self._due(began)
        if due is None:
            return
        if self.loop.time() + 0.001 < due:  # a later request's deadline: wait for it
            self._timer = self.loop.call_at(due, self._check)
            return
        self._expired()

    def _expired(self) -> None:
        self._drop_timer()
        cycle = self.cycle
        started = cycle is not None and cycle.response_started and not cycle.response_complete
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if not started:
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()


def _h11_base() -> type[Any]:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimeoutH11Protocol(TimeoutMixin, H11Protocol):
        """uvicorn's h11 protocol with ``headers_timeout_s`` and ``request_timeout_s``."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE:
                self._arm()
            super().data_received(data)
            self._cancel_if_upgraded()

        def handle_events(self) -> None:
            super().handle_events()
            state = self.conn.their_state
            if state is not h11.IDLE:
                self._cancel_headers()
            if state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
                self._cancel_request()

        def on_response_complete(self) -> None:
            self._cancel_all()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._drop_timer()
            super().connection_lost(exc)

    return TimeoutH11Protocol


def _httptools_base() -> type[Any]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TimeoutHttpToolsProtocol(TimeoutMixin, HttpToolsProtocol):
        """uvicorn's httptools protocol with ``headers_timeout_s`` and ``request_timeout_s``."""

        _in_message = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if not self._in_message:
                self._arm()
            super().data_received(data)
            self._cancel_if_upgraded()

        def on_message_begin(self) -> None:
            self._in_message = True
            self._arm()
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._cancel_headers()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_message = False
            self._cancel_request()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self._cancel_all()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._drop_timer()
            super().connection_lost(exc)

    return TimeoutHttpToolsProtocol


_BASES: dict[str, type[Any]] = {}


def protocol_base(http: HttpImpl) -> type[Any]:
    """The timeout protocol class for ``http`` (built once, on first use)."""
    base = _BASES.get(http)
    if base is None:
        base = _BASES[http] = _httptools_base() if http == "httptools" else _h11_base()
    return base


def timeout_protocol(
    headers_timeout_ms: int | None, request_timeout_ms: int | None, http: HttpImpl = "h11"
) -> type[Any]:
    """A protocol class on ``http`` bound to these limits (either may be None for no limit)."""
    return type(
        "BoundTimeoutHttpToolsProtocol" if http == "httptools" else "BoundTimeoutH11Protocol",
        (protocol_base(http),),
        {
            "headers_timeout_s": None if not headers_timeout_ms else headers_timeout_ms / 1000,
            "request_timeout_s": None if not request_timeout_ms else request_timeout_ms / 1000,
        },
    )
