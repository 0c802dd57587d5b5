"""``smithers up``: run a workflow in the foreground with a progress display.

Exit codes (D6): 0 finished, 1 failed, 2 usage or invalid input, 3 parked on an approval or a
signal (``--wait`` stays until it is decided; the exact ``smithers runs`` command that decides
it is printed), 4 cancelled, 130 interrupted (the run is suspended, never cancelled, and a later
``--resume`` continues it).
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import anyio

from smithers_core import jsonutil
from smithers_core.cli.options import (
    add_store_options,
    parse_json_arg,
    resolve_db_url,
    run_id_arg,
)
from smithers_core.contributions import CliCommand
from smithers_core.errors import SmithersError, sole_error
from smithers_core.http import loop as serving_loop
from smithers_core.http.binding import check_port_free
from smithers_core.runtime import Runtime
from smithers_core.store import redact_url
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.loader import load_workflow
from smithers_core.workflow.models import RunAuth

EXIT_FINISHED, EXIT_FAILED, EXIT_USAGE, EXIT_PARKED, EXIT_CANCELLED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
EXIT_BY_STATUS = {"finished": EXIT_FINISHED, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


class Progress:
    """Prints node states and live log lines as the run's events arrive."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet

    def show(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        render = PROGRESS_LINES.get(str(event.get("type")))
        if render is None:
            return
        node = event.get("nodeId")
        it = event.get("iteration") or 0
        label = f"{node}" + (f"[{it}]" if it else "")
        err = event.get("error") or {}
        print(render(label, event, err), file=self.out, flush=True)


ProgressLine = Callable[[str, dict[str, Any], dict[str, Any]], str]

PROGRESS_LINES: dict[str, ProgressLine] = {
    "NodeStarted": lambda n, e, _: f"  > {n} started (attempt {e.get('attempt')})",
    "NodeFinished": lambda n, e, _: f"  + {n} finished",
    "NodeFailed": lambda n, e, err: f"  x {n} failed: {err.get('code')}: {err.get('message')}",
    "NodeRetrying": lambda n, e, _: f"  ~ {n} will retry (attempt {e.get('attempt')})",
    "NodeSkipped": lambda n, e, _: f"  - {n} skipped",
    "NodeCancelled": lambda n, e, _: f"  ! {n} cancelled ({e.get('reason')})",
    "NodeOutput": lambda n, e, _: f"  {n}| {str(e.get('text', '')).rstrip()}",
    "ApprovalRequested": lambda n, e, _: f"  ? {n} waits for approval",
    "ApprovalGranted": lambda n, e, _: f"  ? {n}: granted",
    "ApprovalDenied": lambda n, e, _: f"  ? {n}: denied",
    "ApprovalAutoApproved": lambda n, e, _: f"  ? {n}: autoapproved",
    "TimerCreated": lambda n, e, _: f"  . timer {n} set",
    "TimerFired": lambda n, e, _: f"  . timer {n} fired",
    "SignalReceived": lambda n, e, _: f"  * signal {e.get('signalName')!r} received",
    "SignalRejected": lambda n, e, _: (
        f"  * signal {e.get('signalName')!r} rejected (payload invalid)"
    ),
    "RunFinished": lambda n, e, _: "run finished",
    "RunFailed": lambda n, e, err: f"run failed: {err.get('code')}: {err.get('message')}",
    "RunCancelled": lambda n, e, _: "run cancelled",
}
"""How ``smithers up`` prints each event type (others are not shown)."""


def _db_flag(url: str) -> str:
    """`` --db URL`` for a printed command (a password in the URL is masked)."""
    return f" --db {shlex.quote(redact_url(url))}"


async def describe_parked(rt: Runtime, run_id: str, db_url: str, out: TextIO) -> None:
    """Print what the run waits for and the exact command that decides it."""
    run = rt.db.run_row(run_id) or {}
    status = run.get("status")
    q = shlex.quote(run_id)
    if status == "waiting-approval":
        for a in rt.db.pending_approvals(run_id):
            request = jsonutil.loads(a.get("request_json")) or {}
            node = shlex.quote(a["node_id"])
            it = f" --iteration {a['iteration']}" if a["iteration"] else ""
            print(f"Waiting for approval of {a['node_id']!r}: {request.get('title')}", file=out)
            if request.get("summary"):
                print(f"  {request['summary']}", file=out)
            extra = ""
            if request.get("mode") == "select":
                extra = ' --decision \'{"selected": "KEY"}\''
            elif request.get("mode") == "rank":
                extra = ' --decision \'{"ranked": ["KEY", ...]}\''
            print(
                f"  approve: smithers runs approve {q} {node}{it}{extra}{_db_flag(db_url)}",
                file=out,
            )
            print(f"  deny:    smithers runs deny {q} {node}{it}{_db_flag(db_url)}", file=out)
    elif status == "waiting-event":
        for a in rt.db.list_attempts(run_id):
            if a["state"] != "waiting-event":
                continue
            wait = (jsonutil.loads(a.get("metaJson")) or {}).get("waitForEvent") or {}
            name = wait.get("signalName")
            corr = wait.get("correlationId")
            print(f"Waiting for signal {name!r} (node {a['nodeId']!r})", file=out)
            c = f" --correlation-id {shlex.quote(corr)}" if corr else ""
            print(
                f"  send: smithers runs signal {q} {shlex.quote(str(name))} --data '{{...}}'{c}"
                f"{_db_flag(db_url)}",
                file=out,
            )
    print(f"Then continue it with: smithers runs resume {q}{_db_flag(db_url)}", file=out)


async def drive(
    rt: Runtime,
    run_id: str,
    *,
    wait: bool,
    db_url: str,
    progress: Progress,
    out: TextIO,
    after_seq: int = -1,
) -> int:
    """Follow the run's events until it ends (or parks, unless ``wait``); returns the exit code."""
    async for stored in rt.hub.subscribe(run_id, after_seq, until_terminal=False):
        event = json.loads(stored.payload_json)
        progress.show(event)
        kind = event["type"]
        if kind in ("RunFinished", "RunFailed", "RunCancelled"):
            status = {"RunFinished": "finished", "RunFailed": "failed"}.get(kind, "cancelled")
            return EXIT_BY_STATUS[status]
        if kind == "RunStatusChanged" and event.get("status") in (
            "waiting-approval",
            "waiting-event",
        ):
            # the status may already have moved on (a decision raced the park): re-check
            current = rt.db.run_row(run_id) or {}
            if current.get("status") == event["status"] and not wait:
                await describe_parked(rt, run_id, db_url, out)
                return EXIT_PARKED
            if current.get("status") == event["status"]:
                print(f"waiting ({event['status']}); Ctrl+C to stop", file=out, flush=True)
    return EXIT_FAILED  # pragma: no cover - the subscription never ends on its own


async def run_up(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    db_url, base_dir = resolve_db_url(args)
    workflow = load_workflow(args.file)
    wf_path = workflow.source_path

    def resolver(row: dict[str, Any]) -> Workflow | None:
        return workflow if row.get("workflow_path") == wf_path else None

    input_value = parse_json_arg(args.input, "--input")
    progress = Progress(out, quiet=getattr(args, "quiet", False))
    result = {"code": EXIT_INTERRUPTED}

    async def main(rt: Runtime, scope: anyio.CancelScope) -> None:
        if getattr(args, "serve", False):
            check_port_free(args.host, args.port)  # a busy port fails before the run starts
        if args.resume:
            if not args.run_id:
                raise SmithersError("RUN_ID_REQUIRED", "--resume needs --run-id")
            run_id = args.run_id
            after_seq = rt.db.last_seq(run_id)
            res = await rt.service.resume(run_id, workflow)
            if res["status"] in EXIT_BY_STATUS:
                print(f"run {run_id} is already {res['status']}", file=out)
                result["code"] = EXIT_BY_STATUS[res["status"]]
                scope.cancel()
                return
        else:
            res = await rt.service.launch(
                workflow,
                input_value,
                run_id=args.run_id,
                auth=RunAuth.for_trigger("cli"),
                allow_network=args.allow_network,
            )
            run_id = res["runId"]
            after_seq = -1
        print(f"run {run_id} ({workflow.name}) db {redact_url(db_url)}", file=out, flush=True)
        if getattr(args, "serve", False):
            await serve_forever(rt, run_id, after_seq)
            return
        result["code"] = await drive(
            rt,
            run_id,
            wait=args.wait,
            db_url=db_url,
            progress=progress,
            out=out,
            after_seq=after_seq,
        )
        scope.cancel()

    async def serve_forever(rt: Runtime, run_id: str, after_seq: int) -> None:
        """``--serve``: serve the run's app; stay up after the run ends until Ctrl+C."""
        from smithers_core.hosts.serve import serve_up

        def ready(bound: Any) -> None:
            print(f"serving run {run_id} at {bound.url}", file=out, flush=True)

        async with anyio.create_task_group() as tg:
            tg.start_soon(
                functools.partial(
                    serve_up,
                    rt,
                    workflow,
                    run_id,
                    host=args.host,
                    port=args.port,
                    auth_token=args.auth_token,
                    metrics=not args.no_metrics,
                    ready=ready,
                    insecure=args.insecure,
                )
            )
            code = await drive(
                rt,
                run_id,
                wait=True,
                db_url=db_url,
                progress=progress,
                out=out,
                after_seq=after_seq,
            )
            result["code"] = code
            print("run ended; still serving its final state (Ctrl+C to stop)", file=out, flush=True)

    async def signals(received: Any, scope: anyio.CancelScope) -> None:
        async for _ in received:
            if result["code"] == EXIT_INTERRUPTED:
                print("interrupted: suspending the run (resume with --resume)", file=out)
            scope.cancel()
            return

    failure: list[SmithersError] = []

    async def guarded(rt: Runtime, scope: anyio.CancelScope) -> None:
        try:
            await main(rt, scope)
        except SmithersError as exc:
            failure.append(exc)
            scope.cancel()
        except BaseExceptionGroup as group:  # from --serve's task group
            error = sole_error(group)
            if not isinstance(error, SmithersError):
                raise
            failure.append(error)
            scope.cancel()

    # The receiver stays installed until the runtime has suspended the run, so a second
    # Ctrl+C during shutdown is absorbed instead of raising KeyboardInterrupt mid-write.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        async with (
            Runtime(
                db_url,
                base_dir=base_dir,
                resolver=resolver,
                allow_network=args.allow_network,
                unconfined_tools=getattr(args, "unconfined_tools", False),
            ) as rt,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(guarded, rt, tg.cancel_scope)
            tg.start_soon(signals, received, tg.cancel_scope)
    if failure:
        raise failure[0]
    return result["code"]


def _detach(args: argparse.Namespace) -> int:
    """``-d``: start the same command in the background; print its pid and log file."""
    run_id = args.run_id or str(uuid.uuid4())
    argv = [a for a in sys.argv[1:] if a not in ("-d", "--detach")]
    if not args.run_id:
        argv += ["--run-id", run_id]
    log_dir = Path(".smithers")
    log_dir.mkdir(exist_ok=True)
    log_path = (log_dir / f"up-{run_id}.log").resolve()
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smithers_core", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    print(json.dumps({"pid": proc.pid, "runId": run_id, "log": str(log_path)}))
    return 0


def foreground(args: argparse.Namespace) -> int:
    """The handler of ``smithers up`` (and ``smithers runs resume``): the run's exit code."""
    if getattr(args, "detach", False):
        return _detach(args)
    try:
        return serving_loop.run(run_up, args)
    except SmithersError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        if exc.details and exc.code == "INVALID_INPUT":
            print(json.dumps(exc.details, indent=2, default=str), file=sys.stderr)
        return EXIT_USAGE if exc.code != "RUN_NOT_FOUND" else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="workflow file (FILE.py or FILE.py:name)")
    parser.add_argument("--input", metavar="JSON|@path", help="input as JSON or @file.json")
    parser.add_argument(
        "--run-id", metavar="ID", type=run_id_arg, help="run id (default: a new UUID)"
    )
    parser.add_argument("--resume", action="store_true", help="resume the run named by --run-id")
    parser.add_argument("--wait", action="store_true", help="stay while the run waits for people")
    parser.add_argument(
        "--allow-network", action="store_true", help="let the bash tool use the network"
    )
    parser.add_argument(
        "--unconfined-tools",
        action="store_true",
        help="run the bash tool unconfined where bubblewrap is unavailable (else it refuses)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument(
        "--serve", action="store_true", help="serve the run over HTTP while it runs"
    )
    parser.add_argument("--port", type=int, default=7331, help="--serve port (default 7331)")
    parser.add_argument("--host", default="127.0.0.1", help="--serve host (default 127.0.0.1)")
    parser.add_argument("--auth-token", help="--serve bearer token (default $SMITHERS_API_KEY)")
    parser.add_argument("--no-metrics", action="store_true", help="--serve without /metrics")
    parser.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback host, no token"
    )
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
    add_store_options(parser)
    parser.set_defaults(handler=foreground)


COMMAND = CliCommand(
    "up",
    "run a workflow in the foreground",
    configure,
    description="Run a workflow file in the foreground with a progress display. Exit codes:"
    " 0 finished, 1 failed, 2 usage or invalid input, 3 parked on an approval or signal,"
    " 4 cancelled, 130 interrupted (run suspended).",
)

__all__ = [
    "COMMAND",
    "EXIT_BY_STATUS",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "Progress",
    "foreground",
    "run_up",
]
