"""Rewinding a run to one of its frames (time travel, ``rewindRun``), engine side.

:func:`rewind` starts the audit (``Busy``, ``RateLimited`` and ``FrameOutOfRange`` are
decided there, in the writer, so two processes cannot both start a rewind of one run), stops
the run if this process executes it (a suspend: in-flight attempts cancelled with reason
``shutdown``; it must stop within :data:`STOP_TIMEOUT_S`, else ``RewindFailed``), applies the
jump of :mod:`smithers_core.store.rewind` in one transaction (with the audit's ``success``),
then resumes the run so what follows the target frame executes again. A run that another live
process executes is not touched (``RewindFailed``): stop it there first.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import anyio

from smithers_core.engine.engine import Engine, owner_is_dead_here
from smithers_core.engine.transitions import get_run_row
from smithers_core.errors import SmithersError
from smithers_core.store import rewind as store_rewind
from smithers_core.store.base import Tx
from smithers_core.workflow.definition import Workflow

log = logging.getLogger("smithers.engine")

STOP_TIMEOUT_S = 10.0
"""How long an executing run may take to stop before the rewind fails (reference 5.4)."""


def _executing_elsewhere(engine: Engine, row: dict[str, Any], now: int) -> bool:
    owner, hb = row.get("runtime_owner_id"), row.get("heartbeat_at_ms")
    if row["status"] != "running" or owner is None or hb is None:
        return False
    if owner == engine.owner_id:
        return row["run_id"] in engine.active
    if owner_is_dead_here(owner):
        return False
    return now - int(hb) <= engine.options.stale_after_ms


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


async def rewind(
    engine: Engine,
    run_id: str,
    frame_no: int,
    *,
    caller: str,
    workflow: Workflow | None = None,
) -> dict[str, Any]:
    """Rewind ``run_id`` to frame ``frame_no`` for ``caller`` and resume it; the result of
    ``rewindRun``. The caller checked the run exists and that ``caller`` may rewind it."""
    started = time.monotonic()
    begun: store_rewind.Begun = await engine.store.write(
        functools.partial(
            store_rewind.begin,
            run_id=run_id,
            frame_no=frame_no,
            caller=caller,
            owner_id=engine.owner_id,
            owner_gone=owner_is_dead_here,
        )
    )
    if begun.refusal is not None:
        raise begun.refusal
    audit_id = begun.audit_id

    def change(tx: Tx) -> tuple[store_rewind.Jumped, int]:
        row = get_run_row(tx, run_id)
        if _executing_elsewhere(engine, row, tx.now):
            raise SmithersError(
                "RewindFailed",
                "The run is executing in another process; stop it there first.",
                {"runId": run_id},
            )
        jumped = store_rewind.jump(tx, run_id, frame_no, caller=caller)
        duration = _elapsed_ms(started)
        store_rewind.finish_audit(tx, audit_id, "success", duration)
        return jumped, duration

    try:
        if not await engine.hold(run_id, STOP_TIMEOUT_S):
            raise SmithersError(
                "RewindFailed",
                f"The run did not stop within {STOP_TIMEOUT_S:g} s.",
                {"runId": run_id},
            )
        jumped, duration = await engine.store.write(change)
    except BaseException as exc:
        code = exc.code if isinstance(exc, SmithersError) else "RewindFailed"
        with anyio.CancelScope(shield=True):
            try:
                await engine.store.write(
                    lambda tx: store_rewind.finish_audit(
                        tx, audit_id, "failed", _elapsed_ms(started), code
                    )
                )
            except Exception:
                log.exception("run %s: could not settle the rewind's audit row", run_id)
        engine.unhold(run_id)
        if isinstance(exc, SmithersError) or not isinstance(exc, Exception):
            raise
        log.exception("run %s: rewind failed", run_id)
        raise SmithersError("RewindFailed", f"Rewind failed: {exc}", {"runId": run_id}) from exc
    engine.unhold(run_id)
    try:
        await engine.resume(run_id, workflow)
    except SmithersError as exc:  # the run stays resumable: a host that can load it will
        log.warning("run %s: not resumed after the rewind: %s", run_id, exc.message)
    return {
        "ok": True,
        "newFrameNo": frame_no,
        "revertedSandboxes": 0,
        "deletedFrames": jumped.deleted_frames,
        "deletedAttempts": jumped.deleted_attempts,
        "invalidatedDiffs": 0,
        "durationMs": duration,
        "effectBoundary": {"blocking": [], "revertible": [], "warnings": []},
    }


async def recover_interrupted(engine: Engine) -> int:
    """Turn the audit rows of rewinds a dead process left ``in_progress`` into ``partial``
    (run when a runtime opens); returns how many."""
    try:
        recovered: int = await engine.store.write(
            functools.partial(store_rewind.recover_interrupted, owner_gone=owner_is_dead_here)
        )
    except Exception:  # a read-only store, a locked file: never keeps a host from starting
        log.exception("could not recover interrupted rewinds")
        return 0
    if recovered:
        log.warning("%d interrupted rewind(s) marked partial", recovered)
    return recovered


__all__ = ["STOP_TIMEOUT_S", "recover_interrupted", "rewind"]
