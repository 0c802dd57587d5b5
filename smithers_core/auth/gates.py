"""Host, Origin and ambient-cookie gates (gateway reference 6.6), evaluated before credentials.

* Host gate (DNS rebinding): with no auth, unless ``insecure`` or
  ``SMITHERS_GATEWAY_TRUST_ANY_HOST`` is ``1``/``true``, a present, non-empty ``Host`` must be
  loopback.
* Origin gate: with auth, a present ``Origin`` must be in ``allowed_origins`` when that list
  is non-empty; with no auth, a present Origin (other than ``"null"``) must be loopback.
* Cookie gate: with auth, when the only credential is the ``smithers_session`` cookie, the
  Origin must be absent, ``"null"``, listed, or on the same host as ``Host``.

Each check returns the ``UNAUTHORIZED`` message of its failure, or None.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from smithers_core.auth.tokens import credential_is_cookie_only
from smithers_core.loopback import is_loopback_host

TRUST_ANY_HOST_ENV = "SMITHERS_GATEWAY_TRUST_ANY_HOST"


def trust_any_host(insecure: bool) -> bool:
    return insecure or os.environ.get(TRUST_ANY_HOST_ENV, "").strip().lower() in ("1", "true")


def host_name(host_header: str) -> str:
    """``example.com:80`` -> ``example.com``; ``[::1]:80`` -> ``::1``."""
    h = host_header.strip()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else h
    if h.count(":") == 1:
        return h.split(":", 1)[0]
    return h


def origin_host(origin: str) -> str | None:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    return parts.hostname


def check_gates(
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    *,
    auth_enabled: bool,
    allowed_origins: Sequence[str] = (),
    insecure: bool = False,
) -> str | None:
    """Run the three gates; the failure message, or None when the request may proceed."""
    host = headers.get("host")
    origin = headers.get("origin")
    if not auth_enabled:
        trusted = trust_any_host(insecure)  # read here only: the environment lookup costs
        if not trusted and host and not is_loopback_host(host_name(host)):
            return "Host is not allowed"
        if origin and origin != "null" and not trusted:
            name = origin_host(origin)
            if name is None or not is_loopback_host(name):
                return "Origin is not allowed"
        return None
    if allowed_origins and origin and origin not in allowed_origins:
        return "Origin is not allowed"
    if credential_is_cookie_only(headers, cookies) and origin and origin != "null":
        same_host = host is not None and origin_host(origin) == host_name(host).lower()
        if origin not in allowed_origins and not same_host:
            return "Origin is not allowed for cookie-authenticated requests"
    return None


__all__ = ["TRUST_ANY_HOST_ENV", "check_gates", "host_name", "origin_host", "trust_any_host"]
