"""Plugin ``smithers_auth_token``: auth mode ``token`` and the ``smithers token`` command.

* ``provider.py``: the mode (static bearer tokens keyed by digest, gateway reference 6.3, D11);
* ``grants.py``: grants, their ``sha256:<hex>`` keys and tokens files;
* ``operator.py``: the gateway operator's first-run and session tokens;
* ``command.py``, ``issuing.py``, ``inspection.py``: ``smithers token issue|inspect``.
"""

from __future__ import annotations

from smithers_auth_token.command import token_command
from smithers_auth_token.grants import TokenGrant
from smithers_auth_token.provider import MODE, TokenAuthConfig, TokenMode, TokenProvider
from smithers_core.auth import AuthMode
from smithers_core.contributions import CliCommand, CliHost
from smithers_core.hookspecs import hookimpl


@hookimpl
def smithers_auth_modes() -> dict[str, AuthMode]:
    return {MODE: TokenMode()}


@hookimpl
def smithers_cli_commands(host: CliHost) -> list[CliCommand]:
    return [token_command(host)]


__all__ = [
    "MODE",
    "TokenAuthConfig",
    "TokenGrant",
    "TokenMode",
    "TokenProvider",
    "smithers_auth_modes",
    "smithers_cli_commands",
]
