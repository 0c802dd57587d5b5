"""``start_server``: the multi-workflow HTTP server (reference/server.md 2, D9).

One :class:`~smithers_core.runtime.Runtime` (store, engine, event hub, run service) backs the
server; every route reads that store, so runs survive a restart. Workflows are loaded by
``workflowPath`` under ``root_dir`` (real paths, symlinks followed) and reloaded when the file
changes. Routes, bodies, status codes and the error envelope follow upstream, with the changes
of D7/D9 (documented in README.md and marked in the tests).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from starlette.types import Receive, Scope

from smithers_core.engine.options import EngineOptions
from smithers_core.errors import SmithersError
from smithers_core.hosts.common import (
    OPERATOR,
    RoutedApp,
    env_int,
    js_truthy,
    strict_unquote,
)
from smithers_core.hosts.errors import SERVER_TABLE
from smithers_core.hosts.sse import parse_cursor
from smithers_core.http.asgi import query, scope_headers
from smithers_core.http.auth import resolve_token, server_authorized
from smithers_core.http.binding import BoundServer, is_loopback_host, serve_app
from smithers_core.http.body import read_json
from smithers_core.http.errors import HttpError
from smithers_core.http.params import js_number, optional_int, positive_int
from smithers_core.http.responses import Reply, Response, json_response
from smithers_core.metrics import CONTENT_TYPE
from smithers_core.plugins import PluginHost
from smithers_core.runtime import Runtime
from smithers_core.store import SmithersDb, SqliteStore
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.loader import load_workflow
from smithers_core.workflow.models import RunAuth

DEFAULT_PORT = 7331
DEFAULT_MAX_BODY_BYTES = 1_048_576
MAX_RUN_ID = 256

_SEG = "([^/]+)"
Handler = Callable[..., Awaitable[Response]]


def timeout_ms(given: int | None, name: str, default: int) -> int:
    """An explicit value, else ``SMITHERS_<NAME>_TIMEOUT_MS``, else the upstream default."""
    if given is not None:
        return given
    return env_int(f"SMITHERS_{name}_TIMEOUT_MS", default)


def inside_root(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def make_resolver(root: str) -> Callable[[dict[str, Any]], Workflow | None]:
    """Load a stored run's workflow file again, only while it is still inside ``root``."""

    def resolve(row: dict[str, Any]) -> Workflow | None:
        path = row.get("workflow_path")
        if not path:
            return None
        real = os.path.realpath(path)
        if not inside_root(real, root):
            return None
        try:
            return load_workflow(real)
        except SmithersError:
            return None

    return resolve


class ServerApp(RoutedApp):
    """The ASGI app of ``start_server`` over an open :class:`Runtime`."""

    error_table = SERVER_TABLE

    def __init__(
        self,
        runtime: Runtime,
        *,
        auth_token: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        root_dir: str | None = None,
        allow_network: bool = False,
        sse_keepalive_ms: int | None = None,
    ) -> None:
        self.setup(runtime, auth_token, max_body_bytes, sse_keepalive_ms, server_authorized)
        self.root = os.path.realpath(root_dir or os.getcwd())
        self.allow_network = allow_network
        R = re.compile
        self.routes = [
            ("GET", R(r"^/metrics$"), "/metrics", self.h_metrics),
            ("POST", R(r"^/v1/runs$"), "/v1/runs", self.h_start),
            ("POST", R(rf"^/v1/runs/{_SEG}/resume$"), "/v1/runs/:runId/resume", self.h_resume),
            ("POST", R(rf"^/v1/runs/{_SEG}/cancel$"), "/v1/runs/:runId/cancel", self.h_cancel),
            ("GET", R(rf"^/v1/runs/{_SEG}/events$"), "/v1/runs/:runId/events", self.h_events),
            ("GET", R(rf"^/v1/runs/{_SEG}$"), "/v1/runs/:runId", self.h_status),
            ("GET", R(rf"^/v1/runs/{_SEG}/frames$"), "/v1/runs/:runId/frames", self.h_frames),
            (
                "POST",
                R(rf"^/v1/runs/{_SEG}/nodes/{_SEG}/approve$"),
                "/v1/runs/:runId/nodes/:nodeId/approve",
                self.h_approve,
            ),
            (
                "POST",
                R(rf"^/v1/runs/{_SEG}/nodes/{_SEG}/deny$"),
                "/v1/runs/:runId/nodes/:nodeId/deny",
                self.h_deny,
            ),
            (
                "POST",
                R(rf"^/v1/runs/{_SEG}/signals/{_SEG}$"),
                "/v1/runs/:runId/signals/:signalName",
                self.h_signal,
            ),
            ("POST", R(rf"^/signal/{_SEG}/{_SEG}$"), "/signal/:runId/:signalName", self.h_signal),
            ("GET", R(r"^/v1/approvals$"), "/v1/approvals", self.h_approvals),
            ("GET", R(r"^/v1/approval/list$"), "/v1/approval/list", self.h_approvals),
            ("GET", R(r"^/approval/list$"), "/approval/list", self.h_approvals),
            ("GET", R(r"^/approvals$"), "/approvals", self.h_approvals),
            ("GET", R(r"^/v1/runs$"), "/v1/runs", self.h_list),
        ]

    # -- helpers ----------------------------------------------------------------------------
    async def _body(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        value = await read_json(receive, scope_headers(scope), self.max_body_bytes)
        return value if isinstance(value, dict) else {}

    def _require_run(self, run_id: str) -> dict[str, Any]:
        row = self.rt.db.run_row(run_id)
        if row is None:
            raise HttpError(404, "NOT_FOUND", "Run not found")
        return row

    def _sandbox(self, workflow_path: str) -> str:
        joined = os.path.join(self.root, workflow_path)
        if not inside_root(os.path.normpath(joined), self.root):
            raise HttpError(
                400,
                "WORKFLOW_PATH_OUTSIDE_ROOT",
                "Workflow path must be within server root directory",
            )
        real = os.path.realpath(joined)
        if not inside_root(real, self.root):
            raise HttpError(
                400,
                "WORKFLOW_PATH_OUTSIDE_ROOT",
                "Workflow path must be within server root directory",
            )
        return real

    async def _load(self, body: dict[str, Any]) -> tuple[Workflow, str, dict[str, Any], Any]:
        """Validate ``workflowPath``, ``input`` and ``config``; sandbox the path; load it."""
        workflow_path = body.get("workflowPath")
        if not isinstance(workflow_path, str) or not workflow_path:
            raise HttpError(400, "INVALID_REQUEST", "workflowPath must be a string")
        run_input: Any = {}
        if "input" in body:
            run_input = body["input"]
            if not isinstance(run_input, dict):
                raise HttpError(400, "INVALID_REQUEST", "input must be a JSON object")
        config: dict[str, Any] = {}
        raw_config = body.get("config")
        if isinstance(raw_config, dict) and "maxConcurrency" in raw_config:
            value = raw_config["maxConcurrency"]
            if isinstance(value, int | float):  # bool included, as JS Number(true) is 1
                number = float(value)
            elif isinstance(value, str):
                number = js_number(value)
            else:
                number = math.nan
            if not math.isfinite(number) or number <= 0:
                raise HttpError(
                    400, "INVALID_REQUEST", "config.maxConcurrency must be a positive number"
                )
            config["maxConcurrency"] = value
        path = self._sandbox(workflow_path)
        try:
            workflow = await anyio.to_thread.run_sync(load_workflow, path)
        except SmithersError as exc:
            raise HttpError(500, "SERVER_ERROR", exc.message) from exc
        return workflow, path, config, run_input

    # -- routes -----------------------------------------------------------------------------
    async def h_metrics(self, scope: Scope, receive: Receive) -> Response:
        return Reply(
            200,
            self.metrics.render(),
            [
                (b"content-type", CONTENT_TYPE.encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
            ],
        )

    async def h_start(self, scope: Scope, receive: Receive) -> Response:
        body = await self._body(scope, receive)
        run_id = body.get("runId")
        # D7/SRV-65: runId is validated up front (upstream fails asynchronously)
        if run_id is not None and (
            not isinstance(run_id, str) or not run_id.strip() or len(run_id) > MAX_RUN_ID
        ):
            raise HttpError(
                400, "INVALID_REQUEST", "runId must be a non-empty string of at most 256 chars"
            )
        workflow, path, config, run_input = await self._load(body)
        if js_truthy(body.get("resume")):
            if not run_id:
                raise HttpError(400, "RUN_ID_REQUIRED", "runId is required when resume is true")
            return await self._resume(run_id, workflow)
        try:
            result = await self.rt.service.launch(
                workflow,
                run_input,
                run_id=run_id,
                auth=RunAuth.for_trigger("server"),
                config=config or None,
                workflow_path=path,
                allow_network=self.allow_network,
            )
        except SmithersError as exc:
            if exc.code == "INVALID_INPUT":
                details = {"issues": exc.details["issues"]} if exc.details else None
                raise HttpError(400, "INVALID_REQUEST", exc.message, details) from exc
            raise
        return json_response(200, {"runId": result["runId"]})

    async def _resume(self, run_id: str, workflow: Workflow) -> Response:
        if self.rt.db.run_row(run_id) is None:
            raise HttpError(404, "RUN_NOT_FOUND", "Run id does not exist")
        try:
            result = await self.rt.service.resume(run_id, workflow)
        except SmithersError as exc:
            if exc.code == "RUN_NOT_FOUND":
                raise HttpError(404, "RUN_NOT_FOUND", "Run id does not exist") from exc
            raise
        # D6: a terminal run executes nothing and answers its status
        return json_response(200, {"runId": run_id, "status": result["status"]})

    async def h_resume(self, scope: Scope, receive: Receive, run_id: str) -> Response:
        run_id = strict_unquote(run_id)
        body = await self._body(scope, receive)
        workflow, _path, _config, _input = await self._load(body)
        return await self._resume(run_id, workflow)

    async def h_cancel(self, scope: Scope, receive: Receive, run_id: str) -> Response:
        run_id = strict_unquote(run_id)
        self._require_run(run_id)
        result = await self.rt.service.cancel(run_id)
        return json_response(200, {"runId": run_id, "status": result["status"]})

    async def h_events(self, scope: Scope, receive: Receive, run_id: str) -> Response:
        run_id = strict_unquote(run_id)
        self._require_run(run_id)
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        last = headers.get(b"last-event-id")
        cursor = parse_cursor(
            last.decode("latin-1") if last is not None else None, query(scope).get("afterSeq")
        )
        return self.streams.stream(run_id, cursor, keepalive_ms=self.keepalive_ms)

    async def h_status(self, scope: Scope, receive: Receive, run_id: str) -> Response:
        run_id = strict_unquote(run_id)
        try:
            run = await self.rt.service.get_run(run_id)
        except SmithersError as exc:
            if exc.code == "RUN_NOT_FOUND":
                raise HttpError(404, "NOT_FOUND", "Run not found") from exc
            raise
        body: dict[str, Any] = {
            "runId": run["runId"],
            "workflowName": run.get("workflowName") or "workflow",
            "status": run.get("status") or "unknown",
            "startedAtMs": run.get("startedAtMs"),
            "finishedAtMs": run.get("finishedAtMs"),
        }
        if "runState" in run:
            body["runState"] = run["runState"]
        body["summary"] = run.get("summary") or {}
        return json_response(200, body)

    async def h_frames(self, scope: Scope, receive: Receive, run_id: str) -> Response:
        run_id = strict_unquote(run_id)
        self._require_run(run_id)
        q = query(scope)
        limit = positive_int(q.get("limit"), 50)
        after = -1
        raw_after = q.get("afterFrameNo")
        if raw_after is not None and raw_after != "":
            after = max(optional_int(raw_after, -1), -1)
        frames = await self.rt.db.call(self.rt.db.list_frames, run_id, limit, after)
        return json_response(200, frames)

    async def h_approve(self, scope: Scope, receive: Receive, run_id: str, node: str) -> Response:
        return await self._decide(scope, receive, run_id, node, approved=True)

    async def h_deny(self, scope: Scope, receive: Receive, run_id: str, node: str) -> Response:
        return await self._decide(scope, receive, run_id, node, approved=False)

    async def _decide(
        self, scope: Scope, receive: Receive, run_id: str, node_id: str, *, approved: bool
    ) -> Response:
        run_id, node_id = strict_unquote(run_id), strict_unquote(node_id)
        body = await self._body(scope, receive)
        iteration, note, decided_by = decision_fields(body)
        self._require_run(run_id)
        await self.rt.service.decide_approval(
            run_id,
            node_id,
            approved=approved,
            iteration=iteration,
            note=note,
            decided_by=decided_by,
            decision=body.get("decision"),
            identity=OPERATOR,
        )
        return json_response(200, {"runId": run_id})

    async def h_signal(self, scope: Scope, receive: Receive, run_id: str, name: str) -> Response:
        signal_name = strict_unquote(name)
        run_id = strict_unquote(run_id)
        body = await self._body(scope, receive)
        self._require_run(run_id)
        result = await deliver(self.rt, run_id, signal_name, body)
        return json_response(200, result)

    async def h_approvals(self, scope: Scope, receive: Receive) -> Response:
        items = await self.rt.db.call(approval_items, self.rt.db)
        return json_response(200, {"approvals": items})

    async def h_list(self, scope: Scope, receive: Receive) -> Response:
        q = query(scope)
        limit = positive_int(q.get("limit"), 50)
        status = q.get("status") or None
        rows = await self.rt.service.list_runs(limit, status)
        out = []
        for row in rows:
            full = self.rt.db.get_run(row["runId"])
            if full is not None and "runState" in full:
                row["runState"] = full["runState"]
            out.append(row)
        return json_response(200, out)


def decision_fields(body: dict[str, Any]) -> tuple[int, str | None, str | None]:
    """``iteration`` (default 0), ``note`` and ``decidedBy`` of an approve/deny body."""
    iteration = body.get("iteration", 0)
    if iteration is None:
        iteration = 0
    if isinstance(iteration, float) and iteration.is_integer():
        iteration = int(iteration)
    if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 0:
        raise HttpError(400, "INVALID_REQUEST", "iteration must be a non-negative integer")
    note = body.get("note")
    decided_by = body.get("decidedBy")
    if note is not None and not isinstance(note, str):
        raise HttpError(400, "INVALID_REQUEST", "note must be a string")
    if decided_by is not None and not isinstance(decided_by, str):
        raise HttpError(400, "INVALID_REQUEST", "decidedBy must be a string")
    return iteration, note, decided_by


async def deliver(rt: Runtime, run_id: str, signal_name: str, body: dict[str, Any]) -> Any:
    """Deliver a signal: upstream body rules, then the run service (empty name: 500)."""
    data = body.get("data")
    correlation = body.get("correlationId")
    received_by = body.get("receivedBy")
    try:
        return await rt.service.deliver_signal(
            run_id,
            signal_name,
            {} if data is None else data,
            correlation_id=correlation if isinstance(correlation, str) else None,
            received_by=received_by if isinstance(received_by, str) else None,
        )
    except SmithersError as exc:
        if exc.code == "INVALID_INPUT":  # upstream: an empty signal name is a 500
            raise HttpError(500, "SERVER_ERROR", exc.message) from exc
        raise


def approval_items(db: SmithersDb) -> list[dict[str, Any]]:
    """Pending approvals, longest-waiting first, in upstream's item shape (server.md 2.10)."""
    now = int(time.time() * 1000)
    rows = sorted(
        db.pending_approvals(),
        key=lambda r: (
            r.get("requested_at_ms") or 0,
            r["run_id"],
            r["node_id"],
            r.get("iteration") or 0,
        ),
    )
    items = []
    for r in rows:
        requested = r.get("requested_at_ms")
        label = r.get("label") or r["node_id"]
        items.append(
            {
                "runId": r["run_id"],
                "nodeId": r["node_id"],
                "iteration": r.get("iteration") or 0,
                "workflowName": r.get("workflow_name") or "workflow",
                "runStatus": r.get("run_status"),
                "label": label,
                "requestTitle": label,
                "requestSummary": r.get("note"),
                "requestedAtMs": requested,
                "waitingMs": max(0, now - requested) if isinstance(requested, int) else 0,
                "note": r.get("note"),
                "decidedBy": r.get("decided_by"),
            }
        )
    return items


def create_server_app(
    runtime: Runtime,
    *,
    auth_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    root_dir: str | None = None,
    allow_network: bool = False,
    sse_keepalive_ms: int | None = None,
) -> ServerApp:
    """The ASGI app of ``start_server`` over an *open* runtime (mount it or drive it)."""
    return ServerApp(
        runtime,
        auth_token=auth_token,
        max_body_bytes=max_body_bytes,
        root_dir=root_dir,
        allow_network=allow_network,
        sse_keepalive_ms=sse_keepalive_ms,
    )


@dataclass
class RunningServer:
    """An ``async with serve_server(...)`` result: address, app and runtime."""

    bound: BoundServer
    app: ServerApp
    runtime: Runtime

    @property
    def port(self) -> int:
        assert self.bound.port is not None
        return self.bound.port

    @property
    def url(self) -> str:
        return self.bound.url


@asynccontextmanager
async def serve_server(
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    db: str | SmithersDb | SqliteStore | None = None,
    auth_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    root_dir: str | None = None,
    allow_network: bool = False,
    headers_timeout: int | None = None,
    request_timeout: int | None = None,
    insecure: bool = False,
    *,
    options: EngineOptions | None = None,
    sse_keepalive_ms: int | None = None,
    sse_poll_ms: int | None = None,
    plugins: PluginHost | None = None,
) -> AsyncIterator[RunningServer]:
    """Run the server inside the current event loop; leaving suspends its runs (D6)."""
    token = resolve_token(auth_token)
    if not is_loopback_host(host) and token is None and not insecure:
        raise SmithersError(
            "SERVER_INSECURE_BIND",
            f"Refusing to bind {host} without an auth token (pass insecure=True to override)",
        )
    root = os.path.realpath(root_dir or os.getcwd())
    if not os.path.isdir(root):
        raise SmithersError("INVALID_INPUT", f"root_dir is not a directory: {root}")
    store: str | SqliteStore
    base_dir = Path.cwd()
    if db is None:
        store, base_dir = "sqlite:///smithers.db", Path(root)
    elif isinstance(db, SmithersDb):
        store = db.store
    else:
        store = db
    poll = sse_poll_ms if sse_poll_ms is not None else env_int("SMITHERS_SSE_POLL_MS", 250)
    runtime = Runtime(
        store,
        base_dir=base_dir,
        resolver=make_resolver(root),
        options=options,
        root_dir=root,
        allow_network=allow_network,
        plugins=plugins,
        sse_poll_ms=poll,
    )
    async with runtime, anyio.create_task_group() as tg:
        app = create_server_app(
            runtime,
            auth_token=token or "",
            max_body_bytes=max_body_bytes,
            root_dir=root,
            allow_network=allow_network,
            sse_keepalive_ms=sse_keepalive_ms,
        )
        bound = await serve_app(
            tg,
            app,
            host=host,
            port=port,
            lifespan="off",
            headers_timeout_ms=timeout_ms(headers_timeout, "HEADERS", 30_000),
            request_timeout_ms=timeout_ms(request_timeout, "REQUEST", 60_000),
        )
        try:
            yield RunningServer(bound, app, runtime)
        finally:
            # open SSE streams end at once; anything still open after 3 s is dropped
            app.streams.stop()
            with anyio.CancelScope(shield=True):
                await bound.close(grace_s=3)
            tg.cancel_scope.cancel()


@dataclass
class ServerHandle:
    """What :func:`start_server` returns: where it listens and how to stop it."""

    port: int
    url: str
    app: ServerApp
    runtime: Runtime
    _close: Callable[[], None] = field(repr=False)

    def close(self) -> None:
        """Stop the server and suspend (never cancel) its runs (D6). Idempotent."""
        self._close()


def start_server(
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    db: str | SmithersDb | SqliteStore | None = None,
    auth_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    root_dir: str | None = None,
    allow_network: bool = False,
    headers_timeout: int | None = None,
    request_timeout: int | None = None,
    insecure: bool = False,
    **kwargs: Any,
) -> ServerHandle:
    """Start the server on a daemon thread; returns once the socket is bound (D9).

    Extra keyword arguments (``options``, ``sse_keepalive_ms``, ``sse_poll_ms``, ``plugins``)
    go to :func:`serve_server`.
    """
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        try:
            async with serve_server(
                port,
                host,
                db,
                auth_token,
                max_body_bytes,
                root_dir,
                allow_network,
                headers_timeout,
                request_timeout,
                insecure,
                **kwargs,
            ) as running:
                stop = anyio.Event()
                box.update(running=running, stop=stop, token=anyio.lowlevel.current_token())
                ready.set()
                await stop.wait()
        except BaseException as exc:
            box["error"] = exc
            raise
        finally:
            ready.set()

    def run() -> None:
        try:
            anyio.run(main)
        except BaseException as exc:
            box.setdefault("error", exc)

    thread = threading.Thread(target=run, name="smithers-server", daemon=True)
    thread.start()
    ready.wait()
    if "running" not in box:
        error = box.get("error")
        if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        raise error if isinstance(error, BaseException) else RuntimeError("server failed")
    running: RunningServer = box["running"]
    closed = threading.Lock()

    def close() -> None:
        if not closed.acquire(blocking=False):
            return
        if thread.is_alive():
            try:
                anyio.from_thread.run_sync(box["stop"].set, token=box["token"])
            except RuntimeError:
                pass
            thread.join(30)

    return ServerHandle(running.port, running.url, running.app, running.runtime, close)


__all__ = [
    "RunningServer",
    "ServerApp",
    "ServerHandle",
    "create_server_app",
    "serve_server",
    "start_server",
]
