"""Mode ``jwt``: verify a bearer JWT and turn its claims into an :class:`Identity`.

The checks run in upstream's order with upstream's ``UNAUTHORIZED`` messages (gateway
reference 6.4):

1. three non-empty segments; 2. header and payload are base64url JSON objects; 3. ``alg`` is one
of the configured ``algorithms``; 4. the signature (PyJWT, with the algorithm pinned to that one
value and a key of the matching type); 5. ``iss``; 6. ``aud``; 7. ``exp`` (required; expired when
``now - skew >= exp``); 8. ``nbf`` (optional; rejected when ``now + skew < nbf``). ``now`` is
whole seconds from an injectable clock.

PyJWT verifies the signature only; the claim checks are done here so their order, messages and
second-granularity boundaries match upstream exactly and tests can freeze the clock.

Verified tokens are cached (LRU keyed by sha256 of the token) until their ``exp``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from jwt import PyJWS
from jwt.exceptions import InvalidAlgorithmError, PyJWTError

from smithers_auth_jwt.config import HMAC_ALGORITHMS, JwtConfig
from smithers_auth_jwt.keys import (
    PublicKey,
    VerificationKey,
    config_error,
    load_hmac_secret,
    load_public_keys,
)
from smithers_core.auth import AuthRequest, Identity
from smithers_core.auth.tokens import token_id
from smithers_core.errors import SmithersError

REFRESH_DETAILS = {"refresh": "smithers token issue"}

MSG_TOKEN_REQUIRED = "A bearer token is required"
MSG_SEGMENTS = "JWT must have three segments"
MSG_JSON = "JWT header or payload was not valid JSON"
MSG_ALGORITHM = "Unsupported JWT algorithm"
MSG_SIGNATURE = "JWT signature verification failed"
MSG_ISSUER = "JWT issuer did not match"
MSG_AUDIENCE = "JWT audience did not match"
MSG_EXP = "JWT is missing a valid exp claim"
MSG_EXPIRED = "JWT has expired"
MSG_NOT_ACTIVE = "JWT is not active yet"
MSG_UNKNOWN_KID = "JWT key id (kid) did not match a configured key"

_SIGNATURE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_SCOPE_SPLIT_RE = re.compile(r"[\s,]+")


def _unauthorized(message: str, details: dict[str, Any] | None = None) -> SmithersError:
    return SmithersError("UNAUTHORIZED", message, details)


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, binascii.Error, RecursionError):
        raise _unauthorized(MSG_JSON) from None
    if not isinstance(value, dict):
        raise _unauthorized(MSG_JSON)
    return value


def _canonical_signature(segment: str) -> bool:
    if not _SIGNATURE_RE.match(segment):
        return False
    try:
        raw = b64url_decode(segment)
    except (ValueError, binascii.Error):
        return False
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == segment


def _is_number(value: object) -> TypeGuard[int | float]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def scopes_from_claim(value: object, default: tuple[str, ...]) -> tuple[str, ...]:
    """A string is split on commas/whitespace; an array keeps its strings; empty => default."""
    scopes: list[str]
    if isinstance(value, str):
        scopes = [s for s in _SCOPE_SPLIT_RE.split(value.strip()) if s]
    elif isinstance(value, list):
        scopes = [s for s in value if isinstance(s, str)]
    else:
        scopes = []
    return tuple(scopes) if scopes else default


@dataclass(frozen=True, slots=True)
class _Cached:
    identity: Identity
    exp: float


class JwtProvider:
    """A configured ``jwt`` mode. ``now`` is the clock (seconds; tests freeze it)."""

    def __init__(self, config: JwtConfig, *, now: Callable[[], float] = time.time) -> None:
        self.config = config
        self._now = now
        self._secret = load_hmac_secret(config)
        self._keys = load_public_keys(config)
        self._algorithms = frozenset(config.algorithms)
        asymmetric = [a for a in config.algorithms if a not in HMAC_ALGORITHMS]
        if asymmetric and not self._keys:
            raise config_error(
                f"algorithms {asymmetric} need a public key: set public_key_file (PEM) or jwks_file"
            )
        if self._keys and not asymmetric:
            raise config_error(
                f"public keys are configured but algorithms {config.algorithms} allow only HMAC; "
                'add their algorithm (for example algorithms = ["RS256"])'
            )
        for key in self._keys:
            if key.source == "public_key" and not any(key.fits(a) for a in asymmetric):
                kind = type(key.key).__name__.removeprefix("_")
                raise config_error(
                    f"the public key ({kind}) fits none of the configured algorithms "
                    f"{config.algorithms}"
                )
        if asymmetric and not any(k.fits(a) for k in self._keys for a in asymmetric):
            raise config_error(f"no configured public key fits the algorithms {asymmetric}")
        self._audiences = config.audiences
        self._skew = config.clock_skew_seconds
        self._default_scopes = tuple(config.default_scopes)
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._cache_size = config.cache_size
        self._jws = {alg: PyJWS(algorithms=[alg]) for alg in config.algorithms}

    # -- public API ---------------------------------------------------------------------
    async def authenticate(self, req: AuthRequest) -> Identity:
        return self.verify(req.token)

    def verify(self, token: str | None) -> Identity:
        """Synchronous verification (used by ``authenticate`` and ``smithers token inspect``)."""
        if not token:
            raise _unauthorized(MSG_TOKEN_REQUIRED)
        now = math.floor(self._now())
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            if now - self._skew >= cached.exp:
                self._cache.pop(digest, None)
                raise _unauthorized(MSG_EXPIRED, dict(REFRESH_DETAILS))
            self._cache.move_to_end(digest)
            return cached.identity
        identity, exp = self._verify_uncached(token, now)
        if self._cache_size:
            self._cache[digest] = _Cached(identity, exp)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return identity

    def claims(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(header, payload)`` decoded without verification (for inspection only)."""
        parts = token.split(".")
        if len(parts) != 3 or not all(parts):
            raise _unauthorized(MSG_SEGMENTS)
        return _json_object(parts[0]), _json_object(parts[1])

    # -- verification -------------------------------------------------------------------
    def _verify_uncached(self, token: str, now: int) -> tuple[Identity, float]:
        header, payload = self.claims(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _unauthorized(MSG_ALGORITHM)
        signature = token.rsplit(".", 1)[1]
        if not _canonical_signature(signature):
            raise _unauthorized(MSG_SIGNATURE)
        self._verify_signature(token, alg, header.get("kid"))
        self._check_claims(payload, now)
        exp = payload["exp"]
        return self._identity(token, payload), float(exp)

    def _candidate_keys(self, alg: str, kid: object) -> list[PublicKey]:
        fitting = [k for k in self._keys if k.fits(alg)]
        if isinstance(kid, str):
            by_kid = [k for k in fitting if k.kid == kid]
            if by_kid:
                return [k.key for k in by_kid]
            pem = [k for k in fitting if k.source == "public_key"]
            if not pem:
                raise _unauthorized(MSG_UNKNOWN_KID)
            return [k.key for k in pem]
        if not fitting:
            raise _unauthorized(MSG_ALGORITHM)
        return [k.key for k in fitting]

    def _verify_signature(self, token: str, alg: str, kid: object) -> None:
        jws = self._jws[alg]
        keys: list[bytes | PublicKey]
        if alg in HMAC_ALGORITHMS:
            assert self._secret is not None  # create() refuses HS algorithms without a secret
            keys = [self._secret]
        else:
            keys = list(self._candidate_keys(alg, kid))
        for key in keys:
            try:
                jws.decode_complete(token, key, algorithms=[alg])
            except InvalidAlgorithmError:
                raise _unauthorized(MSG_ALGORITHM) from None
            except PyJWTError:
                continue
            return
        raise _unauthorized(MSG_SIGNATURE)

    def _check_claims(self, payload: Mapping[str, Any], now: int) -> None:
        if payload.get("iss") != self.config.issuer:
            raise _unauthorized(MSG_ISSUER)
        aud = payload.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(isinstance(a, str) and a in self._audiences for a in auds):
            raise _unauthorized(MSG_AUDIENCE)
        exp = payload.get("exp")
        if not _is_number(exp):
            raise _unauthorized(MSG_EXP)
        if now - self._skew >= exp:
            raise _unauthorized(MSG_EXPIRED, dict(REFRESH_DETAILS))
        if "nbf" in payload:
            nbf = payload["nbf"]
            if not _is_number(nbf) or now + self._skew < nbf:
                raise _unauthorized(MSG_NOT_ACTIVE)

    def _identity(self, token: str, payload: Mapping[str, Any]) -> Identity:
        cfg = self.config
        role = payload.get(cfg.role_claim)
        user = payload.get(cfg.user_claim)
        return Identity(
            role=role if isinstance(role, str) else (cfg.default_role or "operator"),
            scopes=scopes_from_claim(payload.get(cfg.scopes_claim), self._default_scopes),
            user_id=user if isinstance(user, str) else None,
            token_id=token_id(token),
        )


__all__ = [
    "MSG_ALGORITHM",
    "MSG_AUDIENCE",
    "MSG_EXP",
    "MSG_EXPIRED",
    "MSG_ISSUER",
    "MSG_JSON",
    "MSG_NOT_ACTIVE",
    "MSG_SEGMENTS",
    "MSG_SIGNATURE",
    "MSG_TOKEN_REQUIRED",
    "MSG_UNKNOWN_KID",
    "REFRESH_DETAILS",
    "JwtProvider",
    "VerificationKey",
    "b64url_decode",
    "scopes_from_claim",
]
