"""``smithers``: a parser built from every plugin's commands, then the chosen command.

Commands arrive through the ``smithers_cli_commands`` hook (core's own from the default plugin
``core.cli``). The plugins are found with the configuration rules of every command (D2:
``--config PATH`` anywhere on the command line, else ``$SMITHERS_CONFIG``, else
``./smithers.toml``), honouring ``[plugins] disable`` and ``SMITHERS_DISABLE_PLUGINS``. Building
the parser is never strict: a broken optional plugin or a configuration that does not load
leaves every other command working, and each command reports its own configuration errors
(``error: CODE: message``, exit 2). Required plugins are checked by the commands that use them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence

from smithers_core import __version__
from smithers_core.config import PluginsSection, load_config
from smithers_core.errors import SmithersError
from smithers_core.plugins import ENV_DISABLED, PluginHost, load_plugins

PROG = "smithers"
PLUGIN_LOG = logging.getLogger("smithers.plugins")


def config_option(argv: Sequence[str]) -> str | None:
    """The value of the last ``--config PATH`` (or ``--config=PATH``) on the command line."""
    found: str | None = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--config" and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith("--config="):
            found = arg.partition("=")[2]
    return found


@contextlib.contextmanager
def _plugin_warnings_held() -> Iterator[None]:
    """Plugin load failures are not logged while the parser is built; a parse error names them
    (see :func:`_note_broken_plugins`) and commands that load plugins report them again."""
    level = PLUGIN_LOG.level
    PLUGIN_LOG.setLevel(logging.ERROR)
    try:
        yield
    finally:
        PLUGIN_LOG.setLevel(level)


def load_command_plugins(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> PluginHost:
    """The plugins whose commands the parser offers: every discovered plugin that the config
    file (when it loads) or ``SMITHERS_DISABLE_PLUGINS`` does not disable. Required plugins are
    left to the commands that need them, which fail with ``PLUGIN_REQUIRED`` themselves."""
    env = os.environ if environ is None else environ
    disabled: list[str] = []
    with contextlib.suppress(SmithersError):  # the command reports it when it loads the config
        disabled = load_config(config_option(argv), env).plugins.disable
    return load_plugins(
        PluginsSection(disable=disabled), {ENV_DISABLED: env.get(ENV_DISABLED, "")}, strict=False
    )


def _print_usage(parser: argparse.ArgumentParser, _args: argparse.Namespace) -> int:
    parser.print_help(sys.stderr)
    return 2


def build_parser(host: PluginHost) -> argparse.ArgumentParser:
    """The ``smithers`` parser with one subcommand per contributed :class:`CliCommand`.

    A command (or a group of subcommands) without a handler prints its help and exits 2.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Smithers for Python: durable, human-in-the-loop workflows.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.set_defaults(handler=functools.partial(_print_usage, parser))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in host.cli_commands():
        sub = commands.add_parser(command.name, help=command.help, description=command.description)
        sub.set_defaults(handler=functools.partial(_print_usage, sub))
        command.configure(sub)
    return parser


def _note_broken_plugins(host: PluginHost) -> None:
    """After a usage error: the plugins that failed to load, whose commands may be missing."""
    for info in host.sorted_infos():
        if info.enabled and info.error:
            dist = f" ({info.distribution} {info.version})" if info.distribution else ""
            print(
                f"note: plugin '{info.name}'{dist} did not load, so its commands and options"
                f" are missing: {info.error}",
                file=sys.stderr,
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``smithers`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        with _plugin_warnings_held():
            host = load_command_plugins(arguments)
            parser = build_parser(host)
    except SmithersError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:
        if exc.code not in (0, None):
            _note_broken_plugins(host)
        raise
    try:
        code: int = args.handler(args)
    except SmithersError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    return code


__all__ = ["build_parser", "config_option", "load_command_plugins", "main"]
