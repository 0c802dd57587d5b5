"""Auth mode ``token`` (gateway reference 6.3, D11): static bearer tokens.

``[auth]`` keys: ``tokens`` (a table ``{<token or "sha256:<hex>">: grant}``) and/or
``tokens_file`` (a TOML file holding such a table, at top level or under ``[tokens]``; it is
re-read when it changes, so revocations apply without a restart). A grant is
``{role, scopes, user_id?, token_id?, issued_at_ms?, expires_at_ms?, revoked_at_ms?}``
(camelCase accepted). Presented tokens are hashed and compared with every configured digest
in constant time; ``tokenId`` defaults to the first 16 hex characters of sha256(token).

The mode also provides the gateway's operator credentials
(:class:`~smithers_core.auth.capabilities.OperatorAccessProvider`, see ``operator.py``).
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from smithers_auth_token.grants import TokenGrant, key_digest, parse_tokens_text, token_digest
from smithers_auth_token.operator import prepare_operator_access
from smithers_core.auth import AuthRequest, Identity
from smithers_core.auth.capabilities import OperatorAccess
from smithers_core.auth.tokens import token_id
from smithers_core.errors import SmithersError

MODE = "token"
REFRESH = {"refresh": "smithers token issue"}


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
            return parse_tokens_text(value)
        return value


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
            raw = parse_tokens_text(text)
            return {k: TokenGrant.model_validate(v) for k, v in raw.items()}
        except ValueError as exc:
            raise SmithersError("CONFIG_INVALID", f"{self._file}: {exc}") from exc

    def _load(self, from_file: dict[str, TokenGrant]) -> None:
        merged = {**from_file, **self._inline}
        self._grants = [(key_digest(key), grant) for key, grant in merged.items()]

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
        presented = token_digest(token)
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
            token_id=found.token_id or token_id(token),
        )


class TokenMode:
    """The ``token`` auth mode, which also gives the gateway's operator a token."""

    config_model: type[BaseModel] = TokenAuthConfig

    def create(self, config: BaseModel) -> TokenProvider:
        assert isinstance(config, TokenAuthConfig)
        return TokenProvider(config)

    def operator_access(self, settings: Mapping[str, Any], *, session: bool) -> OperatorAccess:
        return prepare_operator_access(settings, session=session)


__all__ = ["MODE", "REFRESH", "TokenAuthConfig", "TokenMode", "TokenProvider"]
