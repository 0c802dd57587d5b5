"""The gateway-wide outbound budget: bytes queued for every socket together (issue 13, item 2).

Each socket's own cap (``max_outbound_bytes``, reference 4.4) bounds one slow reader; this
bounds all of them: when queuing a frame would take the total over
``max_outbound_bytes_total``, the socket with the most bytes queued (the slowest reader,
possibly the one being written to) is closed with 1013 "event backpressure" until the frame
fits. Bytes already handed to a transport are not in the total: each socket keeps at most the
transport's high-water mark plus one flush there.

The frames a backpressure close drops are freed at once, but glibc keeps freed memory in its
free lists, so the process's RSS would stay at its peak. Once 8 MiB or more have been dropped,
``malloc_trim(0)`` runs a second later (once, however many sockets closed meanwhile) and
gives the free pages back to the system; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable, Iterable
from typing import Any

TRIM_AFTER_BYTES = 8 * 1024 * 1024
TRIM_DELAY_S = 1.0


def _malloc_trim() -> Callable[[], Any] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return lambda: trim(0)


_TRIM = _malloc_trim()


class OutboundBudget:
    """Queued bytes of every socket of one gateway against one limit."""

    __slots__ = ("_dropped", "_trim_pending", "connections", "limit", "total")

    def __init__(self, limit: int, connections: Iterable[Any] = ()) -> None:
        self.limit = limit
        self.total = 0
        self.connections: Iterable[Any] = connections
        self._dropped = 0
        self._trim_pending = False

    def dropped(self, nbytes: int) -> None:
        """A backpressure close dropped ``nbytes`` of queued frames (see the module doc)."""
        self._dropped += nbytes
        if self._dropped >= TRIM_AFTER_BYTES and not self._trim_pending and _TRIM is not None:
            self._trim_pending = True
            asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim)

    def _trim(self) -> None:
        self._trim_pending = False
        self._dropped = 0
        if _TRIM is not None:
            _TRIM()

    def relieve(self, conn: Any, size: int) -> bool:
        """Close the sockets with the largest queues until ``size`` more bytes for ``conn``
        fit; False when ``conn`` itself had to go."""
        while self.total + size > self.limit:
            victim, most = conn, conn.queued_bytes + size
            for other in self.connections:
                if not other.closed and other.queued_bytes > most:
                    victim, most = other, other.queued_bytes
            victim.overflow()
            if victim is conn:
                return False
        return True


__all__ = ["OutboundBudget"]
