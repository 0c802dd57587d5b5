"""``smithers server``: run ``start_server`` in the foreground until Ctrl+C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import anyio

from smithers_core.contributions import CliCommand
from smithers_core.http import loop as serving_loop


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", metavar="DIR", help="sandbox root for workflow paths (default: .)"
    )
    parser.add_argument(
        "--port", type=int, default=7331, help="TCP port (0 picks one; default 7331)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="store URL (default $SMITHERS_DB or sqlite:///<root>/smithers.db)",
    )
    parser.add_argument(
        "--auth-token", metavar="T", help="bearer token (default: $SMITHERS_API_KEY; none = off)"
    )
    parser.add_argument("--max-body-bytes", type=int, default=1_048_576, metavar="N")
    parser.add_argument(
        "--allow-network", action="store_true", help="let the bash tool use the network"
    )
    parser.add_argument(
        "--unconfined-tools",
        action="store_true",
        help="run the bash tool unconfined where bubblewrap is unavailable (else it refuses)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without an auth token",
    )
    parser.add_argument(
        "--headers-timeout",
        type=int,
        metavar="MS",
        help="max time to receive request headers (default 30000, $SMITHERS_HEADERS_TIMEOUT_MS)",
    )
    parser.add_argument(
        "--request-timeout",
        type=int,
        metavar="MS",
        help="max time to receive a whole request (default 60000, $SMITHERS_REQUEST_TIMEOUT_MS)",
    )
    parser.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl+C or SIGTERM (runs are suspended, not cancelled); 130 on interrupt."""
    from smithers_core.hosts.server import serve_server

    async def main() -> None:
        # caught before the "listening" line (see ``smithers gateway``)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await run(signals)

    async def run(signals: Any) -> None:
        async with serve_server(
            port=args.port,
            host=args.host,
            db=args.db,
            auth_token=args.auth_token,
            max_body_bytes=args.max_body_bytes,
            root_dir=args.root,
            allow_network=args.allow_network,
            headers_timeout=args.headers_timeout,
            request_timeout=args.request_timeout,
            insecure=args.insecure,
            unconfined_tools=args.unconfined_tools,
        ) as running:
            print(f"smithers server listening on {running.url}", flush=True)
            async for _sig in signals:
                print("stopping (runs are suspended, not cancelled)", file=sys.stderr)
                return

    try:
        serving_loop.run(main)
    except KeyboardInterrupt:
        return 130
    return 0


COMMAND = CliCommand(
    "server",
    "serve the REST run API (start, stream, approve, signal) for workflows under --root",
    configure,
    description="Start the Smithers HTTP server. Workflows are loaded by path under --root;"
    " runs live in --db (default sqlite:///<root>/smithers.db).",
)

__all__ = ["COMMAND", "serve"]
