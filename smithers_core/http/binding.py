"""Run an ASGI app on uvicorn inside the current event loop, bound before returning (D9).

``proxy_headers`` is always off: the peer is the socket peer, never a forwarded header.
Hosts bind 127.0.0.1 unless told otherwise; a TCP port of 0 picks a free port.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.abc
import uvicorn

from smithers_core.errors import SmithersError
from smithers_core.http.timeouts import http_impl, timeout_protocol
from smithers_core.http.unix import bind_unix, remove_if_ours
from smithers_core.http.websocket_protocol import ws_protocol

log = logging.getLogger("smithers.http")


class HostServer(uvicorn.Server):
    """uvicorn without its signal capture: the host decides what signals do."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class BoundServer:
    """A running uvicorn server: where it listens and how to stop it."""

    host: str | None
    port: int | None
    path: str | None
    server: uvicorn.Server
    _done: anyio.Event

    @property
    def url(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = self.host or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def close(self, grace_s: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish, and wait for the server to exit.

        With ``grace_s``, connections still open after that many seconds are dropped.
        """
        self.server.should_exit = True
        if grace_s is not None:
            with anyio.move_on_after(grace_s):
                await self._done.wait()
            self.server.force_exit = True
        await self._done.wait()


def bind_failed(host: str, port: int, exc: OSError) -> SmithersError:
    """``SERVER_BIND_FAILED`` in one line that names the address and the port."""
    if exc.errno == errno.EADDRINUSE:
        why = "the port is already in use (another server running there? pick another port)"
    else:
        why = (exc.strerror or str(exc)).lower()
    return SmithersError(
        "SERVER_BIND_FAILED",
        f"Cannot listen on {host} port {port}: {why}",
        {"host": host, "port": port},
    )


def check_port_free(host: str, port: int) -> None:
    """Raise ``SERVER_BIND_FAILED`` now if ``host:port`` cannot be bound (port 0 always can).

    For callers that would do other work before binding (``smithers up --serve`` launches
    a run first): the real bind can still lose a race, and then fails the same way.
    """
    if port == 0:
        return
    _bind_socket(host, port, None).close()


def _bind_socket(host: str, port: int, path: str | None) -> socket.socket:
    if path is not None:
        sock = bind_unix(path)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted sockets (no 40 ms
        # delayed-ACK stall on two-part responses)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise bind_failed(host, port, exc) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve_app(
    tg: anyio.abc.TaskGroup,
    app: Any,
    *,
    host: str | None = None,
    port: int = 0,
    path: str | None = None,
    ws_per_message_deflate: bool = False,
    ws_max_size: int = 16 * 1024 * 1024,
    timeout_keep_alive: int = 5,
    http_protocol: Any = None,
    http: str | None = None,
    lifespan: Literal["auto", "on", "off"] = "on",
    headers_timeout_ms: int | None = None,
    request_timeout_ms: int | None = None,
    **config: Any,
) -> BoundServer:
    """Start ``app`` on uvicorn in ``tg``; returns once the socket is bound and serving.

    ``http`` picks the parser (``httptools`` by default, ``h11``, or ``$SMITHERS_HTTP``; see
    :func:`~smithers_core.http.timeouts.http_impl`) unless ``http_protocol`` gives a protocol
    class. ``headers_timeout_ms`` / ``request_timeout_ms`` (D9) use that parser's subclass in
    :mod:`smithers_core.http.timeouts`, which answers 408 ``REQUEST_TIMEOUT`` and closes.
    """
    if http_protocol is None:
        impl = http_impl(http)
        if headers_timeout_ms or request_timeout_ms:
            http_protocol = timeout_protocol(headers_timeout_ms, request_timeout_ms, impl)
        else:
            http_protocol = impl
    bind_host = host or "127.0.0.1"
    sock = _bind_socket(bind_host, port, path)
    inode = os.lstat(path).st_ino if path is not None else 0  # the socket file we own
    config.setdefault("ws", ws_protocol())  # lighter idle sockets, cheap deflate
    cfg = uvicorn.Config(
        app,
        proxy_headers=False,
        forwarded_allow_ips=None,
        server_header=False,
        date_header=True,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        ws_per_message_deflate=ws_per_message_deflate,
        ws_max_size=ws_max_size,
        timeout_keep_alive=timeout_keep_alive,
        http=http_protocol,
        **config,
    )
    server = HostServer(cfg)
    done = anyio.Event()
    started = anyio.Event()

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()
            if path is not None:
                remove_if_ours(path, inode)
            started.set()
            done.set()

    tg.start_soon(run)
    while not server.started and not done.is_set():
        await anyio.sleep(0.005)
    if done.is_set() and not server.started:
        raise SmithersError("SERVER_START_FAILED", "The HTTP server failed to start")
    bound_port = None if path is not None else int(sock.getsockname()[1])
    return BoundServer(bind_host if path is None else None, bound_port, path, server, done)
