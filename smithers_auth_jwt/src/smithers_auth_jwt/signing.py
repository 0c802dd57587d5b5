"""``smithers token issue --jwt``: sign an HS256/384/512 JWT (the ``CredentialIssuer`` part).

Issuer, audience, secret, algorithm and claim names default to the ``[auth]`` section when the
configuration selects mode ``jwt``; the flags override them. The secret must be as long as the
hash (the mode refuses shorter ones too) unless ``--allow-weak-secret``. A JWT always expires
(one hour unless ``--ttl`` says otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from smithers_auth_jwt.config import HMAC_ALGORITHMS
from smithers_core.auth.capabilities import CredentialRequest, IssuedCredential
from smithers_core.auth.tokens import token_id
from smithers_core.errors import SmithersError

ISSUE_HELP = "issue a signed JWT instead"
DEFAULT_TTL_SECONDS = 3600


def iso_seconds(seconds: float) -> str:
    """A claim's time (seconds since the epoch) as ISO-8601 UTC."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
    return stamp.replace("+00:00", "Z")


def add_issue_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``--jwt``, in their own group of the ``issue`` help."""
    group = parser.add_argument_group("--jwt options")
    group.add_argument("--issuer", metavar="I", help="JWT iss (default: [auth] issuer)")
    group.add_argument(
        "--audience",
        action="append",
        metavar="A",
        help="JWT aud, repeatable (default: [auth] audience)",
    )
    secret = group.add_mutually_exclusive_group()
    secret.add_argument("--secret-file", metavar="F", help="file holding the HMAC secret")
    secret.add_argument("--secret-env", metavar="VAR", help="environment variable holding it")
    group.add_argument(
        "--algorithm",
        choices=sorted(HMAC_ALGORITHMS),
        help="HMAC algorithm (default: the first HS one of [auth] algorithms, else HS256)",
    )
    group.add_argument(
        "--allow-weak-secret", action="store_true", help="sign with a secret below the minimum"
    )


def _setting(settings: Mapping[str, Any], flag: Any, *keys: str) -> Any:
    """The flag when given, else the first non-empty setting of ``keys``."""
    if flag not in (None, []):
        return flag
    for key in keys:
        if settings.get(key) not in (None, "", []):
            return settings[key]
    return None


def _secret(args: argparse.Namespace, settings: Mapping[str, Any]) -> str:
    if args.secret_file:
        file = Path(args.secret_file)
        if not file.is_file():
            raise SmithersError("INVALID_INPUT", f"--secret-file {args.secret_file} does not exist")
        # Same rule as the config loader's `secret_file`, so both sides agree on the key bytes.
        secret = file.read_text(encoding="utf-8").rstrip("\n")
    elif args.secret_env:
        if args.secret_env not in os.environ:
            raise SmithersError("INVALID_INPUT", f"--secret-env {args.secret_env} is not set")
        secret = os.environ[args.secret_env]
    else:
        secret = str(settings.get("secret") or "")
    if not secret:
        raise SmithersError(
            "INVALID_INPUT",
            "--jwt needs the HMAC secret: --secret-file F, --secret-env VAR, or a config file "
            'with [auth] mode = "jwt" and secret_file / secret_env',
        )
    return secret


def _audiences(values: list[str] | None) -> list[str]:
    found: list[str] = []
    for value in values or []:
        found.extend(part for part in value.replace(",", " ").split() if part)
    return list(dict.fromkeys(found))


def issue_jwt(
    request: CredentialRequest,
    args: argparse.Namespace,
    settings: Mapping[str, Any],
    now: float,
) -> IssuedCredential:
    """A JWT for ``request``, signed with the secret of the flags or of ``settings``."""
    issuer = _setting(settings, args.issuer, "issuer")
    audience = _setting(settings, _audiences(args.audience), "audience")
    if not issuer or not audience:
        raise SmithersError(
            "INVALID_INPUT",
            '--jwt needs --issuer and --audience (or a config file with [auth] mode = "jwt")',
        )
    secret = _secret(args, settings)
    configured = [a for a in settings.get("algorithms") or [] if a in HMAC_ALGORITHMS]
    algorithm = args.algorithm or (configured[0] if configured else "HS256")
    weak_ok = args.allow_weak_secret or bool(
        settings.get("allow_weak_secret") or settings.get("allowWeakSecret")
    )
    needed = HMAC_ALGORITHMS[algorithm]
    if len(secret.encode("utf-8")) < needed and not weak_ok:
        raise SmithersError(
            "INVALID_INPUT",
            f"The HMAC secret is shorter than {needed} bytes, which {algorithm} needs "
            "(the jwt mode refuses it too); pass --allow-weak-secret to sign anyway",
        )
    if not request.expires:
        raise SmithersError("INVALID_INPUT", "A JWT needs an expiry; --ttl never is not allowed")
    issued_at = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience[0] if isinstance(audience, list) and len(audience) == 1 else audience,
        "iat": issued_at,
        "exp": issued_at + (request.ttl_seconds or DEFAULT_TTL_SECONDS),
        "jti": secrets.token_hex(8),
    }
    claims[str(_setting(settings, None, "role_claim", "roleClaim") or "role")] = request.role
    scopes_claim = _setting(settings, None, "scopes_claim", "scopesClaim") or "scope"
    claims[str(scopes_claim)] = " ".join(request.scopes)
    if request.user_id:
        claims[str(_setting(settings, None, "user_claim", "userClaim") or "sub")] = request.user_id
    try:
        token = jwt.encode(claims, secret, algorithm=algorithm, headers={"typ": "JWT"})
    except jwt.exceptions.InvalidKeyError as exc:
        raise SmithersError("INVALID_INPUT", f"The secret cannot be used: {exc}") from None
    report = {"kind": "jwt", "token": token, "tokenId": token_id(token), "claims": claims}
    text = (
        f"New JWT ({algorithm}, expires {iso_seconds(claims['exp'])}):\n\n"
        f"  {token}\n\n"
        f"Claims:\n{json.dumps(claims, indent=2)}\n\n"
        f"tokenId: {token_id(token)}"
    )
    return IssuedCredential(report, text)


__all__ = ["ISSUE_HELP", "add_issue_arguments", "iso_seconds", "issue_jwt"]
