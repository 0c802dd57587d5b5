"""``smithers gateway``: run a Gateway from the config file (D2) until Ctrl+C or SIGTERM.

The ``[gateway]`` section holds Gateway options (snake_case or camelCase) plus ``host``,
``port`` and ``path`` (a Unix socket); ``[auth]`` the auth mode and its settings;
``[plugins]`` which plugins to require or disable; ``[[workflows]]`` the registered workflows
(``key``, ``path`` as ``file.py`` or ``file.py:name``, optional ``schedule``, ``webhook``,
``ui``). When the configured auth mode can provide operator credentials
(:class:`~smithers_core.auth.capabilities.OperatorAccessProvider`; mode ``token`` can), the
first run prints the credential it created, and ``--session-token`` one valid only while this
process runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from smithers_core.auth.capabilities import OperatorAccess, OperatorAccessProvider
from smithers_core.cli.options import add_config_option
from smithers_core.config import SmithersConfig, load_config
from smithers_core.contributions import CliCommand
from smithers_core.gateway import Gateway
from smithers_core.http import loop as serving_loop
from smithers_core.http.binding import check_port_free
from smithers_core.plugins import PluginHost, load_plugins
from smithers_core.store.sqlite import sqlite_path_from_url
from smithers_core.workflow.loader import load_workflow

LISTEN_KEYS = ("host", "port", "path")


def resolve_entry(ui: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """A ``ui`` option whose relative ``entry`` is made absolute against the config's folder."""
    out = dict(ui)
    entry = out.get("entry")
    if isinstance(entry, str) and entry and not Path(entry).expanduser().is_absolute():
        out["entry"] = str(base_dir / entry)
    return out


def build_gateway(
    config: SmithersConfig, plugins: PluginHost | None = None
) -> tuple[Gateway, dict[str, Any]]:
    """A Gateway with every ``[[workflows]]`` entry registered, plus its listen arguments.

    ``plugins`` are the plugins already loaded for ``config`` (loaded here when None).
    """
    options = dict(config.gateway)
    listen = {k: options.pop(k) for k in LISTEN_KEYS if k in options}
    if isinstance(options.get("ui"), Mapping):
        options["ui"] = resolve_entry(options["ui"], config.base_dir)
    if config.auth:
        options["auth"] = dict(config.auth)
    if plugins is None:
        plugins = load_plugins(config.plugins)
    gateway = Gateway(plugins=plugins, base_dir=config.base_dir, **options)
    for entry in config.workflows:
        spec = entry.path if Path(entry.path).is_absolute() else str(config.base_dir / entry.path)
        gateway.register(
            entry.key,
            load_workflow(spec),
            schedule=entry.schedule,
            webhook=entry.webhook,
            ui=resolve_entry(entry.ui, config.base_dir)
            if isinstance(entry.ui, Mapping)
            else entry.ui,
            system=entry.system,
        )
    return gateway, listen


def operator_access(
    plugins: PluginHost, config: SmithersConfig, *, session: bool
) -> OperatorAccess | None:
    """What the configured auth mode does for the operator, if it can do anything."""
    mode = plugins.auth_modes().get(str(config.auth.get("mode") or "none"))
    if not isinstance(mode, OperatorAccessProvider):
        return None
    return mode.operator_access(dict(config.auth), session=session)


def access_banner(access: OperatorAccess) -> str | None:
    """The start-up lines about operator access: the note, and the credential shown once."""
    if access.credential is None:
        return f"  {access.note}" if access.note else None
    return f"  {access.note or 'operator credential'}:\n\n    {access.credential}\n"


def cli_db_url(url: str) -> str:
    """``--db``: a relative SQLite path is relative to the working directory, not the config."""
    if url.startswith("sqlite://"):
        return f"sqlite:///{sqlite_path_from_url(url, Path.cwd())}"
    return url


def run_gateway(args: argparse.Namespace) -> int:
    """Serve until Ctrl+C or SIGTERM (runs are suspended, not cancelled); 130 on interrupt."""
    config = load_config(args.config)
    if args.db:
        config.gateway["db"] = cli_db_url(args.db)
    listen = {k: config.gateway[k] for k in LISTEN_KEYS if k in config.gateway}
    for key in LISTEN_KEYS:
        value = getattr(args, key)
        if value is not None:
            listen[key] = value
    listen.setdefault("port", 7331)
    if listen.get("path") is None:
        # before the first run's credential is created: it is shown once, after listening
        check_port_free(str(listen.get("host") or "127.0.0.1"), int(listen["port"]))
    plugins = load_plugins(config.plugins)
    access = operator_access(plugins, config, session=args.session_token)
    if access is not None:
        config.auth = dict(access.settings)
    gateway, _ = build_gateway(config, plugins)

    async def main() -> None:
        # Signals are caught before anything is printed: a process started with SIGINT
        # ignored (a background job) still stops on the first SIGINT or SIGTERM after the
        # "listening" line, however soon it comes.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            bound = await gateway.listen(**listen)
            try:
                keys = ", ".join(sorted(gateway.workflows)) or "(none)"
                print(f"smithers gateway listening on {bound.url}", flush=True)
                print(f"  auth: {gateway.auth.mode}; workflows: {keys}", flush=True)
                for mount in gateway.context.routes.mounts:
                    print(f"  ui: {bound.url}{mount.path} ({mount.title})", flush=True)
                banner = access_banner(access) if access is not None else None
                if banner is not None:
                    print(banner, flush=True)
                async for _sig in signals:
                    print("stopping (runs are suspended, not cancelled)", file=sys.stderr)
                    return
            finally:
                await gateway.close()

    try:
        serving_loop.run(main)
    except KeyboardInterrupt:
        return 130
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument("--host", help="bind address (overrides [gateway] host; default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="TCP port (overrides [gateway] port; default 7331)"
    )
    parser.add_argument("--path", metavar="SOCKET", help="serve on a Unix socket instead of TCP")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="store URL (overrides [gateway] db; default $SMITHERS_DB, else sqlite:///smithers.db"
        " beside the config file); postgresql://... for replicas on one database",
    )
    parser.add_argument(
        "--session-token",
        action="store_true",
        help="also mint an operator credential valid only while this process runs, and print it"
        " (never written to disk; auth modes that support it, such as token)",
    )
    parser.set_defaults(handler=run_gateway)


COMMAND = CliCommand(
    "gateway",
    "run the gateway control plane (RPC over HTTP and WebSocket) from a config file",
    configure,
    description="Run a Smithers gateway from a config file: its options, auth, plugins and"
    " workflows. See docs/gateway.md for the file format.",
)

__all__ = [
    "COMMAND",
    "LISTEN_KEYS",
    "access_banner",
    "build_gateway",
    "operator_access",
    "run_gateway",
]
