"""``smithers runs ...``: decide approvals, send signals, show, cancel or resume runs locally.

Each subcommand opens the store named by ``--db`` (else the config's ``[gateway] db``) without a
supervisor, performs one RunService operation and prints its result as JSON. No subcommand
creates a store: ``show`` (and ``resume``'s lookup) open it read-only, the others only if it
exists; a missing one is ``STORE_NOT_FOUND`` ("no database at PATH"), exit 2. Other errors
(``RUN_NOT_FOUND`` ...) exit 1. ``resume`` runs the workflow in the foreground exactly like
``smithers up --resume``. ``show`` adds the run's node outputs as ``outputs``:
``[{nodeId, iteration, outputTable, row}]``, first written first.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from smithers_core.cli.options import (
    add_store_options,
    parse_json_arg,
    resolve_db_url,
    run_id_arg,
)
from smithers_core.cli.up import EXIT_FAILED, EXIT_USAGE, foreground
from smithers_core.contributions import CliCommand
from smithers_core.errors import SmithersError
from smithers_core.runtime import Runtime
from smithers_core.store import SmithersDb, Store, open_store
from smithers_core.store.runs import CancelAttribution

Handler = Callable[[argparse.Namespace], int]
T = TypeVar("T")
USAGE_ERRORS = frozenset({"INVALID_INPUT", "STORE_NOT_FOUND"})
"""Codes that exit 2 (usage); every other error exits 1."""
SHOW_OUTPUTS = 1000
"""``runs show`` lists at most this many node outputs (first written first)."""


def _read(db_url: str, base_dir: Path, read: Callable[[SmithersDb], T]) -> T:
    """``read(db)`` on the store opened read-only: a missing file stays missing."""
    store = open_store(db_url, base_dir=base_dir, mode="ro")
    try:
        return read(SmithersDb(store))
    finally:
        store.close()


def _show(db: SmithersDb, run_id: str) -> dict[str, Any]:
    run = db.get_run(run_id)
    if run is None:
        raise SmithersError("RUN_NOT_FOUND", f"Run not found: {run_id}", {"runId": run_id})
    run["outputs"] = db.list_outputs(run_id, SHOW_OUTPUTS)
    return run


async def _operate(args: argparse.Namespace, op: str) -> dict[str, Any]:
    db_url, base_dir = resolve_db_url(args)
    if op == "show":
        return _read(db_url, base_dir, lambda db: _show(db, args.run_id))
    store = open_store(db_url, base_dir=base_dir, mode="rw")  # decides; never creates a store
    try:
        return await _change(store, args, op)
    finally:
        store.close()


async def _change(store: Store, args: argparse.Namespace, op: str) -> dict[str, Any]:
    async with Runtime(store, supervise=False) as rt:
        svc = rt.service
        if op in ("approve", "deny"):
            return await svc.decide_approval(
                args.run_id,
                args.node_id,
                approved=op == "approve",
                iteration=args.iteration,
                note=args.note,
                decided_by=args.decided_by,
                decision=parse_json_arg(args.decision, "--decision"),
            )
        if op == "signal":
            return await svc.deliver_signal(
                args.run_id,
                args.name,
                parse_json_arg(args.data, "--data"),
                correlation_id=args.correlation_id,
                received_by="cli",
            )
        if op == "cancel":
            return await svc.cancel(args.run_id, CancelAttribution(source="cli", pid=os.getpid()))
        raise AssertionError(op)


def operation(op: str) -> Handler:
    """The handler of ``smithers runs <op>``: print the result, say how the run continues."""

    def handler(args: argparse.Namespace) -> int:
        try:
            result = anyio.run(_operate, args, op)
        except SmithersError as exc:
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
            return EXIT_USAGE if exc.code in USAGE_ERRORS else EXIT_FAILED
        print(json.dumps(result, indent=2))
        if op in ("approve", "deny", "signal"):
            print(
                "The host that runs this workflow resumes the run; with none running, continue"
                f" it with: smithers runs resume {shlex.quote(args.run_id)}"
                + (f" --db {shlex.quote(args.db)}" if args.db else ""),
                file=sys.stderr,
            )
        return 0

    return handler


def resume(args: argparse.Namespace) -> int:
    """``smithers runs resume``: ``smithers up --resume`` with the file the run recorded."""
    db_url, base_dir = resolve_db_url(args)

    def find_path(db: SmithersDb) -> str | None:
        row = db.run_row(args.run_id)
        if row is None:
            raise SmithersError("RUN_NOT_FOUND", f"Run not found: {args.run_id}")
        return row.get("workflow_path")

    try:
        path = _read(db_url, base_dir, find_path)  # the run must exist: nothing is created
        path = args.file or path
    except SmithersError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if exc.code in USAGE_ERRORS else EXIT_FAILED
    if not path:
        print("error: the run records no workflow file; pass --file", file=sys.stderr)
        return EXIT_USAGE
    up_args = argparse.Namespace(
        file=path,
        input=None,
        run_id=args.run_id,
        db=db_url,
        config=None,
        resume=True,
        wait=args.wait,
        allow_network=args.allow_network,
        quiet=False,
    )
    return foreground(up_args)


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="runs_command", metavar="SUBCOMMAND")
    for op in ("approve", "deny"):
        p = sub.add_parser(op, help=f"{op} a waiting approval")
        p.add_argument("run_id", metavar="RUN", type=run_id_arg)
        p.add_argument("node_id", metavar="NODE")
        p.add_argument("--iteration", type=int, default=0)
        p.add_argument("--note")
        p.add_argument("--decided-by", metavar="WHO")
        p.add_argument("--decision", metavar="JSON", help='e.g. \'{"selected": "blue"}\'')
        add_store_options(p)
        p.set_defaults(handler=operation(op))
    p = sub.add_parser("signal", help="send a signal to a run")
    p.add_argument("run_id", metavar="RUN", type=run_id_arg)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--data", metavar="JSON|@path")
    p.add_argument("--correlation-id", metavar="ID")
    add_store_options(p)
    p.set_defaults(handler=operation("signal"))
    p = sub.add_parser("cancel", help="cancel a run")
    p.add_argument("run_id", metavar="RUN", type=run_id_arg)
    add_store_options(p)
    p.set_defaults(handler=operation("cancel"))
    p = sub.add_parser("show", help="print a run (status, summary, runState)")
    p.add_argument("run_id", metavar="RUN", type=run_id_arg)
    add_store_options(p)
    p.set_defaults(handler=operation("show"))
    p = sub.add_parser("resume", help="resume a run in the foreground (like up --resume)")
    p.add_argument("run_id", metavar="RUN", type=run_id_arg)
    p.add_argument("--file", help="workflow file (default: the one the run recorded)")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--allow-network", action="store_true")
    add_store_options(p)
    p.set_defaults(handler=resume)


COMMAND = CliCommand("runs", "decide approvals, send signals, resume or cancel runs", configure)

__all__ = ["COMMAND", "operation", "resume"]
