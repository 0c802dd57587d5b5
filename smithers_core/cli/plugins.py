"""``smithers plugins list``: every discovered plugin, its state, hooks and public routes."""

from __future__ import annotations

import argparse
import json
import sys

from smithers_core.cli.options import add_config_option
from smithers_core.config import load_config
from smithers_core.contributions import CliCommand
from smithers_core.plugins import load_plugins


def list_plugins(args: argparse.Namespace) -> int:
    """Print the plugins as a table (or JSON); exit 1 when a required plugin failed (D3)."""
    config = load_config(args.config)
    host = load_plugins(config.plugins, strict=False)
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


def configure(parser: argparse.ArgumentParser) -> None:
    subcommands = parser.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    listing = subcommands.add_parser("list", help="list every discovered plugin")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    add_config_option(listing)
    listing.set_defaults(handler=list_plugins)


COMMAND = CliCommand("plugins", "inspect installed plugins", configure)

__all__ = ["COMMAND", "list_plugins"]
