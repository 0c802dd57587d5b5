"""Auth mode ``token`` (gateway reference 6.3, D11): static bearer tokens.

``[auth]`` keys: ``tokens`` (a table ``{<token or "sha256:<hex>">: grant}``) and/or
``tokens_file`` (a TOML file holding such a table, at top level or under ``[tokens]``; it is
re-read when it changes, so revocations apply without a restart). A grant is
``{role, scopes, user_id?, token_id?, issued_at_ms?, expires_at_ms?, revoked_at_ms?}``
(camelCase accepted). Presented tokens are hashed and compared with every configured digest
in constant time; ``tokenId`` defaults to the first 16 hex characters of sha256(token).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from smithers_core.auth import AuthMode, AuthRequest, Identity
from smithers_core.errors import SmithersError
from smithers_core.hookspecs import hookimpl

REFRESH = {"refresh": "smithers token issue"}
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


class TokenAuthConfig(BaseModel):
    """``[auth]`` for ``mode = "token"`` (``mode`` and ``allowed_origins`` belong to core)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    tokens: dict[str, TokenGrant] = Field(default_factory=dict)
    tokens_file: str | None = None

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens_text(cls, value: Any) -> Any:
        # ``tokens_file`` resolution (D2) sets ``tokens`` to the file's text.
        if isinstance(value, str):
            return _parse_tokens_text(value)
        return value


def _parse_tokens_text(text: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"tokens file is not valid TOML: {exc}") from exc
    table = data.get("tokens", data)
    if not isinstance(table, dict):
        raise ValueError("tokens file must hold a table of tokens")
    return table


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _digest_of_key(key: str) -> str:
    if key[: len(DIGEST_PREFIX)].lower() == DIGEST_PREFIX:
        digest = key[len(DIGEST_PREFIX) :].strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SmithersError("CONFIG_INVALID", "A sha256: token key needs 64 hex characters")
        return digest
    return sha256_hex(key)


class TokenProvider:
    """Looks presented tokens up by digest, in constant time per configured grant."""

    def __init__(self, config: TokenAuthConfig) -> None:
        self._inline = dict(config.tokens)
        self._file = Path(config.tokens_file) if config.tokens_file else None
        self._file_mtime: float | None = None
        self._grants: list[tuple[bytes, TokenGrant]] = []
        self._load(self._read_file() if self._file is not None else {})

    def _read_file(self) -> dict[str, TokenGrant]:
        assert self._file is not None
        try:
            stat = os.stat(self._file)
            text = self._file.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._file_mtime = None
            return {}
        self._file_mtime = stat.st_mtime
        try:
            raw = _parse_tokens_text(text)
            return {k: TokenGrant.model_validate(v) for k, v in raw.items()}
        except ValueError as exc:
            raise SmithersError("CONFIG_INVALID", f"{self._file}: {exc}") from exc

    def _load(self, from_file: dict[str, TokenGrant]) -> None:
        merged = {**from_file, **self._inline}
        self._grants = [
            (bytes.fromhex(_digest_of_key(key)), grant) for key, grant in merged.items()
        ]

    def _maybe_reload(self) -> None:
        if self._file is None:
            return
        try:
            mtime: float | None = os.stat(self._file).st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._file_mtime:
            try:
                self._load(self._read_file())
            except SmithersError:
                pass  # keep the last good tokens

    async def authenticate(self, req: AuthRequest) -> Identity:
        token = req.token
        if not token:
            raise SmithersError("UNAUTHORIZED", "A bearer token is required")
        self._maybe_reload()
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found: TokenGrant | None = None
        for digest, grant in self._grants:
            if hmac.compare_digest(digest, presented) and found is None:
                found = grant
        if found is None:
            raise SmithersError("UNAUTHORIZED", "Invalid token")
        now = int(time.time() * 1000)
        if found.revoked_at_ms is not None and found.revoked_at_ms <= now:
            raise SmithersError("UNAUTHORIZED", "Token has been revoked", dict(REFRESH))
        if found.expires_at_ms is not None and found.expires_at_ms <= now:
            raise SmithersError(
                "UNAUTHORIZED", "Token expired; issue a refreshed token.", dict(REFRESH)
            )
        return Identity(
            role=found.role,
            scopes=tuple(found.scopes),
            user_id=found.user_id,
            token_id=found.token_id or presented.hex()[:16],
        )


class TokenMode:
    config_model: type[BaseModel] = TokenAuthConfig

    def create(self, config: BaseModel) -> TokenProvider:
        assert isinstance(config, TokenAuthConfig)
        return TokenProvider(config)


@hookimpl
def smithers_auth_modes() -> dict[str, AuthMode]:
    return {"token": TokenMode()}


__all__ = [
    "TokenAuthConfig",
    "TokenGrant",
    "TokenMode",
    "TokenProvider",
    "sha256_hex",
    "smithers_auth_modes",
]
