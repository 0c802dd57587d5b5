"""The cron scheduler: keeps registered schedules in the store and fires due rows.

Every ``clamp(heartbeat_ms, 1 s, 15 s)`` it

1. syncs the schedules of registered workflows into rows ``gateway:<key>`` (a new or changed
   pattern gets its next fire time from now; an unchanged row keeps its own, so a window
   missed while no gateway ran is still due; a key registered without a schedule, or no
   longer registered, loses its row);
2. fires every enabled row of a registered workflow whose next fire time has come: it claims
   the window with a compare-and-set (several gateways on one store fire it once), starts the
   run as ``cron:gateway`` and broadcasts ``cron.triggered``.

**Catch-up rule.** The next window is computed from the time of the fire, not from the
window that was due, so a gateway back after missing several windows fires once, then follows
the pattern. A failed start records ``errorJson`` and retries a minute later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from smithers_core import jsonutil
from smithers_core.contributions import HostContext
from smithers_core.errors import SmithersError
from smithers_core.store import crons
from smithers_core.workflow.models import RunAuth
from smithers_cron.patterns import check_pattern, next_fire_ms
from smithers_cron.rows import key_of, workflow_path

log = logging.getLogger("smithers.cron")

MIN_POLL_MS = 1_000
MAX_POLL_MS = 15_000


def poll_interval_ms(heartbeat_ms: Any) -> int:
    """``clamp(heartbeat_ms, 1 s, 15 s)`` (reference 7)."""
    try:
        value = int(heartbeat_ms)
    except (TypeError, ValueError):
        value = MAX_POLL_MS
    return max(MIN_POLL_MS, min(MAX_POLL_MS, value))


def check_schedules(host: HostContext) -> None:
    """Refuse an invalid registered schedule before ``listen()`` binds (``INVALID_INPUT``)."""
    for key, reg in host.registrations.items():
        if reg.schedule is not None:
            try:
                check_pattern(reg.schedule)
            except SmithersError as exc:
                message = f"'schedule' on workflow '{key}': {exc.message}"
                raise SmithersError("INVALID_INPUT", message) from exc


class CronScheduler:
    """A :class:`~smithers_core.contributions.Scheduler` implementing ``schedule``."""

    name = "smithers_cron"
    options = frozenset({"schedule"})

    def __init__(self) -> None:
        self.host: HostContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._synced: dict[str, str | None] = {}  # key -> schedule as registered, last sync
        self.fired = 0

    async def start(self, host: HostContext) -> None:
        self.host = host
        await self.sync(host.now_ms(), initial=True)
        interval = poll_interval_ms(host.options.get("heartbeat_ms"))
        self._task = asyncio.get_running_loop().create_task(self._loop(interval / 1000))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, interval_s: float) -> None:
        host = self.host
        assert host is not None
        while True:
            try:
                await self.tick(host.now_ms())
            except Exception:  # one bad tick must not end scheduling
                log.exception("cron tick failed")
            await asyncio.sleep(interval_s)

    # -- one pass --------------------------------------------------------------------------
    def _wanted(self) -> dict[str, str | None]:
        assert self.host is not None
        return {key: reg.schedule for key, reg in self.host.registrations.items()}

    async def sync(self, now_ms: int, initial: bool = False) -> None:
        """Write the rows of registered schedules that changed since the last sync."""
        host = self.host
        assert host is not None
        raw = self._wanted()
        if not initial and raw == self._synced:
            return
        wanted = dict(raw)
        for key, pattern in raw.items():
            if pattern is None:
                continue
            try:
                wanted[key] = check_pattern(pattern)
            except SmithersError as exc:  # registered after listen() (check_schedules ran before)
                log.warning("'schedule' on workflow '%s' is ignored: %s", key, exc.message)
                wanted.pop(key)
        rows = {row["cronId"]: row for row in host.store.read(crons.cron_rows)}
        changes: list[tuple[str, str | None, int | None]] = []
        for key, pattern in wanted.items():
            cron_id = workflow_path(key)
            row = rows.get(cron_id)
            if pattern is None:
                if row is not None:
                    changes.append((cron_id, None, None))
            elif row is None or row["pattern"] != pattern or not row["enabled"]:
                changes.append((cron_id, pattern, next_fire_ms(pattern, now_ms)))
        for cron_id, row in rows.items():
            owner = key_of(cron_id)
            if owner is not None and cron_id == row["workflowPath"] and owner not in wanted:
                changes.append((cron_id, None, None))  # its workflow is no longer registered

        def write(tx: Any) -> None:
            for cron_id, pattern, next_ms in changes:
                if pattern is None:
                    crons.delete_cron(tx, cron_id)
                else:
                    crons.upsert_cron(
                        tx,
                        cron_id,
                        pattern=pattern,
                        workflow_path=cron_id,
                        enabled=True,
                        next_run_at_ms=next_ms,
                        timezone=None,
                        now_ms=now_ms,
                    )

        if changes:
            await host.store.write(write)
        self._synced = raw

    async def tick(self, now_ms: int) -> int:
        """Sync, then fire every due row once; returns how many runs this pass started."""
        host = self.host
        assert host is not None
        await self.sync(now_ms)
        registrations = host.registrations
        started = 0
        for row in host.store.read(crons.cron_rows):
            key = key_of(row["workflowPath"])
            due = row["nextRunAtMs"]
            if not row["enabled"] or key is None or key not in registrations:
                continue
            if isinstance(due, int) and due > now_ms:
                continue
            started += await self._fire(row, key, due, now_ms)
        self.fired += started
        return started

    async def _fire(self, row: dict[str, Any], key: str, due: int | None, now_ms: int) -> int:
        host = self.host
        assert host is not None
        cron_id = row["cronId"]
        try:
            next_ms: int | None = next_fire_ms(row["pattern"], now_ms, row["timezone"])
        except SmithersError as exc:
            await self._failed(cron_id, now_ms, exc.message)
            return 0
        claimed = await host.store.write(
            lambda tx: crons.claim_cron(tx, cron_id, due, now_ms, next_ms)
        )
        if not claimed:
            return 0  # another scheduler on this store took the window
        try:
            started = await host.launch(key, {}, RunAuth.for_trigger("cron"))
        except Exception as exc:
            log.warning("cron %s could not start %s: %s", cron_id, key, exc)
            await self._failed(cron_id, now_ms, str(exc))
            return 0
        host.broadcast(
            "cron.triggered", {"cronId": cron_id, "workflow": key, "runId": started["runId"]}
        )
        return 1

    async def _failed(self, cron_id: str, now_ms: int, message: str) -> None:
        assert self.host is not None
        error = jsonutil.dumps({"message": message})
        await self.host.store.write(lambda tx: crons.cron_failed(tx, cron_id, now_ms, error))
