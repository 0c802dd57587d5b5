"""The ``smithers`` command line. Every command has ``--help``; ``--version`` prints the version."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from smithers_core import __version__
from smithers_core.config import load_config
from smithers_core.errors import SmithersError
from smithers_core.plugins import PluginHost, load_plugins


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $SMITHERS_CONFIG, else ./smithers.toml if present)",
    )


def _plugins_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    host: PluginHost = load_plugins(config.plugins, strict=False)
    host.list_public_routes()
    infos = host.sorted_infos()
    if args.json:
        print(json.dumps([i.to_json() for i in infos], indent=2))
    else:
        rows = [("NAME", "DISTRIBUTION", "VERSION", "ENABLED", "STATE", "HOOKS")]
        for i in infos:
            state = "loaded" if i.loaded else ("error" if i.error else "-")
            rows.append(
                (
                    i.name + (" (required)" if i.required else ""),
                    i.distribution or "-",
                    i.version or "-",
                    "yes" if i.enabled else "no",
                    state,
                    ", ".join(i.hooks) or "-",
                )
            )
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for r in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        for i in infos:
            if i.error:
                print(f"\n{i.name}: {i.error}", file=sys.stderr)
            if i.public_routes:
                print(f"{i.name}: public routes {', '.join(i.public_routes)}")
    return 1 if host.failed_required() else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smithers",
        description="Smithers for Python: durable, human-in-the-loop workflows.",
    )
    parser.add_argument("--version", action="version", version=f"smithers {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    plugins = commands.add_parser("plugins", help="inspect installed plugins")
    plugin_cmds = plugins.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    listing = plugin_cmds.add_parser("list", help="list every discovered plugin")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config_option(listing)
    listing.set_defaults(handler=_plugins_list)
    plugins.set_defaults(handler=lambda _a: _usage(plugins))

    _register_later_commands(commands)
    return parser


def _register_later_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that live in their own modules register themselves here."""
    for module_name in (
        "smithers_core.cli_runs",
        "smithers_core.cli_server",
        "smithers_core.cli_gateway",
        "smithers_core.cli_token",
    ):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(commands)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = handler(args)
    except SmithersError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
