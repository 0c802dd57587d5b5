"""The WebSocket protocol the hosts serve with: uvicorn's ``websockets-sansio`` protocol, made
cheaper to keep open (issue 14).

An idle socket on uvicorn's protocol holds an ``asyncio.Queue`` and an ``asyncio.Event``
(five deques, about 3.7 KiB) and the parsed handshake request and response with their headers
(about 4 KiB) for as long as it stays open. This subclass swaps the queue and the event for
slotted equivalents that allocate only while something waits, and drops the handshake (and
empties its headers) once the accept has been written.

permessage-deflate (``ws_per_message_deflate``, off by default, D13) is negotiated without
context takeover in either direction: compressor and decompressor exist only while a
message is being encoded or decoded, so an idle compressed socket costs what an
uncompressed one does (uvicorn's own setting keeps about 40 KiB of zlib state per socket).

The uvicorn internals used (0.54 to 0.59): ``WebSocketsSansIOProtocol`` with its attributes
``config``, ``conn`` (whose ``available_extensions`` we set), ``queue`` (``put_nowait``,
``get``, ``empty``), ``writable`` (``set``, ``clear``, ``is_set``, ``wait``), ``request``
and ``response``. tests/test_ws_protocol.py exercises them, so an incompatible uvicorn fails
CI.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
except ImportError:  # pragma: no cover - no websockets: uvicorn picks what it has
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]


def deflate_factory() -> Any:
    """permessage-deflate without context takeover, small windows while a message is coded."""
    return ServerPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=12,
        client_max_window_bits=12,
        compress_settings={"memLevel": 5},
    )


def _park(owner: Inbox | Flag) -> tuple[asyncio.Future[None], list[asyncio.Future[None]]]:
    """A new future in ``owner``'s waiter list (the list is created by its first waiter)."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters = owner._waiters
    if waiters is None:
        waiters = owner._waiters = []
    waiters.append(waiter)
    return waiter, waiters


class Inbox:
    """The part of ``asyncio.Queue`` uvicorn uses, with nothing allocated while empty."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiters = self._waiters
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
                    break

    async def get(self) -> Any:
        while not self._items:
            waiter, waiters = _park(self)
            try:
                await waiter
            except BaseException:
                # woken and cancelled at once: hand the wake-up to another getter
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._wake_next(waiter)
                raise
            finally:
                waiters.remove(waiter)
                if not waiters and self._waiters is waiters:
                    self._waiters = None
        return self._items.pop(0)

    def _wake_next(self, skip: asyncio.Future[None]) -> None:
        for waiter in self._waiters or ():
            if waiter is not skip and not waiter.done():
                waiter.set_result(None)
                return


class Flag:
    """The part of ``asyncio.Event`` uvicorn uses, with nothing allocated while nobody waits."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter, waiters = _park(self)
        try:
            await waiter
        finally:
            if self._waiters is waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    self._waiters = None
        return True


if WebSocketsSansIOProtocol is not None:

    class HostWebSocketProtocol(WebSocketsSansIOProtocol):
        """uvicorn's sansio protocol with a lighter idle footprint (see the module docstring)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.queue = Inbox()  # type: ignore[assignment]
            self.writable = Flag(True)  # type: ignore[assignment]
            if self.config.ws_per_message_deflate:
                self.conn.available_extensions = [deflate_factory()]

        async def send(self, message: Any) -> None:
            await super().send(message)
            if message["type"] == "websocket.accept" and self.handshake_complete:
                # the handshake is written: nothing reads the request or response again.
                # websockets' parser generator keeps the request alive for the whole
                # connection (a local of its frame), so its headers are emptied in place.
                for name in ("request", "response"):
                    handshake = self.__dict__.pop(name, None)
                    if handshake is not None:
                        handshake.headers.clear()


def ws_protocol() -> Any:
    """The ``ws`` setting for uvicorn: our protocol class, or "auto" without websockets."""
    if WebSocketsSansIOProtocol is None:  # pragma: no cover
        return "auto"
    return HostWebSocketProtocol


__all__ = ["Flag", "Inbox", "deflate_factory", "ws_protocol"]
