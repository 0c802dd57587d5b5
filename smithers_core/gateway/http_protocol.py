"""The gateway's HTTP protocol class: the shared timeout protocol (D9) on httptools or h11,
plus ``TCP_NODELAY``.

asyncio only sets ``TCP_NODELAY`` on accepted sockets whose listening socket was created
with ``proto=IPPROTO_TCP``; without it every response written in two parts (headers, then
body) waits out the peer's delayed ACK (about 40 ms on Linux). Setting it per connection
here keeps the gateway's latency independent of how the listening socket was made.

``refuse_peer(host)`` (the pre-auth pool's :meth:`~smithers_core.gateway.preauth.PreAuthPool.
saturated`) drops a new connection from a peer that already holds all its pre-auth slots
before a byte of HTTP is parsed: a flood from one address costs an accept and an abort per
connection instead of a parsed upgrade and a 503, so it cannot fill the accept queue that
other peers' logins wait in (issue 13 item 1).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from smithers_core.http.timeouts import HttpImpl, timeout_protocol


def gateway_protocol(
    headers_timeout_ms: int | None,
    request_timeout_ms: int | None,
    refuse_peer: Callable[[str], bool] | None = None,
    http: HttpImpl = "httptools",
) -> type[Any]:
    base = timeout_protocol(headers_timeout_ms, request_timeout_ms, http)

    def connection_made(self: Any, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        base.connection_made(self, transport)
        if refuse_peer is not None:
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple) and refuse_peer(str(peer[0])):
                transport.abort()

    name = "GatewayHttpToolsProtocol" if http == "httptools" else "GatewayH11Protocol"
    return type(name, (base,), {"connection_made": connection_made})


__all__ = ["gateway_protocol"]
