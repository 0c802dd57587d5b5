"""``ServerApp``: the ASGI app of ``start_server`` (reference/server.md 2, D9).

Its route table in upstream's order. The run routes are the shared ones
(:mod:`~smithers_core.hosts.run_routes`); this module adds what only start_server has:
starting and resuming runs by ``workflowPath`` (sandboxed in ``root_dir``, real paths with
symlinks followed, reloaded when the file changes), the run list, the pending approvals and
its OpenAPI document (``GET /openapi.json``, :mod:`~smithers_core.hosts.openapi`).
Every route reads the runtime's store, so runs survive a restart.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from smithers_core.errors import SmithersError
from smithers_core.hosts.app import HostApp, Request
from smithers_core.hosts.openapi import server_document_bytes
from smithers_core.hosts.options import DEFAULT_MAX_BODY_BYTES, MAX_WORKFLOW_PATH
from smithers_core.hosts.run_routes import RunRoutes
from smithers_core.hosts.surface import SERVER
from smithers_core.http.errors import HttpError
from smithers_core.http.params import js_number, positive_int
from smithers_core.http.responses import STRICT, Reply, Response
from smithers_core.ids import check_run_id
from smithers_core.runtime import Runtime
from smithers_core.store import SmithersDb
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.loader import load_workflow, split_spec
from smithers_core.workflow.models import RunAuth

log = logging.getLogger("smithers.hosts")

OUTSIDE_ROOT = "Workflow path must be within server root directory"


class ServerApp(HostApp):
    """The ASGI app of ``start_server`` over an open :class:`Runtime`."""

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
        super().__init__(
            runtime,
            SERVER,
            auth_token=auth_token,
            max_body_bytes=max_body_bytes,
            sse_keepalive_ms=sse_keepalive_ms,
        )
        self.root = os.path.realpath(root_dir or os.getcwd())
        self.allow_network = allow_network
        runs = RunRoutes(self)
        add = self.router.add
        add("/metrics", self.metrics_route)
        self.add_public("/openapi.json", self.openapi_route)
        add("/v1/runs", self.start, ("POST",))
        add("/v1/runs/{runId}/resume", self.resume, ("POST",))
        add("/v1/runs/{runId}/cancel", runs.cancel, ("POST",))
        add("/v1/runs/{runId}/events", runs.events)
        add("/v1/runs/{runId}", runs.status)
        add("/v1/runs/{runId}/frames", runs.frames)
        add("/v1/runs/{runId}/nodes/{nodeId}/approve", runs.approve, ("POST",))
        add("/v1/runs/{runId}/nodes/{nodeId}/deny", runs.deny, ("POST",))
        add("/v1/runs/{runId}/signals/{signalName}", runs.signal, ("POST",))
        add("/signal/{runId}/{signalName}", runs.signal, ("POST",))
        for path in ("/v1/approvals", "/v1/approval/list", "/approval/list", "/approvals"):
            add(path, self.approvals)
        add("/v1/runs", self.list_runs)

    async def openapi_route(self, req: Request) -> Response:
        """``GET /openapi.json``: the OpenAPI 3.1 document of these routes (public, like
        ``/health``; built once per process, see :mod:`~smithers_core.hosts.openapi`)."""
        return Reply(200, server_document_bytes(), STRICT)

    # -- start and resume -------------------------------------------------------------------
    async def start(self, req: Request) -> Response:
        """``POST /v1/runs``: start a run, or resume one with ``resume`` (reference 2.5)."""
        body = await self.body(req)
        run_id = body.get("runId")
        # D7/SRV-65: runId is validated up front (upstream fails asynchronously); D4 ids
        if run_id is not None:
            check_run_id(run_id, code="INVALID_REQUEST")
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
            if exc.code == "INVALID_INPUT":  # the input model's field errors (issue 13)
                issues = exc.details.get("issues") if exc.details else None
                details = {"issues": issues} if issues is not None else exc.details
                raise HttpError(400, "INVALID_INPUT", exc.message, details) from exc
            raise
        return self.reply(200, {"runId": result["runId"]})

    async def resume(self, req: Request) -> Response:
        """``POST /v1/runs/:runId/resume`` (reference 2.6); the body's runId is ignored."""
        run_id = check_run_id(req.params["runId"], code="INVALID_REQUEST")
        body = await self.body(req)
        workflow, _path, _config, _input = await self._load(body)
        return await self._resume(run_id, workflow)

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
        return self.reply(200, {"runId": run_id, "status": result["status"]})

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
                # an integer beyond a double is Infinity in JavaScript: refused below
                number = float(value) if abs(value) < 2**1023 else math.inf
            elif isinstance(value, str):
                number = js_number(value)
            else:
                number = math.nan
            if not math.isfinite(number) or number <= 0:
                raise HttpError(
                    400, "INVALID_REQUEST", "config.maxConcurrency must be a positive number"
                )
            config["maxConcurrency"] = value
        if "\x00" in workflow_path:
            raise HttpError(400, "INVALID_REQUEST", "workflowPath must not contain NUL bytes")
        path = self._sandbox(workflow_path)
        try:
            workflow = await anyio.to_thread.run_sync(load_workflow, path)
        except SmithersError as exc:
            raise self._load_error(exc, path) from exc
        return workflow, path, config, run_input

    def _load_error(self, exc: SmithersError, path: str) -> HttpError:
        """A workflow that does not load, in words that name paths relative to the root only:
        404 ``WORKFLOW_NOT_FOUND`` (no such file, or no workflow in it), else 422
        ``WORKFLOW_LOAD_FAILED`` (the full message goes to the log, without a traceback)."""
        shown = os.path.relpath(path, self.root)
        message = exc.message.replace(path, shown).replace(self.root + os.sep, "")
        message = message.replace(self.root, ".")
        if exc.code == "WORKFLOW_NOT_FOUND":
            if not split_spec(path)[0].exists():
                message = f"Workflow file not found: {shown}"
            return HttpError(404, "WORKFLOW_NOT_FOUND", message, {"workflowPath": shown})
        log.warning("workflow %s failed to load: %s", path, exc.message)
        return HttpError(422, "WORKFLOW_LOAD_FAILED", message, {"workflowPath": shown})

    def _sandbox(self, workflow_path: str) -> str:
        """The real path of ``workflowPath`` (relative to the root); 400 outside the root,
        lexically or through a symlink."""
        if len(workflow_path) > MAX_WORKFLOW_PATH:
            raise HttpError(
                400,
                "INVALID_REQUEST",
                f"workflowPath must be at most {MAX_WORKFLOW_PATH} characters",
            )
        joined = os.path.join(self.root, workflow_path)
        if not inside_root(os.path.normpath(joined), self.root):
            raise HttpError(400, "WORKFLOW_PATH_OUTSIDE_ROOT", OUTSIDE_ROOT)
        real = os.path.realpath(joined)
        if not inside_root(real, self.root):
            raise HttpError(400, "WORKFLOW_PATH_OUTSIDE_ROOT", OUTSIDE_ROOT)
        return real

    # -- lists ------------------------------------------------------------------------------
    async def approvals(self, req: Request) -> Response:
        """``GET /v1/approvals`` and its legacy paths (reference 2.10)."""
        items = await self.rt.db.call(approval_items, self.rt.db)
        return self.reply(200, {"approvals": items})

    async def list_runs(self, req: Request) -> Response:
        """``GET /v1/runs``: newest first, exact ``status`` filter (reference 2.11, D7 Q11)."""
        q = req.query
        limit = positive_int(q.get("limit"), 50)
        rows = await self.rt.service.list_runs(limit, q.get("status") or None)
        for row in rows:
            full = self.rt.db.get_run(row["runId"])
            if full is not None and "runState" in full:
                row["runState"] = full["runState"]
        return self.reply(200, rows)


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value (``resume`` on ``POST /v1/runs``)."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    return True


def inside_root(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it (``/srv/app-evil`` is not below ``/srv/app``)."""
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


def approval_items(db: SmithersDb) -> list[dict[str, Any]]:
    """Pending approvals, longest-waiting first, in upstream's item shape (reference 2.10)."""
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


__all__ = ["ServerApp", "approval_items", "create_server_app", "inside_root", "make_resolver"]
