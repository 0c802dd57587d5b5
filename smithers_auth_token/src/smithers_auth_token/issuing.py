"""``smithers token issue`` without a mode flag: a new opaque token and its grant.

The token (:func:`~smithers_auth_token.grants.new_token`, never starting with ``-``) is
printed once; the grant is printed as TOML for a tokens file and for ``[auth.tokens]``, keyed
by the token's ``sha256:<hex>`` digest, and appended to ``--tokens-file`` when given. The
request every mode shares (role, scopes, user, lifetime) is read here too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from smithers_auth_token.grants import grant_key, grant_toml, iso_ms, new_token
from smithers_core.auth.capabilities import CredentialRequest, IssuedCredential
from smithers_core.auth.tokens import token_id
from smithers_core.errors import SmithersError

_TTL_RE = re.compile(r"(\d+)([smhdw]?)")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_ttl(text: str) -> int | None:
    """``90``, ``45s``, ``30m``, ``1h``, ``7d``, ``2w``, ``1h30m`` -> seconds; ``never`` -> None."""
    value = text.strip().lower()
    if value in ("never", "none", "0"):
        return None
    pos, total = 0, 0
    for match in _TTL_RE.finditer(value):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _TTL_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value or total <= 0:
        raise SmithersError(
            "INVALID_INPUT", f"Invalid --ttl {text!r}; use e.g. 3600, 45s, 30m, 1h, 7d or never"
        )
    return total


def split_scopes(values: list[str]) -> list[str]:
    """Scopes given comma or space separated, possibly repeated; duplicates dropped, in order."""
    out: list[str] = []
    for value in values:
        out.extend(s for s in re.split(r"[\s,]+", value.strip()) if s)
    return list(dict.fromkeys(out))


def credential_request(args: argparse.Namespace) -> CredentialRequest:
    """The request of ``--role``, ``--scopes``, ``--user`` and ``--ttl``."""
    scopes = split_scopes(args.scopes)
    if not scopes:
        raise SmithersError("INVALID_INPUT", "--scopes must name at least one scope")
    ttl = parse_ttl(args.ttl) if args.ttl else None
    return CredentialRequest(
        role=args.role,
        scopes=tuple(scopes),
        user_id=args.user,
        ttl_seconds=ttl,
        expires=not args.ttl or ttl is not None,
    )


def append_grant(path: Path, snippet: str) -> None:
    """Append a grant to a tokens file (created with mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        if fh.tell() > 0:
            fh.write("\n")
        fh.write(snippet)


def issue_opaque(request: CredentialRequest, tokens_file: str | None) -> IssuedCredential:
    """A new opaque token and its grant (expiring only when ``--ttl`` says so)."""
    token = new_token()
    key = grant_key(token)
    issued_ms = time.time_ns() // 1_000_000
    ttl = request.ttl_seconds
    grant: dict[str, Any] = {
        "role": request.role,
        "scopes": list(request.scopes),
        "userId": request.user_id,
        "tokenId": token_id(token),
        "issuedAtMs": issued_ms,
        "expiresAtMs": issued_ms + ttl * 1000 if ttl is not None else None,
    }
    file_snippet = grant_toml(json.dumps(key), grant)
    if tokens_file:
        append_grant(Path(tokens_file), file_snippet)
    report = {
        "kind": "opaque",
        "token": token,
        "digest": key,
        "grant": {k: v for k, v in grant.items() if v is not None},
    }
    expiry = f"expires {iso_ms(grant['expiresAtMs'])}" if ttl is not None else "does not expire"
    where = f"Grant appended to {tokens_file}" if tokens_file else "Grant for .smithers/tokens.toml"
    text = "\n".join(
        [
            "New token (shown once; only its digest goes into the config):\n",
            f"  {token}\n",
            f"{where} ({expiry}):\n",
            file_snippet,
            'Or inline in smithers.toml, under [auth] with mode = "token":\n',
            grant_toml(f"auth.tokens.{json.dumps(key)}", grant),
            f"tokenId: {grant['tokenId']}",
        ]
    )
    return IssuedCredential(report, text)


__all__ = ["append_grant", "credential_request", "issue_opaque", "parse_ttl", "split_scopes"]
