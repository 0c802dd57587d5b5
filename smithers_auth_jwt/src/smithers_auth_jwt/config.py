"""The ``[auth]`` settings of mode ``jwt`` (gateway reference 6.4, plus pinned asymmetric keys).

Keys are snake_case; the upstream camelCase spellings (``scopesClaim``, ``clockSkewSeconds``,
...) are accepted too. ``secret_file`` / ``secret_env`` (and ``public_key_file``,
``jwks_file``) are resolved by core's config loader into ``secret`` (``public_key``, ``jwks``)
before this model sees them; the ``*_file`` paths are kept so the plugin can name them in errors
or read them itself when the loader did not.

Keys this model does not know are ignored, so switching ``mode`` in a config file that still
holds another mode's keys (``tokens_file``, ``trusted_proxies``) needs no other edit.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

HMAC_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}
"""HMAC algorithms and the minimum secret length of each (the hash size, RFC 7518 3.2)."""

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
EDDSA_ALGORITHMS = frozenset({"EdDSA"})
ASYMMETRIC_ALGORITHMS = RSA_ALGORITHMS | frozenset(EC_ALGORITHMS) | EDDSA_ALGORITHMS
SUPPORTED_ALGORITHMS = frozenset(HMAC_ALGORITHMS) | ASYMMETRIC_ALGORITHMS


class JwtConfig(BaseModel):
    """Validated ``[auth]`` section for ``mode = "jwt"``."""

    model_config = ConfigDict(
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        frozen=True,
    )

    issuer: str = Field(min_length=1)
    audience: str | list[str]
    secret: SecretStr | None = None
    """HMAC secret (HS256/384/512 only). Never a PEM key or a JWK."""
    secret_file: str | None = None
    secret_env: str | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    """The accepted ``alg`` values; the token header never widens this list."""
    public_key: str | None = None
    """PEM text of one public key (or certificate) for RS*/PS*/ES*/EdDSA."""
    public_key_file: str | None = None
    jwks: str | dict[str, Any] | None = None
    """A local JWKS (``{"keys": [...]}``), as JSON text or a table; ``kid`` selects the key."""
    jwks_file: str | None = None
    scopes_claim: str = "scope"
    role_claim: str = "role"
    user_claim: str = "sub"
    default_role: str | None = "operator"
    default_scopes: list[str] = Field(default_factory=list)
    clock_skew_seconds: float = 60
    allowed_origins: list[str] = Field(default_factory=list)
    """Enforced by core's Origin gate, not by this plugin; accepted here for completeness."""
    allow_weak_secret: bool = False
    """Allow an HMAC secret shorter than the hash size (never an empty one)."""
    cache_size: int = Field(default=10_000, ge=0)
    """Verified tokens kept (LRU, keyed by sha256 of the token) until they expire; 0 disables."""

    @field_validator("audience")
    @classmethod
    def _audience_not_empty(cls, value: str | list[str]) -> str | list[str]:
        values = [value] if isinstance(value, str) else value
        if not values or any(not v for v in values):
            raise ValueError("audience must be a non-empty string or a list of them")
        return value

    @field_validator("clock_skew_seconds")
    @classmethod
    def _clamp_skew(cls, value: float) -> float:
        return max(0.0, float(value))

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("algorithms must name at least one algorithm")
        for alg in value:
            if alg.lower() == "none":
                raise ValueError("the 'none' algorithm is never accepted")
            if alg not in SUPPORTED_ALGORITHMS:
                supported = ", ".join(sorted(SUPPORTED_ALGORITHMS))
                raise ValueError(f"unsupported algorithm {alg!r}; supported: {supported}")
        return list(dict.fromkeys(value))

    @property
    def audiences(self) -> frozenset[str]:
        return frozenset([self.audience] if isinstance(self.audience, str) else self.audience)


__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "EC_ALGORITHMS",
    "EDDSA_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "RSA_ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "JwtConfig",
]
