"""Plugin ``core.cli``: core's own ``smithers`` commands (plugins, up, runs, server, gateway)."""

from __future__ import annotations

from smithers_core.cli import gateway, plugins, runs, server, up
from smithers_core.contributions import CliCommand
from smithers_core.hookspecs import hookimpl


@hookimpl
def smithers_cli_commands() -> list[CliCommand]:
    return [plugins.COMMAND, up.COMMAND, runs.COMMAND, server.COMMAND, gateway.COMMAND]
