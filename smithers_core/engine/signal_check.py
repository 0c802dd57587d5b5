"""Check a signal's payload before it is stored, against the wait that will take it (issue 13).

A run parked on ``WaitSignal(output=Model)`` validates the payload when the wait consumes it
(D4); a payload that does not fit is then only visible as ``SignalRejected`` in the event
stream. Hosts call :func:`check_signal_payload` first, so the sender gets the field errors at
once. The wait is found as the driver would find it: the run's ``waiting-event`` attempts for
the signal's name and correlation id, the oldest first (then the lower tree position), and its
model from one render of the run's workflow over the stored state. When no such wait exists,
or the workflow cannot be loaded or rendered, nothing is checked here and the signal is
buffered as before (validated at consumption). The render is the fallback: a wait this
process parked is found in :class:`~smithers_core.engine.wait_models.WaitModels`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ValidationError

from smithers_core import jsonutil
from smithers_core.engine.render import render
from smithers_core.engine.wait_models import WaitModels
from smithers_core.errors import SmithersError, validation_issues
from smithers_core.store import nodes, runs
from smithers_core.store.base import Store
from smithers_core.store.snapshot import RunState, load_run_state
from smithers_core.workflow.context import Ctx
from smithers_core.workflow.definition import Workflow
from smithers_core.workflow.models import RunAuth
from smithers_core.workflow.nodes import WaitSignal

log = logging.getLogger("smithers.engine")

Resolver = Callable[[dict[str, Any]], Workflow | None]


def _matching_waits(
    conn: Any, run_id: str, name: str, correlation_id: str | None
) -> list[dict[str, Any]]:
    """The ``waiting-event`` attempts of the run that this signal would match."""
    waits = []
    for row in nodes.attempts_in_states(conn, run_id, ("waiting-event",)):
        wait = (jsonutil.loads(row["meta_json"]) or {}).get("waitForEvent") or {}
        if wait.get("signalName") == name and wait.get("correlationId") == correlation_id:
            waits.append(
                {
                    "key": (row["node_id"], int(row["iteration"])),
                    "startedAtMs": int(wait.get("startedAtMs") or 0),
                }
            )
    return waits


def _state_and_input(conn: Any, run_id: str) -> tuple[RunState | None, Any]:
    return load_run_state(conn, run_id), runs.run_input(conn, run_id)


def _wait_model(
    workflow: Workflow, run_id: str, st: RunState, stored_input: Any, waits: list[dict[str, Any]]
) -> tuple[tuple[str, int], type[BaseModel] | None] | None:
    """The key and output model of the wait that takes the signal, from one render."""
    config = jsonutil.loads(st.run.get("config_json")) or {}
    auth = RunAuth.model_validate(config["auth"]) if config.get("auth") else None
    ctx = Ctx(
        input=workflow.validate_input(stored_input),
        run_id=run_id,
        auth=auth,
        outputs=st.outputs,
        loop_iterations={k: v.iteration + 1 for k, v in st.loops.items()},
    )
    plan = render(workflow, ctx, st.loops)
    found = []
    for wait in waits:
        p = plan.leaves.get(wait["key"])
        if p is not None and isinstance(p.leaf, WaitSignal):
            found.append((wait["startedAtMs"], p.ordinal, p.key, p.leaf.output))
    if not found:
        return None
    _, _, key, model = min(found, key=lambda f: (f[0], f[1]))
    return key, model


async def check_signal_payload(
    store: Store,
    run_id: str,
    name: str,
    correlation_id: str | None,
    payload: Any,
    *,
    workflow: Workflow | None = None,
    resolver: Resolver | None = None,
    known: WaitModels | None = None,
) -> None:
    """Raise ``INVALID_INPUT`` (details ``{issues, nodeId, iteration, signalName}``) when the
    run waits for this signal with an output model the payload does not fit. ``known`` holds
    the models of the waits this process parked; only a wait missing there costs a render."""
    # an indexed point read, inline (D13); most signals stop here
    waits = store.read(lambda conn: _matching_waits(conn, run_id, name, correlation_id))
    if not waits:
        return
    hit = known.lookup(run_id, [w["key"] for w in waits]) if known is not None else None
    if hit is not None:
        # the wait whose attempt started first, then the lower tree position (D4)
        first = min(waits, key=lambda w: (w["startedAtMs"], hit[w["key"]][0]))
        node_id, iteration = first["key"]
        _validate(hit[first["key"]][1], payload, node_id, iteration, name)
        return
    st, stored_input = await store.aread(lambda conn: _state_and_input(conn, run_id))
    if st is None:
        return

    def find() -> tuple[tuple[str, int], type[BaseModel] | None] | None:
        wf = workflow if workflow is not None else (resolver(st.run) if resolver else None)
        return _wait_model(wf, run_id, st, stored_input, waits) if wf is not None else None

    try:  # a resolver may load a file and build() is user code: off the event loop
        found = await anyio.to_thread.run_sync(find)
    except Exception as exc:  # never worse than before: the wait validates at consumption
        log.info("signal %r for run %s not checked before storing: %s", name, run_id, exc)
        return
    if found is None:
        return
    (node_id, iteration), model = found
    _validate(model, payload, node_id, iteration, name)


def _validate(
    model: type[BaseModel] | None, payload: Any, node_id: str, iteration: int, name: str
) -> None:
    if model is None:
        return
    try:
        model.model_validate(payload)
    except ValidationError as exc:
        raise SmithersError(
            "INVALID_INPUT",
            f"Signal payload does not match the output model of wait {node_id!r}",
            {
                "issues": validation_issues(exc),
                "nodeId": node_id,
                "iteration": iteration,
                "signalName": name,
            },
        ) from exc


__all__ = ["check_signal_payload"]
