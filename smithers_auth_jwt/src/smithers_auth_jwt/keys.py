"""Key material for mode ``jwt``: the HMAC secret and asymmetric public keys, kept apart.

* The HMAC secret comes only from ``secret``. It must not look like a PEM/SSH key or a JWK, and
  it must be at least as long as the hash (32 bytes for HS256) unless ``allow_weak_secret``.
* Public keys come only from ``public_key`` (PEM) or ``jwks`` (a local JWK set). A symmetric JWK
  (``kty: "oct"``) is refused: a JWK is never used as an HMAC secret.
* A key verifies an algorithm only if its type fits (RSA for RS*/PS*, the right EC curve for
  ES*, Ed25519/Ed448 for EdDSA), so HS/RS key confusion cannot happen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_pem_public_key,
)
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from smithers_auth_jwt.config import (
    EC_ALGORITHMS,
    EDDSA_ALGORITHMS,
    HMAC_ALGORITHMS,
    RSA_ALGORITHMS,
    JwtConfig,
)
from smithers_core.errors import SmithersError

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)


def config_error(message: str) -> SmithersError:
    return SmithersError("CONFIG_INVALID", f"[auth] mode 'jwt': {message}")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One trusted public key: where it came from, its ``kid`` and optional pinned ``alg``."""

    key: PublicKey
    kid: str | None = None
    alg: str | None = None
    source: str = "public_key"

    def fits(self, alg: str) -> bool:
        if self.alg is not None and self.alg != alg:
            return False
        return key_fits(self.key, alg)


def key_fits(key: object, alg: str) -> bool:
    """Whether ``key``'s type can verify ``alg`` (never true for an HMAC algorithm)."""
    if alg in RSA_ALGORITHMS:
        return isinstance(key, rsa.RSAPublicKey)
    if alg in EC_ALGORITHMS:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == EC_ALGORITHMS[alg]
    if alg in EDDSA_ALGORITHMS:
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def looks_like_key_material(secret: str) -> bool:
    """True for PEM blocks, OpenSSH public keys and JSON objects with a ``kty`` (JWKs/JWKSs)."""
    text = secret.strip()
    if "-----BEGIN" in text or text.startswith(("ssh-", "ecdsa-sha2-")):
        return True
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return False
        return isinstance(data, dict) and ("kty" in data or "keys" in data)
    return False


def load_hmac_secret(config: JwtConfig) -> bytes | None:
    """The HMAC secret as bytes, or None when no HS algorithm is allowed."""
    hs_algs = [a for a in config.algorithms if a in HMAC_ALGORITHMS]
    raw = config.secret.get_secret_value() if config.secret is not None else None
    if not hs_algs:
        if raw:
            raise config_error(
                "'secret' is set but 'algorithms' allows no HS algorithm; remove the secret or "
                "add HS256 to algorithms"
            )
        return None
    if raw is None:
        hint = ""
        if config.secret_file:
            hint = f" (secret_file {config.secret_file} does not exist)"
        raise config_error(
            f"algorithms {hs_algs} need an HMAC secret; set secret_file or secret_env{hint}"
        )
    if looks_like_key_material(raw):
        raise config_error(
            "'secret' looks like a public key or a JWK. HMAC secrets and asymmetric keys live "
            "in separate settings: put public keys in public_key_file or jwks_file and allow "
            'their algorithm (for example algorithms = ["RS256"])'
        )
    secret = raw.encode("utf-8")
    needed = max(HMAC_ALGORITHMS[a] for a in hs_algs)
    if not secret:
        raise config_error("the HMAC secret is empty")
    if len(secret) < needed and not config.allow_weak_secret:
        raise config_error(
            f"the HMAC secret is {len(secret)} bytes; {'/'.join(hs_algs)} needs at least "
            f'{needed} bytes (generate one with `python -c "import secrets; '
            f'print(secrets.token_urlsafe(48))"`), or set allow_weak_secret = true'
        )
    return secret


def _read_optional(text: str | None, path: str | None, what: str) -> str | None:
    if text is not None:
        return text
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise config_error(f"{what} {path} does not exist")
    return file.read_text(encoding="utf-8")


def _public_from_pem(pem: str) -> PublicKey:
    data = pem.strip().encode("utf-8")
    loaded: object
    if b"-----BEGIN CERTIFICATE-----" in data:
        loaded = x509.load_pem_x509_certificate(data).public_key()
    elif b"PRIVATE KEY-----" in data:
        loaded = load_pem_private_key(data, password=None).public_key()
    else:
        loaded = load_pem_public_key(data)
    if not isinstance(
        loaded,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        raise config_error(f"public key type {type(loaded).__name__} is not supported")
    return loaded


def _jwks_entries(raw: str | dict[str, Any]) -> list[dict[str, Any]]:
    data: Any = raw
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise config_error(f"the JWKS is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "keys" not in data and "kty" in data:
        data = {"keys": [data]}
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise config_error('the JWKS must be an object {"keys": [ ... ]}')
    return keys


def load_public_keys(config: JwtConfig) -> list[VerificationKey]:
    """Every configured public key: the PEM key first, then the JWKS keys in file order."""
    found: list[VerificationKey] = []
    pem = _read_optional(config.public_key, config.public_key_file, "public_key_file")
    if pem is not None and pem.strip():
        try:
            found.append(VerificationKey(_public_from_pem(pem), source="public_key"))
        except (ValueError, TypeError) as exc:
            raise config_error(f"public key could not be loaded: {exc}") from None
    jwks = config.jwks
    if isinstance(jwks, str) or jwks is None:
        jwks = _read_optional(jwks, config.jwks_file, "jwks_file")
    if jwks is not None:
        found.extend(_load_jwks(jwks))
    return found


def _load_jwks(raw: str | dict[str, Any]) -> Iterable[VerificationKey]:
    seen: set[str] = set()
    out: list[VerificationKey] = []
    for index, entry in enumerate(_jwks_entries(raw)):
        kid = entry.get("kid")
        label = f"JWKS key {kid!r}" if isinstance(kid, str) else f"JWKS key #{index}"
        if entry.get("kty") == "oct":
            raise config_error(
                f"{label} is a symmetric key (kty 'oct'). A JWK is never used as an HMAC "
                "secret; put the HMAC secret in secret_file or secret_env"
            )
        if entry.get("use", "sig") != "sig":
            continue
        if kid is not None and not isinstance(kid, str):
            raise config_error(f"{label}: kid must be a string")
        if isinstance(kid, str):
            if kid in seen:
                raise config_error(f"JWKS has two keys with kid {kid!r}")
            seen.add(kid)
        alg = entry.get("alg")
        if alg is not None and alg not in RSA_ALGORITHMS | set(EC_ALGORITHMS) | EDDSA_ALGORITHMS:
            raise config_error(f"{label}: alg {alg!r} is not an asymmetric signing algorithm")
        try:
            key = PyJWK(dict(entry)).key
        except (PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise config_error(f"{label} could not be loaded: {exc}") from None
        if hasattr(key, "public_key"):
            key = key.public_key()  # a private JWK: keep only its public half
        if not isinstance(
            key,
            rsa.RSAPublicKey
            | ec.EllipticCurvePublicKey
            | ed25519.Ed25519PublicKey
            | ed448.Ed448PublicKey,
        ):
            raise config_error(f"{label}: key type {type(key).__name__} is not supported")
        out.append(VerificationKey(key, kid=kid, alg=alg, source="jwks"))
    return out


__all__ = [
    "PublicKey",
    "VerificationKey",
    "config_error",
    "key_fits",
    "load_hmac_secret",
    "load_public_keys",
    "looks_like_key_material",
]
