"""Arguments several commands share (``--config``, ``--db``, JSON values) and reading them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from smithers_core.config import load_config
from smithers_core.errors import SmithersError
from smithers_core.ids import RUN_ID_RULE, is_run_id
from smithers_core.store import default_db_url

CONFIG_HELP = "config file (default: $SMITHERS_CONFIG, else ./smithers.toml if present)"


def add_config_option(parser: argparse.ArgumentParser, help: str = CONFIG_HELP) -> None:
    parser.add_argument("--config", metavar="PATH", help=help)


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """``--db URL`` and the ``--config`` whose ``[gateway] db`` is the default."""
    parser.add_argument(
        "--db",
        metavar="URL",
        help="store URL (default: config, $SMITHERS_DB or sqlite:///smithers.db)",
    )
    add_config_option(parser, "config file (for its [gateway] db)")


def resolve_db_url(args: argparse.Namespace) -> tuple[str, Path]:
    """``--db``, else the config file's ``[gateway] db``, else ``$SMITHERS_DB``, else
    ``sqlite:///smithers.db``."""
    if getattr(args, "db", None):
        return str(args.db), Path.cwd()
    config = load_config(getattr(args, "config", None))
    url = config.gateway.get("db") or default_db_url()
    return str(url), config.base_dir


def run_id_arg(value: str) -> str:
    """An argparse ``type`` for run ids (D4): anything else is a usage error (exit 2)."""
    if not is_run_id(value):
        raise argparse.ArgumentTypeError(f"not a run id: {RUN_ID_RULE}")
    return value


def parse_json_arg(value: str | None, what: str) -> Any:
    """A JSON string, or ``@path`` to read JSON from a file."""
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise SmithersError(
                "INVALID_INPUT", f"Cannot read {what} file {value[1:]}: {exc}"
            ) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SmithersError("INVALID_INPUT", f"{what} is not valid JSON: {exc}") from exc


__all__ = [
    "CONFIG_HELP",
    "add_config_option",
    "add_store_options",
    "parse_json_arg",
    "resolve_db_url",
    "run_id_arg",
]
