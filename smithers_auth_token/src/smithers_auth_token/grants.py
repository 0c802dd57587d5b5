"""Token grants: what one token grants, how grants are keyed, read and written (D11).

A grant is keyed by the token's ``sha256:<hex>`` digest (the form ``smithers token issue``
prints), so the token itself never sits in a config file; a plain token as key also works
(upstream's format). A tokens file is TOML holding one table per grant, at top level or under
``[tokens]``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from smithers_core.auth.tokens import token_id
from smithers_core.errors import SmithersError

DIGEST_PREFIX = "sha256:"


class TokenGrant(BaseModel):
    """What one token grants."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    role: str = "operator"
    scopes: list[str] = Field(default_factory=list)
    user_id: str | None = None
    token_id: str | None = None
    issued_at_ms: int | None = None
    expires_at_ms: int | None = None
    revoked_at_ms: int | None = None


def new_token() -> str:
    """A fresh opaque token: 32 random bytes, URL-safe base64. Never one that starts with
    ``-``, which a command line would read as an option (``smithers token inspect -x...``)."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def token_digest(token: str) -> bytes:
    """sha256 of the token: what a grant key stands for."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def grant_key(token: str) -> str:
    """``sha256:<hex>``: the key of the token's grant."""
    return DIGEST_PREFIX + token_digest(token).hex()


def key_digest(key: str) -> bytes:
    """The digest a grant key stands for: a ``sha256:`` key's hex, or a plain token's digest."""
    if key[: len(DIGEST_PREFIX)].lower() == DIGEST_PREFIX:
        digest = key[len(DIGEST_PREFIX) :].strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SmithersError("CONFIG_INVALID", "A sha256: token key needs 64 hex characters")
        return bytes.fromhex(digest)
    return token_digest(key)


def find_grant(token: str, grants: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(how, grant)`` of the token's grant among raw ``grants``: ``"digest"`` when found by its
    ``sha256:`` key, ``"plain"`` by the token itself. Digests are compared in constant time."""
    presented = token_digest(token)
    for key, grant in grants.items():
        if not isinstance(grant, dict):
            continue
        try:
            digest = key_digest(key)
        except SmithersError:
            continue
        if hmac.compare_digest(digest, presented):
            return ("digest" if key.lower().startswith(DIGEST_PREFIX) else "plain"), grant
    return None


def parse_tokens_text(text: str) -> dict[str, Any]:
    """The grants table of a tokens file (top level or under ``[tokens]``); ValueError if bad."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"tokens file is not valid TOML: {exc}") from exc
    table = data.get("tokens", data)
    if not isinstance(table, dict):
        raise ValueError("tokens file must hold a table of tokens")
    return table


def operator_grant(token: str) -> dict[str, Any]:
    """The grant of an operator token that may do everything (``scopes = ["*"]``)."""
    return {"role": "operator", "scopes": ["*"], "userId": "operator", "tokenId": token_id(token)}


def iso_ms(ms: int | float) -> str:
    """A grant's millisecond timestamp as ISO-8601 UTC (``1970-01-01T00:00:01Z``)."""
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def grant_toml(table: str, grant: Mapping[str, Any]) -> str:
    """``grant`` as a TOML table named ``table`` (None values left out)."""
    lines = [f"[{table}]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in grant.items() if value is not None]
    return "\n".join(lines) + "\n"


__all__ = [
    "DIGEST_PREFIX",
    "TokenGrant",
    "find_grant",
    "grant_key",
    "grant_toml",
    "iso_ms",
    "key_digest",
    "new_token",
    "operator_grant",
    "parse_tokens_text",
    "token_digest",
]
