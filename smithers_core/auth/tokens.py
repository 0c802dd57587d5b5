"""Credentials: how they are extracted (gateway reference 6.1) and their default ``tokenId``.

Order: header ``x-smithers-key`` (raw value), then ``Authorization`` (a case-insensitive
``Bearer `` prefix is stripped, otherwise the raw value is used), then the
``smithers_session`` cookie (URL-decoded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from urllib.parse import unquote

SESSION_COOKIE = "smithers_session"


def parse_cookies(header: str | None) -> dict[str, str]:
    """``Cookie`` header -> ``{name: raw value}`` (first occurrence wins)."""
    out: dict[str, str] = {}
    if not header:
        return out
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip()
    return out


def bearer_token(headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
    """The request's credential, or None. ``headers`` keys are lower-case."""
    key = headers.get("x-smithers-key")
    if key:
        return key
    authz = headers.get("authorization")
    if authz:
        if authz[:7].lower() == "bearer ":
            token = authz[7:].strip()
            return token or None
        return authz
    cookie = cookies.get(SESSION_COOKIE)
    if cookie:
        return unquote(cookie)
    return None


def credential_is_cookie_only(headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
    return (
        not headers.get("x-smithers-key")
        and not headers.get("authorization")
        and bool(cookies.get(SESSION_COOKIE))
    )


def token_id(credential: str) -> str:
    """The default ``tokenId`` of a credential (D11): the first 16 hex chars of its sha256."""
    return hashlib.sha256(credential.encode("utf-8")).hexdigest()[:16]


__all__ = [
    "SESSION_COOKIE",
    "bearer_token",
    "credential_is_cookie_only",
    "parse_cookies",
    "token_id",
]
