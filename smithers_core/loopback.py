"""Whether a host name or address is loopback: the Host gate (D3) and the insecure-bind
check (D9) both ask."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1`` and ``::ffff:127.x``."""
    h = host.strip().lower().strip("[]")
    if h in LOOPBACK_NAMES or h.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


__all__ = ["LOOPBACK_NAMES", "is_loopback_host"]
