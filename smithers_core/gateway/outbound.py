"""The gateway-wide outbound budget: bytes queued for every socket together (issue 13, item 2).

Each socket's own cap (``max_outbound_bytes``, reference 4.4) bounds one slow reader; this
bounds all of them: when queuing a frame would take the total over
``max_outbound_bytes_total``, the socket with the most bytes queued (the slowest reader,
possibly the one being written to) is closed with 1013 "event backpressure" until the frame
fits. Bytes already handed to a transport are not in the total: each socket keeps at most the
transport's high-water mark plus one flush there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class OutboundBudget:
    """Queued bytes of every socket of one gateway against one limit."""

    __slots__ = ("connections", "limit", "total")

    def __init__(self, limit: int, connections: Iterable[Any] = ()) -> None:
        self.limit = limit
        self.total = 0
        self.connections: Iterable[Any] = connections

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
