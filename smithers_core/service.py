"""``RunService``: every run operation the hosts offer, written once (D8).

``start_server``, ``create_serve_app`` and the gateway call these methods and only translate
wire shapes. Failures are semantic ``SmithersError`` codes (``RUN_NOT_FOUND``,
``NODE_NOT_WAITING``, ``ALREADY_DECIDED``, ``RUN_NOT_ACTIVE``, ``FORBIDDEN``,
``INVALID_INPUT`` ...); each surface maps them to its own status codes in one table.
"""

from __future__ import annotations

from typing import Any

from smithers_core import jsonutil, scopes
from smithers_core.auth import Identity
from smithers_core.engine.engine import Engine
from smithers_core.engine.signal_check import check_signal_payload
from smithers_core.engine.transitions import TERMINAL_RUN, WAITING_RUN, get_run_row
from smithers_core.errors import SmithersError
from smithers_core.ids import clip
from smithers_core.store import approvals, nodes, runs, signals
from smithers_core.store.base import Tx
from smithers_core.store.db import SmithersDb
from smithers_core.store.runs import CancelAttribution
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.models import RunAuth

MAX_SIGNAL_NAME = 256


class RunService:
    """Run operations over one engine and its store."""

    def __init__(self, engine: Engine, db: SmithersDb | None = None) -> None:
        self.engine = engine
        self.db = db or SmithersDb(engine.store)

    # -- lifecycle --------------------------------------------------------------------------
    async def launch(
        self,
        workflow: Workflow,
        input: Any = None,
        *,
        run_id: str | None = None,
        auth: RunAuth | None = None,
        config: dict[str, Any] | None = None,
        workflow_path: str | None = None,
        allow_network: bool | None = None,
    ) -> dict[str, Any]:
        run_id = await self.engine.launch(
            workflow,
            input,
            run_id=run_id,
            auth=auth,
            config=config,
            workflow_path=workflow_path,
            allow_network=allow_network,
        )
        return {"runId": run_id, "status": "running"}

    async def resume(self, run_id: str, workflow: Workflow | None = None) -> dict[str, Any]:
        result = await self.engine.resume(run_id, workflow)
        return {"runId": run_id, "status": result["status"]}

    async def cancel(self, run_id: str, by: CancelAttribution | None = None) -> dict[str, Any]:
        """Cancel a run (see :meth:`Engine.cancel`), recording who asked."""
        return await self.engine.cancel(run_id, by)

    async def rerun(
        self,
        run_id: str,
        workflow: Workflow,
        *,
        new_run_id: str | None = None,
        auth: RunAuth | None = None,
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new run of the same workflow with the stored, validated input (D7 Q10)."""
        if self.db.run_row(run_id) is None:
            raise SmithersError("RUN_NOT_FOUND", f"Run not found: {run_id}", {"runId": run_id})
        payload = self.db.input_of(run_id)
        return await self.launch(workflow, payload, run_id=new_run_id, auth=auth, config=config)

    # -- reads ------------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> dict[str, Any]:
        run = self.db.get_run(run_id)
        if run is None:
            raise SmithersError("RUN_NOT_FOUND", f"Run not found: {run_id}", {"runId": run_id})
        return run

    async def list_runs(self, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
        return self.db.list_runs(limit, status)

    def require_run(self, run_id: str) -> dict[str, Any]:
        row = self.db.run_row(run_id)
        if row is None:
            raise SmithersError("RUN_NOT_FOUND", f"Run not found: {run_id}", {"runId": run_id})
        return row

    # -- approvals ----------------------------------------------------------------------------
    async def decide_approval(
        self,
        run_id: str,
        node_id: str,
        *,
        approved: bool,
        iteration: int = 0,
        note: str | None = None,
        decided_by: str | None = None,
        decision: Any = None,
        identity: Identity | None = None,
    ) -> dict[str, Any]:
        """Approve or deny a waiting approval, enforcing allowed users and scopes (D4, D9).

        ``decided_by`` is recorded; only ``identity.user_id`` can satisfy ``allowed_users``.
        """

        def change(tx: Tx) -> dict[str, Any]:
            run = get_run_row(tx, run_id)
            row = approvals.approval_row(tx.conn, run_id, node_id, iteration)
            shown = clip(node_id)
            node = nodes.node_state(tx.conn, run_id, node_id, iteration)
            if row is not None and row["status"] in ("approved", "denied"):
                raise SmithersError(
                    "ALREADY_DECIDED",
                    f"Approval {shown} (iteration {iteration}) was already {row['status']}",
                    {
                        "runId": run_id,
                        "nodeId": shown,
                        "iteration": iteration,
                        "status": row["status"],
                    },
                )
            if row is None or node not in ("waiting-approval", "waiting_approval"):
                raise SmithersError(
                    "NODE_NOT_WAITING",
                    f"Node {shown} (iteration {iteration}) is not waiting for approval",
                    {"runId": run_id, "nodeId": shown, "iteration": iteration},
                )
            if run["status"] in TERMINAL_RUN:
                raise SmithersError(
                    "RUN_NOT_ACTIVE", f"Run {run_id} is {run['status']}", {"runId": run_id}
                )
            request = jsonutil.loads(row["request_json"]) or {}
            allowed_users = request.get("allowedUsers") or []
            who = identity.user_id if identity is not None else None
            if allowed_users and who not in allowed_users:
                raise SmithersError(
                    "FORBIDDEN",
                    "This approval is restricted to specific users",
                    {"allowedUsers": allowed_users},
                )
            allowed_scopes = request.get("allowedScopes") or []
            granted = identity.scopes if identity is not None else ("*",)
            if allowed_scopes and not scopes.satisfies_any(granted, allowed_scopes):
                raise SmithersError(
                    "FORBIDDEN",
                    "This approval requires one of the allowed scopes",
                    {"allowedScopes": allowed_scopes},
                )
            stored = _validate_decision(request, approved, decision)
            key = (node_id, iteration)
            approvals.decide_approval(
                tx,
                run_id,
                key,
                approved=approved,
                note=note,
                decided_by=decided_by if decided_by is not None else who,
                decision=stored,
            )
            nodes.set_node(tx, run_id, node_id, iteration, "pending")
            runs.bump_inbox(tx, run_id)
            resumable = False
            if run["status"] in WAITING_RUN and approvals.requested_count(tx.conn, run_id) == 0:
                runs.reopen_run(tx, run_id)
                resumable = True
            return {
                "runId": run_id,
                "nodeId": node_id,
                "iteration": iteration,
                "approved": approved,
                "resumable": resumable,
            }

        result = await self.engine.store.write(change)
        self._after_inbox(run_id, bool(result.pop("resumable")))
        return result

    # -- signals ----------------------------------------------------------------------------
    async def deliver_signal(
        self,
        run_id: str,
        signal_name: str,
        payload: Any = None,
        *,
        correlation_id: str | None = None,
        received_by: str | None = None,
        workflow: Workflow | None = None,
    ) -> dict[str, Any]:
        """Store a signal (buffered until a matching wait consumes it) and wake the run.

        When the run already waits for it with an output model, the payload is checked first
        (``INVALID_INPUT`` with the field errors, nothing stored); ``workflow`` is the run's,
        else the running driver's or the engine resolver's.
        """
        name = signal_name.strip() if isinstance(signal_name, str) else ""
        if not name or len(name) > MAX_SIGNAL_NAME:
            raise SmithersError("INVALID_INPUT", "signalName must be a non-empty string")
        if correlation_id is not None and not isinstance(correlation_id, str):
            raise SmithersError("INVALID_INPUT", "correlationId must be a string")
        data = {} if payload is None else payload
        try:
            encoded = jsonutil.dumps(data)
        except (TypeError, ValueError) as exc:
            raise SmithersError("INVALID_INPUT", f"Signal payload is not JSON: {exc}") from exc
        driver = self.engine.active.get(run_id)
        await check_signal_payload(
            self.engine.store,
            run_id,
            name,
            correlation_id,
            data,
            workflow=workflow or (driver.workflow if driver is not None else None),
            resolver=self.engine.resolver,
            known=self.engine.wait_models,
        )

        def change(tx: Tx) -> dict[str, Any]:
            run = get_run_row(tx, run_id)
            if run["status"] in TERMINAL_RUN:
                raise SmithersError(
                    "RUN_NOT_ACTIVE",
                    f"Run {run_id} is {run['status']}; it takes no more signals",
                    {"runId": run_id, "status": run["status"]},
                )
            seq = signals.receive_signal(tx, run_id, name, correlation_id, encoded, received_by)
            runs.bump_inbox(tx, run_id)
            resumable = False
            if run["status"] in WAITING_RUN:
                for attempt in nodes.attempts_in_states(tx.conn, run_id, ("waiting-event",)):
                    wait = (jsonutil.loads(attempt["meta_json"]) or {}).get("waitForEvent") or {}
                    if (
                        wait.get("signalName") == name
                        and wait.get("correlationId") == correlation_id
                    ):
                        resumable = True
                        break
                if resumable:
                    runs.reopen_run(tx, run_id)
            return {
                "runId": run_id,
                "seq": seq,
                "signalName": name,
                "correlationId": correlation_id,
                "receivedAtMs": tx.now,
                "resumable": resumable,
            }

        result = await self.engine.store.write(change)
        self._after_inbox(run_id, bool(result.pop("resumable")))
        return result

    def _after_inbox(self, run_id: str, resumable: bool) -> None:
        if resumable:
            self.engine.request_resume(run_id)
        else:
            self.engine.notify(run_id)


def _validate_decision(request: dict[str, Any], approved: bool, decision: Any) -> Any:
    """Check select/rank decisions against the option keys (``INVALID_INPUT``)."""
    mode = request.get("mode")
    keys = [o.get("key") for o in request.get("options") or [] if isinstance(o, dict)]
    if decision is not None and not isinstance(decision, dict):
        raise SmithersError("INVALID_INPUT", "decision must be an object")
    if not approved or mode not in ("select", "rank"):
        return decision
    decision = decision or {}
    if mode == "select":
        selected = decision.get("selected")
        if not isinstance(selected, str) or selected not in keys:
            raise SmithersError(
                "INVALID_INPUT",
                "decision.selected must be one of the option keys",
                {"options": keys},
            )
    else:
        ranked = decision.get("ranked")
        if (
            not isinstance(ranked, list)
            or not ranked
            or not all(isinstance(k, str) and k in keys for k in ranked)
            or len(set(ranked)) != len(ranked)
        ):
            raise SmithersError(
                "INVALID_INPUT",
                "decision.ranked must be a non-empty list of distinct option keys",
                {"options": keys},
            )
    return decision
