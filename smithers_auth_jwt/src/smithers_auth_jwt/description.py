"""``smithers token inspect`` of a JWT: its header and claims, decoded but never verified
(the ``CredentialDescriber`` part of mode ``jwt``)."""

from __future__ import annotations

import binascii
import json
from typing import Any

from smithers_auth_jwt.provider import b64url_decode
from smithers_auth_jwt.signing import iso_seconds
from smithers_core.auth.capabilities import CredentialDescription

KIND = "jwt"


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(header, claims)`` when the token is shaped like a JWT, else None. Not verified."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict) or "alg" not in header:
        return None
    return header, claims


def _time_claim(name: str, value: object, now: float) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        when = iso_seconds(value)
    except (OverflowError, ValueError, OSError):
        return None
    return f"  {name}: {when} ({'in the past' if value <= now else 'in the future'})"


def describe_jwt(token: str, now: float) -> CredentialDescription | None:
    """The JWT's header and claims, with its time claims in words; None for other tokens."""
    decoded = decode_unverified(token)
    if decoded is None:
        return None
    header, claims = decoded
    lines = [
        f"JWT header (not verified): {json.dumps(header)}",
        "JWT claims (not verified):",
        json.dumps(claims, indent=2),
    ]
    for name in ("iat", "nbf", "exp"):
        line = _time_claim(name, claims.get(name), now)
        if line is not None:
            lines.append(line)
    return CredentialDescription(
        kind=KIND, facts={"header": header, "claims": claims}, text="\n".join(lines)
    )


__all__ = ["KIND", "decode_unverified", "describe_jwt"]
