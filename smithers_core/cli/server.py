"""``smithers server``: run ``start_server`` in the foreground until Ctrl+C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys

import anyio


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "server",
        help="serve the REST run API (start, stream, approve, signal) for workflows under --root",
        description=(
            "Start the Smithers HTTP server. Workflows are loaded by path under --root;"
            " runs live in --db (default sqlite:///<root>/smithers.db)."
        ),
    )
    p.add_argument("--root", metavar="DIR", help="sandbox root for workflow paths (default: .)")
    p.add_argument("--port", type=int, default=7331, help="TCP port (0 picks one; default 7331)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--db", metavar="URL", help="store URL (default sqlite:///<root>/smithers.db)")
    p.add_argument(
        "--auth-token", metavar="T", help="bearer token (default: $SMITHERS_API_KEY; none = off)"
    )
    p.add_argument("--max-body-bytes", type=int, default=1_048_576, metavar="N")
    p.add_argument("--allow-network", action="store_true", help="let the bash tool use the network")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without an auth token",
    )
    p.add_argument(
        "--headers-timeout",
        type=int,
        metavar="MS",
        help="max time to receive request headers (default 30000, $SMITHERS_HEADERS_TIMEOUT_MS)",
    )
    p.add_argument(
        "--request-timeout",
        type=int,
        metavar="MS",
        help="max time to receive a whole request (default 60000, $SMITHERS_REQUEST_TIMEOUT_MS)",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from smithers_core.hosts.server import serve_server

    async def main() -> None:
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
        ) as running:
            print(f"smithers server listening on {running.url}", flush=True)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _sig in signals:
                    print("stopping (runs are suspended, not cancelled)", file=sys.stderr)
                    return

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        return 130
    return 0


__all__ = ["register"]
