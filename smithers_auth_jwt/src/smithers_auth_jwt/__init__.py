"""Plugin ``smithers_auth_jwt``: auth mode ``jwt`` (gateway reference 6.4).

Upstream's HS256 mode with its exact checks and messages, plus asymmetric keys (RS*, PS*, ES*,
EdDSA) from a PEM file or a local JWKS file with ``kid`` selection. Accepted algorithms are
pinned by configuration (default ``["HS256"]``); HMAC secrets and public keys live in separate
settings, so ``alg: none`` and HS/RS key confusion are impossible. The mode also issues JWTs
(``smithers token issue --jwt``) and decodes them for ``smithers token inspect``, through the
capabilities of ``smithers_core.auth.capabilities``. See ``docs/auth.md``.
"""

from __future__ import annotations

from smithers_auth_jwt.config import JwtConfig
from smithers_auth_jwt.mode import JwtMode
from smithers_auth_jwt.provider import JwtProvider, scopes_from_claim
from smithers_core.auth import AuthMode
from smithers_core.hookspecs import hookimpl

MODE = "jwt"


@hookimpl
def smithers_auth_modes() -> dict[str, AuthMode]:
    return {MODE: JwtMode()}


__all__ = ["MODE", "JwtConfig", "JwtMode", "JwtProvider", "scopes_from_claim"]
