"""The run routes both HTTP surfaces serve, written once (reference/server.md 2.7-2.9, 3.3, 5).

Each handler works on one run: the path's ``runId`` on start_server, the app's own run in the
serve app (:class:`OwnRun`). The operations are the run service's (D8); what the surfaces
spell differently comes from their :class:`~smithers_core.hosts.surface.Surface`. Each route,
step by step (the order decides which error a client sees):

- every route of start_server: the path's ``runId`` (400 unless a run id, D4);
- status: the run (404), its body; ``runState`` where the surface has it;
- events: the run (404), the cursor (400), then the one SSE stream (``hosts/sse.py``);
- frames: the run (404) where the surface checks it, the parameters, frames newest first;
- approve, deny: the body (413, 400), its fields (400), the run (404), the decision (409 when
  the node is not waiting, 403 for ``allowed_users``), then the own run is resumed;
- cancel: the run (404), the cancel (409 for a terminal run), then the own run's abort is set;
  the body is never read;
- signal: the body, the run (404), the delivery (409 for a terminal run, 400 for an empty
  name, 400 ``INVALID_INPUT`` when the waiting node's model refuses the payload), then the
  own run is resumed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import anyio

from smithers_core.auth import Identity
from smithers_core.errors import SmithersError
from smithers_core.hosts.app import HostApp, Request
from smithers_core.hosts.sse import parse_cursor
from smithers_core.http.errors import HttpError
from smithers_core.http.params import MAX_SQL_INT
from smithers_core.http.responses import Response
from smithers_core.ids import check_run_id
from smithers_core.store.runs import CancelAttribution
from smithers_core.workflow.definition import Workflow

log = logging.getLogger("smithers.hosts")

OPERATOR = Identity(role="operator", scopes=("*",), user_id=None, token_id=None)
"""D9: the identity of a start_server / serve token holder (it never satisfies
``allowed_users``; ``decidedBy`` is only recorded)."""

Abort = anyio.Event | threading.Event


@dataclass(frozen=True, slots=True)
class OwnRun:
    """The serve app's one run: every route's run; after approve, deny and signal the app
    resumes it itself with ``workflow``; cancel also sets ``abort`` (D9)."""

    run_id: str
    workflow: Workflow
    abort: Abort | None


class RunRoutes:
    """The shared run-route handlers of one app (the app adds them to its router)."""

    def __init__(self, app: HostApp, own: OwnRun | None = None) -> None:
        self.app = app
        self.own = own

    def run_id(self, req: Request) -> str:
        """The run a request is about: the own run, else the path's ``runId`` (400
        ``INVALID_REQUEST`` unless it is a valid run id, D4)."""
        if self.own is not None:
            return self.own.run_id
        return check_run_id(req.params["runId"], code="INVALID_REQUEST")

    def require_run(self, run_id: str) -> None:
        """``RUN_NOT_FOUND`` (404 in the surface's words) unless the run exists."""
        self.app.rt.service.require_run(run_id)

    # -- reads ------------------------------------------------------------------------------
    async def status(self, req: Request) -> Response:
        """The run's status body (reference/server.md 2.7, 3.3)."""
        run = await self.app.rt.service.get_run(self.run_id(req))
        body: dict[str, Any] = {
            "runId": run["runId"],
            "workflowName": run.get("workflowName") or "workflow",
            "status": run.get("status") or "unknown",
            "startedAtMs": run.get("startedAtMs"),
            "finishedAtMs": run.get("finishedAtMs"),
        }
        if self.app.surface.status_run_state and "runState" in run:
            body["runState"] = run["runState"]
        body["summary"] = run.get("summary") or {}
        return self.app.reply(200, body)

    async def events(self, req: Request) -> Response:
        """The run's events as SSE from the cursor (D9)."""
        run_id = self.run_id(req)
        self.require_run(run_id)  # deliberate in the serve app too: upstream streams forever
        cursor = parse_cursor(req.headers.get("last-event-id"), req.query.get("afterSeq"))
        return self.app.streams.stream(run_id, cursor, keepalive_ms=self.app.keepalive_ms)

    async def frames(self, req: Request) -> Response:
        """The run's frames, newest first (reference/server.md 2.9, 3.3)."""
        run_id = self.run_id(req)
        if self.app.surface.frames_need_run:
            self.require_run(run_id)
        limit, after = self.app.surface.frames_query(req.query)
        db = self.app.rt.db
        return self.app.reply(200, await db.call(db.list_frames, run_id, limit, after))

    # -- changes ----------------------------------------------------------------------------
    async def approve(self, req: Request) -> Response:
        """Approve the path's ``nodeId`` (reference/server.md 5.2)."""
        return await self._decide(req, approved=True)

    async def deny(self, req: Request) -> Response:
        """Deny the path's ``nodeId`` (reference/server.md 5.2)."""
        return await self._decide(req, approved=False)

    async def _decide(self, req: Request, *, approved: bool) -> Response:
        run_id = self.run_id(req)
        body = await self.app.body(req)
        iteration, note, decided_by = decision_fields(body)
        self.require_run(run_id)
        await self.app.rt.service.decide_approval(
            run_id,
            req.params["nodeId"],
            approved=approved,
            iteration=iteration,
            note=note,
            decided_by=decided_by,
            decision=body.get("decision"),
            identity=OPERATOR,
        )
        await self._resume_own()
        return self.app.reply(200, {"runId": run_id})

    async def cancel(self, req: Request) -> Response:
        """Cancel the run: ``cancelling`` while it stops, else ``cancelled`` (D7)."""
        run_id = self.run_id(req)
        self.require_run(run_id)
        by = CancelAttribution(source=self.app.surface.name)
        result = await self.app.rt.service.cancel(run_id, by)
        if self.own is not None and self.own.abort is not None:
            self.own.abort.set()
        return self.app.reply(200, {"runId": run_id, "status": result["status"]})

    async def signal(self, req: Request) -> Response:
        """Deliver the path's ``signalName`` to the run (reference/server.md 5.3)."""
        run_id = self.run_id(req)
        body = await self.app.body(req)
        self.require_run(run_id)
        data = body.get("data")
        correlation = body.get("correlationId")
        received_by = body.get("receivedBy")
        try:
            result = await self.app.rt.service.deliver_signal(
                run_id,
                req.params["signalName"],
                {} if data is None else data,
                correlation_id=correlation if isinstance(correlation, str) else None,
                received_by=received_by if isinstance(received_by, str) else None,
                workflow=self.own.workflow if self.own is not None else None,
            )
        except SmithersError as exc:
            if exc.code == "INVALID_INPUT" and (exc.details or {}).get("issues"):
                # the waiting node's model refused the payload (issue 13)
                raise HttpError(400, "INVALID_INPUT", exc.message, exc.details) from exc
            if exc.code == "INVALID_INPUT":  # changed (issue 13): upstream answers 500
                raise HttpError(400, "INVALID_REQUEST", exc.message) from exc
            raise
        await self._resume_own()
        return self.app.reply(200, result)

    async def _resume_own(self) -> None:
        """Resume the own run with its workflow when a decision or signal made it runnable
        (start_server's engine resumes runs itself, loading them through its resolver)."""
        own = self.own
        if own is None:
            return
        rt = self.app.rt
        row = rt.db.run_row(own.run_id)
        if row is None or row["status"] != "running" or row["runtime_owner_id"] is not None:
            return
        if own.run_id in rt.engine.active:
            return
        try:
            await rt.service.resume(own.run_id, own.workflow)
        except SmithersError as exc:
            log.warning("could not resume run %s: %s", own.run_id, exc.message)


def decision_fields(body: dict[str, Any]) -> tuple[int, str | None, str | None]:
    """``iteration`` (default 0, an integer from 0 to 2**63 - 1), ``note`` and ``decidedBy``
    of an approve/deny body (400 ``INVALID_REQUEST`` otherwise)."""
    iteration = body.get("iteration", 0)
    if iteration is None:
        iteration = 0
    if isinstance(iteration, float) and iteration.is_integer():
        iteration = int(iteration)
    if (
        not isinstance(iteration, int)
        or isinstance(iteration, bool)
        or not 0 <= iteration <= MAX_SQL_INT  # beyond SQLite's integers: no such iteration
    ):
        raise HttpError(400, "INVALID_REQUEST", "iteration must be a non-negative integer")
    note = body.get("note")
    decided_by = body.get("decidedBy")
    if note is not None and not isinstance(note, str):
        raise HttpError(400, "INVALID_REQUEST", "note must be a string")
    if decided_by is not None and not isinstance(decided_by, str):
        raise HttpError(400, "INVALID_REQUEST", "decidedBy must be a string")
    return iteration, note, decided_by


__all__ = ["OPERATOR", "Abort", "OwnRun", "RunRoutes", "decision_fields"]
