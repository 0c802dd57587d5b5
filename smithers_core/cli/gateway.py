"""``smithers gateway``: run a Gateway from the config file (D2) until Ctrl+C or SIGTERM.

The ``[gateway]`` section holds Gateway options (snake_case or camelCase) plus ``host``,
``port`` and ``path`` (a Unix socket); ``[auth]`` the auth mode and its settings;
``[plugins]`` which plugins to require or disable; ``[[workflows]]`` the registered workflows
(``key``, ``path`` as ``file.py`` or ``file.py:name``, optional ``schedule``, ``webhook``,
``ui``). With ``mode = "token"`` and a ``tokens_file`` that does not exist yet, the first run
creates it with one random operator token, printed once.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any

import anyio

from smithers_core.config import SmithersConfig, load_config
from smithers_core.errors import SmithersError

LISTEN_KEYS = ("host", "port", "path")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "gateway",
        help="run the gateway control plane (RPC over HTTP and WebSocket) from a config file",
        description=(
            "Run a Smithers gateway from a config file: its options, auth, plugins and"
            " workflows. See docs/gateway.md for the file format."
        ),
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $SMITHERS_CONFIG, else ./smithers.toml if present)",
    )
    p.add_argument("--host", help="bind address (overrides [gateway] host; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (overrides [gateway] port; default 7331)")
    p.add_argument("--path", metavar="SOCKET", help="serve on a Unix socket instead of TCP")
    p.add_argument(
        "--session-token",
        action="store_true",
        help="token mode: also mint an operator token valid only while this process runs,"
        " and print it (never written to disk)",
    )
    p.set_defaults(handler=_run)


def _token_line(token: str) -> str:
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    return (
        f'["sha256:{digest}"]\n'
        'role = "operator"\n'
        'scopes = ["*"]\n'
        'userId = "operator"\n'
        f'tokenId = "{digest[:16]}"\n'
    )


def ensure_first_token(config: SmithersConfig) -> str | None:
    """Create ``tokens_file`` with one operator token when token auth names a missing file."""
    auth = config.auth
    if auth.get("mode") != "token":
        return None
    raw = auth.get("tokens_file")
    if not isinstance(raw, str):
        return None
    path = Path(raw) if Path(raw).is_absolute() else config.base_dir / raw
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(_token_line(token))
    return token


def build_gateway(config: SmithersConfig) -> tuple[Any, dict[str, Any]]:
    """A Gateway with every ``[[workflows]]`` entry registered, plus its listen arguments."""
    from smithers_core.gateway import Gateway
    from smithers_core.plugins import load_plugins
    from smithers_core.workflow.loader import load_workflow

    options = dict(config.gateway)
    listen = {k: options.pop(k) for k in LISTEN_KEYS if k in options}
    if config.auth:
        options["auth"] = dict(config.auth)
    plugins = load_plugins(config.plugins)
    gateway = Gateway(plugins=plugins, base_dir=config.base_dir, **options)
    for entry in config.workflows:
        spec = entry.path if Path(entry.path).is_absolute() else str(config.base_dir / entry.path)
        gateway.register(
            entry.key,
            load_workflow(spec),
            schedule=entry.schedule,
            webhook=entry.webhook,
            ui=entry.ui,
            system=entry.system,
        )
    return gateway, listen


def add_session_token(config: SmithersConfig) -> str | None:
    """Add an in-memory operator grant (token mode only); returns the token to print."""
    if config.auth.get("mode") != "token":
        return None
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    current = config.auth.get("tokens") or {}
    if isinstance(current, str):  # the text of ``tokens_file`` (D2 ``_file`` rule)
        parsed = tomllib.loads(current)
        current = parsed.get("tokens", parsed) if isinstance(parsed.get("tokens"), dict) else parsed
    grants = dict(current)
    grants[f"sha256:{digest}"] = {
        "role": "operator",
        "scopes": ["*"],
        "userId": "operator",
        "tokenId": digest[:16],
    }
    config.auth["tokens"] = grants
    return token


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    token = ensure_first_token(config)
    if token is not None:
        config = load_config(config.path)
    session = add_session_token(config) if args.session_token and token is None else None
    gateway, listen = build_gateway(config)
    for key in LISTEN_KEYS:
        value = getattr(args, key)
        if value is not None:
            listen[key] = value
    listen.setdefault("port", 7331)

    async def main() -> None:
        bound = await gateway.listen(**listen)
        try:
            keys = ", ".join(sorted(gateway.workflows)) or "(none)"
            print(f"smithers gateway listening on {bound.url}", flush=True)
            print(f"  auth: {gateway.auth.mode}; workflows: {keys}", flush=True)
            if token is not None:
                print(
                    "  created an operator token (shown once; its digest is in"
                    f" {config.auth.get('tokens_file')}):\n\n    {token}\n",
                    flush=True,
                )
            elif session is not None:
                print(
                    "  operator token for this session (valid until the gateway stops):"
                    f"\n\n    {session}\n",
                    flush=True,
                )
            elif gateway.auth.mode == "token":
                print(
                    "  tokens: the operator token was printed when the tokens file was created;"
                    " make another with: smithers token issue --role operator --scopes '*'",
                    flush=True,
                )
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _sig in signals:
                    print("stopping (runs are suspended, not cancelled)", file=sys.stderr)
                    return
        finally:
            await gateway.close()

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        return 130
    except SmithersError:
        raise
    return 0


__all__ = ["build_gateway", "ensure_first_token", "register"]
