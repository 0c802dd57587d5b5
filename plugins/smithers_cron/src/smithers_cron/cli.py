"""``smithers cron list|add|remove|trigger``, against a store or a running gateway.

With ``--url`` (and ``--token``, or ``$SMITHERS_TOKEN``) each subcommand calls the gateway's
RPC (``cronList``, ``cronCreate``, ``cronDelete``, ``cronRun``). Otherwise it works on the
store named by ``--db`` (else the config's ``[gateway] db``), which must exist: ``add`` cannot
check that the workflow is registered there, and ``trigger`` makes the row due now, so the
gateway serving that store fires it within its poll interval. Results print as JSON; errors
print ``error: CODE: message`` and exit 2 for bad input or a missing store, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from smithers_core.cli.options import add_store_options, parse_json_arg, resolve_db_url
from smithers_core.contributions import CliCommand
from smithers_core.errors import SmithersError
from smithers_core.store import crons, open_store
from smithers_cron.patterns import check_pattern, next_fire_ms, zone
from smithers_cron.rows import with_workflow, workflow_path

EXIT_FAILED = 1
EXIT_USAGE = 2
USAGE_ERRORS = frozenset(
    {"INVALID_INPUT", "INVALID_REQUEST", "STORE_NOT_FOUND", "UNAUTHORIZED", "FORBIDDEN"}
)
TIMEOUT_S = 30


def _rpc(args: argparse.Namespace, method: str, params: dict[str, Any]) -> Any:
    token = args.token or os.environ.get("SMITHERS_TOKEN")
    request = urllib.request.Request(
        args.url.rstrip("/") + "/v1/rpc/" + method,
        data=json.dumps(params).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            body = json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"null")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SmithersError("GATEWAY_UNREACHABLE", f"{args.url}: {exc}") from exc
    if isinstance(body, dict) and body.get("ok") is False:
        error = body.get("error") or {}
        raise SmithersError(str(error.get("code")), str(error.get("message")))
    return body.get("payload") if isinstance(body, dict) and "payload" in body else body


def _store_op(args: argparse.Namespace, op: str) -> Any:
    if getattr(args, "input", None) is not None:
        raise SmithersError("INVALID_INPUT", "--input needs --url (a store only marks the row due)")
    db_url, base_dir = resolve_db_url(args)
    store = open_store(db_url, base_dir=base_dir, mode="ro" if op == "list" else "rw")
    try:
        now = int(time.time() * 1000)
        if op == "list":
            rows = [with_workflow(row) for row in store.read(crons.cron_rows)]
            return [r for r in rows if args.workflow is None or r["workflow"] == args.workflow]
        if op == "add":
            pattern = check_pattern(args.pattern)
            zone(args.timezone)
            cron_id = args.id or str(uuid.uuid4())
            store.write_sync(
                lambda tx: crons.upsert_cron(
                    tx,
                    cron_id,
                    pattern=pattern,
                    workflow_path=workflow_path(args.workflow),
                    enabled=not args.disabled,
                    next_run_at_ms=next_fire_ms(pattern, now, args.timezone),
                    timezone=args.timezone,
                    now_ms=now,
                )
            )
            row = store.read(lambda conn: crons.cron_row(conn, cron_id))
            return with_workflow(row or {})
        cron_id = args.cron_id
        change = crons.delete_cron if op == "remove" else crons.make_due
        if not store.write_sync(
            lambda tx: change(tx, cron_id, *(() if op == "remove" else (now,)))
        ):
            raise SmithersError("NOT_FOUND", f"Cron not found: {cron_id}")
        if op == "remove":
            return {"cronId": cron_id, "removed": True}
        return {"cronId": cron_id, "due": True, "nextRunAtMs": now}
    finally:
        store.close()


def _gateway_op(args: argparse.Namespace, op: str) -> Any:
    if op == "list":
        params: dict[str, Any] = {"filter": {"workflow": args.workflow}} if args.workflow else {}
        return _rpc(args, "cronList", params)
    if op == "add":
        params = {"workflow": args.workflow, "pattern": args.pattern, "enabled": not args.disabled}
        if args.id:
            params["cronId"] = args.id
        if args.timezone:
            params["timezone"] = args.timezone
        return _rpc(args, "cronCreate", params)
    if op == "remove":
        return _rpc(args, "cronDelete", {"cronId": args.cron_id})
    params = {"cronId": args.cron_id}
    run_input = parse_json_arg(args.input, "input")
    if run_input is not None:
        params["input"] = run_input
    return _rpc(args, "cronRun", params)


def _handler(op: str) -> Any:
    def handler(args: argparse.Namespace) -> int:
        try:
            result = _gateway_op(args, op) if args.url else _store_op(args, op)
        except SmithersError as exc:
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
            return EXIT_USAGE if exc.code in USAGE_ERRORS else EXIT_FAILED
        print(json.dumps(result, indent=2))
        return 0

    return handler


def _target(parser: argparse.ArgumentParser) -> None:
    add_store_options(parser)
    parser.add_argument("--url", help="a running gateway (its RPC), instead of a store")
    parser.add_argument("--token", help="bearer token for --url (default: $SMITHERS_TOKEN)")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cron_command", metavar="COMMAND")
    p = sub.add_parser("list", help="list schedules (enabled and disabled)")
    p.add_argument("--workflow", help="only this workflow's")
    _target(p)
    p.set_defaults(handler=_handler("list"))
    p = sub.add_parser("add", help="create or replace a schedule")
    p.add_argument("workflow", help="registered workflow key")
    p.add_argument("pattern", help='cron pattern, e.g. "0 8 * * 1-5" (6 fields: seconds first)')
    p.add_argument("--id", help="cron id (default: a new one)")
    p.add_argument("--timezone", help="IANA time zone (default: UTC)")
    p.add_argument("--disabled", action="store_true", help="store it switched off")
    _target(p)
    p.set_defaults(handler=_handler("add"))
    p = sub.add_parser("remove", help="delete a schedule")
    p.add_argument("cron_id")
    _target(p)
    p.set_defaults(handler=_handler("remove"))
    p = sub.add_parser(
        "trigger", help="run a schedule's workflow now (with --db: make it due for the gateway)"
    )
    p.add_argument("cron_id")
    p.add_argument("--input", help="run input as JSON or @file (--url only)")
    _target(p)
    p.set_defaults(handler=_handler("trigger"))


def cron_command() -> CliCommand:
    return CliCommand(
        name="cron",
        help="cron schedules: list, add, remove, trigger",
        configure=configure,
        description=__doc__,
    )
