"""The gateway operator's token in mode ``token`` (``OperatorAccessProvider``).

On the first run, when ``tokens_file`` names a file that does not exist yet, it is created
(mode 0600, with a ``.gitignore`` beside it) holding one operator grant keyed by the token's
digest; the token itself is printed once and never stored. On later runs ``--session-token``
adds an operator grant to the in-memory settings only, valid while the gateway runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smithers_auth_token.grants import (
    grant_key,
    grant_toml,
    new_token,
    operator_grant,
    parse_tokens_text,
)
from smithers_core.auth.capabilities import OperatorAccess
from smithers_core.errors import SmithersError

CREATED_NOTE = "created an operator token (shown once; its digest is in {path})"
SESSION_NOTE = "operator token for this session (valid until the gateway stops)"
REMINDER_NOTE = (
    "tokens: the operator token was printed when the tokens file was created;"
    " make another with: smithers token issue --role operator --scopes '*'"
)


def create_tokens_file(path: Path) -> str | None:
    """Create ``path`` with one operator grant; the new token, or None if the file exists."""
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(grant_toml(json.dumps(grant_key(token)), operator_grant(token)))
    return token


def with_session_grant(settings: Mapping[str, Any], token: str) -> dict[str, Any]:
    """``settings`` whose ``tokens`` also hold an operator grant for ``token``."""
    current = settings.get("tokens") or {}
    if isinstance(current, str):  # the text of ``tokens_file`` (D2 ``_file`` rule)
        try:
            current = parse_tokens_text(current)
        except ValueError as exc:
            raise SmithersError("CONFIG_INVALID", f"{settings.get('tokens_file')}: {exc}") from None
    return {**settings, "tokens": {**current, grant_key(token): operator_grant(token)}}


def prepare_operator_access(settings: Mapping[str, Any], *, session: bool) -> OperatorAccess:
    """The first-run token, else a session token when asked, else a reminder."""
    tokens_file = settings.get("tokens_file")
    if isinstance(tokens_file, str):
        created = create_tokens_file(Path(tokens_file))
        if created is not None:
            return OperatorAccess(settings, CREATED_NOTE.format(path=tokens_file), created)
    if session:
        token = new_token()
        return OperatorAccess(with_session_grant(settings, token), SESSION_NOTE, token)
    return OperatorAccess(settings, REMINDER_NOTE)


__all__ = ["create_tokens_file", "prepare_operator_access", "with_session_grant"]
