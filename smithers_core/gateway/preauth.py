"""Pre-auth WebSocket slots: a per-peer cap inside the gateway-wide pool (issue 13, item 1).

A socket holds a slot from its upgrade until ``connect`` succeeds or the socket ends. One
peer address holds at most ``max_pre_auth_connections_per_peer`` slots; a peer over that is
refused at the upgrade with the 503 of reference 4.1. When the gateway-wide pool
(``max_pre_auth_connections``) is full, a newcomer whose peer holds fewer slots than the
peer holding the most takes that peer's oldest slot: the evicted socket is closed with 1013
"try again later". A flood from a few peers therefore never refuses a client from another
peer; a flood from many peers shares the pool out evenly, and a newcomer is refused only when
no peer holds more slots than its own.
"""

from __future__ import annotations

from typing import Any


def peer_key(peer: Any) -> str:
    """The address a slot is counted against: the peer's host, ``"unix"``, or ``"?"``."""
    if isinstance(peer, tuple):
        return str(peer[0])
    return str(peer) if peer else "?"


class PreAuthPool:
    """Pre-auth sockets by peer, oldest first."""

    __slots__ = ("_peers", "count", "limit", "per_peer")

    def __init__(self, limit: int, per_peer: int) -> None:
        self.limit = limit
        self.per_peer = per_peer
        self.count = 0
        self._peers: dict[str, dict[Any, None]] = {}

    def held(self, key: str) -> int:
        """Slots held by peer ``key``."""
        slots = self._peers.get(key)
        return len(slots) if slots else 0

    def _victim_peer(self, key: str) -> str | None:
        own = self.held(key)
        best, most = None, own
        for other, slots in self._peers.items():
            if len(slots) > most:
                best, most = other, len(slots)
        return best

    def saturated(self, key: str) -> bool:
        """True when peer ``key`` holds all its slots (its new connections are dropped)."""
        slots = self._peers.get(key)
        return slots is not None and len(slots) >= self.per_peer

    def refuses(self, key: str) -> bool:
        """True when a new socket from ``key`` gets no slot (the 503 at the upgrade)."""
        if self.held(key) >= self.per_peer:
            return True
        return self.count >= self.limit and self._victim_peer(key) is None

    def add(self, key: str, conn: Any) -> Any:
        """Give ``conn`` a slot (after :meth:`refuses` said no); returns the socket whose slot
        it took when the pool was full, else None. The caller closes that socket."""
        evicted = None
        if self.count >= self.limit:
            victim_key = self._victim_peer(key)
            if victim_key is not None:
                evicted = next(iter(self._peers[victim_key]))
                self.discard(evicted, victim_key)
        self._peers.setdefault(key, {})[conn] = None
        self.count += 1
        return evicted

    def discard(self, conn: Any, key: str) -> bool:
        """Release ``conn``'s slot; False when it held none (already released or evicted)."""
        slots = self._peers.get(key)
        if slots is None or conn not in slots:
            return False
        del slots[conn]
        if not slots:
            del self._peers[key]
        self.count -= 1
        return True

    def clear(self) -> None:
        self._peers.clear()
        self.count = 0


__all__ = ["PreAuthPool", "peer_key"]
