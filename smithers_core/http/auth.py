"""Static bearer-token checks of ``start_server`` and the serve app (reference/server.md 1.5).

Comparisons are constant time (``hmac.compare_digest``); the accepted headers differ by surface.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

UNAUTHORIZED_MESSAGE = "Missing or invalid authorization token"


def resolve_token(auth_token: str | None) -> str | None:
    """The option, else ``SMITHERS_API_KEY``; an empty string (either way) disables auth."""
    token = auth_token if auth_token is not None else os.environ.get("SMITHERS_API_KEY")
    return token or None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _strip_bearer(value: str) -> str:
    return value[7:] if value[:7].lower() == "bearer " else value


def server_authorized(headers: Mapping[str, str], token: str) -> bool:
    """start_server: ``Authorization`` if present (optional Bearer), else ``x-smithers-key``;
    ``headers`` are lower-cased (``scope_headers``)."""
    raw = headers.get("authorization")
    if raw is None:
        raw = headers.get("x-smithers-key")
    if raw is None:
        return False
    given = _strip_bearer(raw)
    return bool(given) and _same(given, token)


def serve_authorized(headers: Mapping[str, str], token: str) -> bool:
    """Serve app: ``x-smithers-key`` exactly, or ``Authorization`` with an optional Bearer."""
    key = headers.get("x-smithers-key")
    if key is not None and _same(key, token):
        return True
    raw = headers.get("authorization")
    if raw is None:
        return False
    given = _strip_bearer(raw)
    return bool(given) and _same(given, token)
