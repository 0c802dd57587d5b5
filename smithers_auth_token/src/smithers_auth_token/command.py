"""``smithers token issue|inspect``, contributed through ``smithers_cli_commands``.

``issue`` prints a new opaque token with its grant (``issuing.py``); every installed auth mode
that can mint credentials (a ``CredentialIssuer``, such as ``jwt`` from ``smithers_auth_jwt``)
adds a flag ``--<mode>`` and its own options, and issues instead when the flag is given.
``inspect`` explains what a token grants under the configured mode (``inspection.py``).
"""

from __future__ import annotations

import argparse
import functools
import json

from smithers_auth_token.inspection import inspect_token
from smithers_auth_token.issuing import credential_request, issue_opaque
from smithers_core.auth.capabilities import CredentialIssuer
from smithers_core.config import load_config
from smithers_core.contributions import CliCommand, CliHost
from smithers_core.errors import SmithersError

CONFIG_HELP = "config file (default: $SMITHERS_CONFIG, else ./smithers.toml if present)"


def credential_issuers(host: CliHost) -> dict[str, CredentialIssuer]:
    """The installed modes that can issue credentials, by mode name (none when modes clash:
    ``inspect`` reports that conflict)."""
    try:
        modes = host.auth_modes()
    except SmithersError:
        return {}
    return {name: m for name, m in sorted(modes.items()) if isinstance(m, CredentialIssuer)}


def issue(issuers: dict[str, CredentialIssuer], args: argparse.Namespace) -> int:
    """Issue an opaque token, or with ``--<mode>`` that mode's credential; print it."""
    request = credential_request(args)
    if args.issue_mode is None:
        issued = issue_opaque(request, args.tokens_file)
    else:
        auth = load_config(args.config).auth
        settings = auth if auth.get("mode") == args.issue_mode else {}
        issued = issuers[args.issue_mode].issue(request, args, settings)
    print(json.dumps(issued.report, indent=2) if args.json else issued.text)
    return 0


def configure_issue(parser: argparse.ArgumentParser, issuers: dict[str, CredentialIssuer]) -> None:
    parser.add_argument("--role", default="operator", help="role (default: operator)")
    parser.add_argument(
        "--scopes",
        action="append",
        required=True,
        metavar="S",
        help='scopes, comma or space separated (e.g. "run:read,run:write" or "*"); repeatable',
    )
    parser.add_argument("--user", metavar="U", help="user id (userId, or the mode's user claim)")
    parser.add_argument(
        "--ttl",
        metavar="DURATION",
        help="lifetime: 3600, 45s, 30m, 1h, 7d, 2w or never (default: never for opaque tokens;"
        " a mode flag may have its own, e.g. 1h with --jwt)",
    )
    parser.add_argument(
        "--tokens-file",
        metavar="PATH",
        help="also append the grant to this TOML file (created with mode 0600)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file for a mode flag's defaults (default: $SMITHERS_CONFIG, else"
        " ./smithers.toml)",
    )
    flags = parser.add_mutually_exclusive_group()
    for name, issuer in issuers.items():
        flags.add_argument(
            f"--{name}", dest="issue_mode", action="store_const", const=name, help=issuer.issue_help
        )
    for issuer in issuers.values():
        issuer.add_issue_arguments(parser)
    parser.set_defaults(handler=functools.partial(issue, issuers), issue_mode=None)


def configure_inspect(parser: argparse.ArgumentParser, host: CliHost) -> None:
    parser.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=functools.partial(inspect_token, host))


def token_command(host: CliHost) -> CliCommand:
    """The ``token`` command, with the issuing flags of the modes ``host`` has installed."""

    def configure(parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="token_command", metavar="SUBCOMMAND")
        configure_issue(
            sub.add_parser(
                "issue",
                help="print a new token and its grant (or a mode's credential, e.g. --jwt)",
                description="Print a new opaque token and the grant to add to"
                " .smithers/tokens.toml or [auth] tokens, keyed by the token's sha256 digest;"
                " with a mode flag (--jwt), that mode's credential instead, whose defaults come"
                " from the config's [auth] when it selects that mode.",
            ),
            credential_issuers(host),
        )
        configure_inspect(
            sub.add_parser(
                "inspect",
                help="explain what a token grants under the configured auth mode",
                description="Decode what the installed modes recognise (a JWT's claims), find"
                " an opaque token's grant, and say whether the configured auth mode accepts the"
                " token. No secret is printed. Exit 0 when accepted (or when auth is off), 1"
                " when rejected. Pass - to read the token from stdin.",
            ),
            host,
        )

    return CliCommand(
        "token",
        "issue and inspect auth tokens",
        configure,
        description="Issue opaque tokens (with their config grant) or the credentials of other"
        " installed modes (JWTs), and inspect what a token grants under the configured auth"
        " mode.",
    )


__all__ = ["credential_issuers", "issue", "token_command"]
