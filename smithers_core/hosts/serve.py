"""``create_serve_app``: the app of one loaded workflow and one run (reference/server.md 3).

``adapter`` is the open :class:`~smithers_core.runtime.Runtime` executing the run (upstream
passes its DB adapter; here the store, event hub and run service travel together). Routes:
``GET /health`` (no auth), ``GET /``, ``GET /events`` (the shared SSE of D9), ``GET /frames``,
``POST /approve/{nodeId}``, ``POST /deny/{nodeId}``, ``POST /cancel``, ``GET /metrics`` and
``POST /signals/{signalName}`` (alias ``/signal/{signalName}``). After approve, deny and signal
the app resumes its run itself with the workflow it was given.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
from starlette.types import Receive, Scope

from smithers_core.engine.transitions import TERMINAL_RUN
from smithers_core.errors import SmithersError
from smithers_core.hosts.common import OPERATOR, RoutedApp, log, strict_unquote
from smithers_core.hosts.errors import SERVE_TABLE
from smithers_core.hosts.server import (
    decision_fields,
    deliver,
    timeout_ms,
)
from smithers_core.hosts.sse import parse_cursor
from smithers_core.http.asgi import query, scope_headers
from smithers_core.http.auth import resolve_token, serve_authorized
from smithers_core.http.binding import BoundServer, serve_app
from smithers_core.http.body import read_body, read_json
from smithers_core.http.errors import HttpError
from smithers_core.http.params import int_prefix
from smithers_core.http.responses import Reply, Response, json_response
from smithers_core.metrics import CONTENT_TYPE
from smithers_core.runtime import Runtime
from smithers_core.workflow.definition import Workflow

Abort = anyio.Event | threading.Event
MAX_BODY_BYTES = 1_048_576
_SEG = "([^/]+)"
Handler = Callable[..., Awaitable[Response]]


class ServeApp(RoutedApp):
    """The ASGI app of one run."""

    error_table = SERVE_TABLE
    strict_headers = False  # upstream serve sends plain JSON responses
    count_health = False  # health checks are never counted (reference/server.md 3)

    def __init__(
        self,
        workflow: Workflow,
        adapter: Runtime,
        run_id: str,
        abort: Abort | None,
        *,
        auth_token: str | None = None,
        metrics: bool = True,
        sse_keepalive_ms: int | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.workflow = workflow
        self.rt = adapter
        self.run_id = run_id
        self.abort = abort
        self.setup(adapter, auth_token, max_body_bytes, sse_keepalive_ms, serve_authorized)
        self.metrics_enabled = metrics
        R = re.compile
        self.routes = [
            ("GET", R(r"^/$"), "/", self.h_status),
            ("GET", R(r"^/events$"), "/events", self.h_events),
            ("GET", R(r"^/frames$"), "/frames", self.h_frames),
            ("POST", R(rf"^/approve/{_SEG}$"), "/approve/:nodeId", self.h_approve),
            ("POST", R(rf"^/deny/{_SEG}$"), "/deny/:nodeId", self.h_deny),
            ("POST", R(r"^/cancel$"), "/cancel", self.h_cancel),
            ("POST", R(rf"^/signals/{_SEG}$"), "/signals/:signalName", self.h_signal),
            ("POST", R(rf"^/signal/{_SEG}$"), "/signal/:signalName", self.h_signal),
        ]
        if metrics:
            self.routes.append(("GET", R(r"^/metrics$"), "/metrics", self.h_metrics))

    # -- helpers ----------------------------------------------------------------------------
    async def _lenient_body(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        """Upstream serve treats an invalid or missing body as ``{}`` (size is still capped)."""
        try:
            value = await read_json(receive, scope_headers(scope), self.max_body_bytes)
        except HttpError as exc:
            if exc.status == 413:
                raise
            return {}
        return value if isinstance(value, dict) else {}

    async def _after_inbox(self) -> None:
        """Resume the parked run with our workflow when the decision made it runnable."""
        row = self.rt.db.run_row(self.run_id)
        if row is None or row["status"] != "running" or row["runtime_owner_id"] is not None:
            return
        if self.run_id in self.rt.engine.active:
            return
        try:
            await self.rt.service.resume(self.run_id, self.workflow)
        except SmithersError as exc:
            log.warning("could not resume run %s: %s", self.run_id, exc.message)

    # -- routes -----------------------------------------------------------------------------
    async def h_status(self, scope: Scope, receive: Receive) -> Response:
        run = self.rt.db.get_run(self.run_id)
        if run is None:
            raise HttpError(404, "RUN_NOT_FOUND", "Run not found")
        return json_response(
            200,
            {
                "runId": run["runId"],
                "workflowName": run.get("workflowName") or "workflow",
                "status": run.get("status") or "unknown",
                "startedAtMs": run.get("startedAtMs"),
                "finishedAtMs": run.get("finishedAtMs"),
                "summary": run.get("summary") or {},
            },
            strict=False,
        )

    async def h_events(self, scope: Scope, receive: Receive) -> Response:
        if self.rt.db.run_row(self.run_id) is None:
            # deliberate: upstream streams forever for a missing run; we answer 404
            raise HttpError(404, "RUN_NOT_FOUND", "Run not found")
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        last = headers.get(b"last-event-id")
        cursor = parse_cursor(
            last.decode("latin-1") if last is not None else None, query(scope).get("afterSeq")
        )
        return self.streams.stream(self.run_id, cursor, keepalive_ms=self.keepalive_ms)

    async def h_frames(self, scope: Scope, receive: Receive) -> Response:
        q = query(scope)
        limit = int_prefix(q.get("limit"))
        if not limit:
            limit = 50
        elif limit < 0:
            limit = 1
        after = int_prefix(q.get("afterFrameNo"))
        frames = self.rt.db.list_frames(
            self.run_id, limit, after if after is not None and after >= 0 else -1
        )
        return json_response(200, frames, strict=False)

    async def h_approve(self, scope: Scope, receive: Receive, node: str) -> Response:
        return await self._decide(scope, receive, node, approved=True)

    async def h_deny(self, scope: Scope, receive: Receive, node: str) -> Response:
        return await self._decide(scope, receive, node, approved=False)

    async def _decide(
        self, scope: Scope, receive: Receive, node: str, *, approved: bool
    ) -> Response:
        node_id = strict_unquote(node)
        body = await self._lenient_body(scope, receive)
        iteration, note, decided_by = decision_fields(body)
        await self.rt.service.decide_approval(
            self.run_id,
            node_id,
            approved=approved,
            iteration=iteration,
            note=note,
            decided_by=decided_by,
            decision=body.get("decision"),
            identity=OPERATOR,
        )
        await self._after_inbox()
        return json_response(200, {"runId": self.run_id}, strict=False)

    async def h_cancel(self, scope: Scope, receive: Receive) -> Response:
        await read_body(receive, scope_headers(scope), self.max_body_bytes)
        row = self.rt.db.run_row(self.run_id)
        if row is None:
            raise HttpError(404, "RUN_NOT_FOUND", "Run not found")
        if row["status"] in TERMINAL_RUN:
            raise HttpError(409, "RUN_NOT_ACTIVE", "Run is not currently active")
        result = await self.rt.service.cancel(self.run_id)
        if self.abort is not None:
            self.abort.set()
        return json_response(200, {"runId": self.run_id, "status": result["status"]}, strict=False)

    async def h_signal(self, scope: Scope, receive: Receive, name: str) -> Response:
        signal_name = strict_unquote(name)
        body = await self._lenient_body(scope, receive)
        if self.rt.db.run_row(self.run_id) is None:
            raise HttpError(404, "RUN_NOT_FOUND", "Run not found")
        result = await deliver(self.rt, self.run_id, signal_name, body)
        await self._after_inbox()
        return json_response(200, result, strict=False)

    async def h_metrics(self, scope: Scope, receive: Receive) -> Response:
        return Reply(200, self.metrics.render(), [(b"content-type", CONTENT_TYPE.encode())])


def create_serve_app(
    workflow: Workflow,
    adapter: Runtime,
    run_id: str,
    abort: Abort | None = None,
    auth_token: str | None = None,
    metrics: bool = True,
    *,
    sse_keepalive_ms: int | None = None,
) -> ServeApp:
    """The app of ``run_id``; ``auth_token`` falls back to ``SMITHERS_API_KEY`` (D9)."""
    return ServeApp(
        workflow,
        adapter,
        run_id,
        abort,
        auth_token=auth_token,
        metrics=metrics,
        sse_keepalive_ms=sse_keepalive_ms,
    )


async def serve_up(
    runtime: Runtime,
    workflow: Workflow,
    run_id: str,
    *,
    host: str = "127.0.0.1",
    port: int = 7331,
    auth_token: str | None = None,
    metrics: bool = True,
    ready: Callable[[BoundServer], Any] | None = None,
    insecure: bool = False,
    headers_timeout: int | None = None,
    request_timeout: int | None = None,
) -> None:
    """Serve the app of an already launched run until cancelled (``smithers up --serve``).

    Binds ``host:port`` (``SERVER_INSECURE_BIND`` for a non-loopback host without a token
    unless ``insecure``), calls ``ready(bound)`` once listening, and keeps serving after the
    run ends so its final state can be read. Cancel the calling task (Ctrl+C) to stop; the
    caller's runtime then suspends the run (D6).
    """
    from smithers_core.http.binding import is_loopback_host

    token = resolve_token(auth_token)
    if not is_loopback_host(host) and token is None and not insecure:
        raise SmithersError(
            "SERVER_INSECURE_BIND",
            f"Refusing to bind {host} without an auth token (pass insecure=True to override)",
        )
    abort = anyio.Event()
    app = create_serve_app(workflow, runtime, run_id, abort, token or "", metrics)
    async with anyio.create_task_group() as tg:
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
            if ready is not None:
                result = ready(bound)
                if hasattr(result, "__await__"):
                    await result
            await anyio.sleep_forever()
        finally:
            app.streams.stop()
            with anyio.CancelScope(shield=True):
                await bound.close(grace_s=3)


__all__ = ["ServeApp", "create_serve_app", "serve_up"]
