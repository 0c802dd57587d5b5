"""Every open socket of one gateway, its ``stateVersion``, and how events reach the sockets.

Committed run events arrive through :meth:`Broadcaster.on_events` (an EventHub tap) and go out
as raw broadcasts, which alone increment ``stateVersion`` (D10); ``run.completed`` is sent once
per run. Sockets that stream a run get its events on their streams instead. Idle sockets
share one tick round (:meth:`tick`), never a task each.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from smithers_core import jsonutil
from smithers_core.gateway.connection import Connection
from smithers_core.gateway.events import map_event
from smithers_core.gateway.metrics import GatewayMetrics
from smithers_core.gateway.outbound import OutboundBudget
from smithers_core.gateway.preauth import PreAuthPool
from smithers_core.store.base import CommittedEvent

COMPLETED_MEMORY = 10_000  # runs whose run.completed was sent, remembered to send it once


class Broadcaster:
    """The socket set and its counters: ``authed`` sockets and the ``pre_auth`` pool (the
    limits)."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        pre_auth: PreAuthPool | None = None,
        outbound: OutboundBudget | None = None,
    ) -> None:
        self.metrics = metrics
        self.connections: set[Connection] = set()
        self.outbound = outbound if outbound is not None else OutboundBudget(128 * 1024 * 1024)
        self.outbound.connections = self.connections
        self.authed = 0
        self.pre_auth = pre_auth if pre_auth is not None else PreAuthPool(64, 8)
        self.state_version = 0
        self._last_seq: dict[str, int] = {}
        self._completed: OrderedDict[str, None] = OrderedDict()

    @property
    def preauth(self) -> int:
        """Sockets holding a pre-auth slot."""
        return self.pre_auth.count

    def on_events(self, events: list[CommittedEvent]) -> None:
        """The EventHub tap: each new event becomes one raw broadcast. The hub feeds each
        ``(runId, seq)`` once; ``run.completed`` is also de-duplicated per run."""
        for ev in events:
            if self._last_seq.get(ev.run_id, -1) >= ev.seq:
                continue
            self._last_seq[ev.run_id] = ev.seq
            if ev.type == "RunStarted" and ev.seq == 0:
                self.metrics.runs_started.inc()
            name, payload = map_event(ev.event)
            if name in ("run.time_travel_jumped", "retry.task_started"):
                # a rewound or retried run completes once more
                self._completed.pop(ev.run_id, None)
            if name == "run.completed":
                if ev.run_id in self._completed:
                    continue
                self._completed[ev.run_id] = None
                while len(self._completed) > COMPLETED_MEMORY:
                    self._completed.popitem(last=False)
                self._last_seq.pop(ev.run_id, None)
                self.metrics.runs_completed.labels(str(payload.get("status"))).inc()
            self.broadcast(name, payload)

    def broadcast(self, name: str, payload: Any) -> None:
        """Send a broadcast event to every authenticated socket that wants it."""
        self.state_version += 1
        version = self.state_version
        text = jsonutil.dumps(payload)
        run_id = payload.get("runId") if isinstance(payload, dict) else None
        for conn in self.connections:
            if conn.identity is None or conn.closed:
                continue
            if isinstance(run_id, str):
                if conn.subscribed and run_id not in conn.subscribed:
                    continue
                if run_id in conn.streamed_runs:
                    continue  # delivered as run.event frames on its streams instead
            conn.push_event(name, text, version)

    def send_event(self, conn: Connection, name: str, payload: Any) -> None:
        """A non-broadcast event: the current ``stateVersion``, not incremented."""
        conn.push_event(name, jsonutil.dumps(payload), self.state_version)

    def send_event_text(
        self, conn: Connection, name: str, payload_json: str, after: Callable[[], None]
    ) -> None:
        """:meth:`send_event` for a payload already encoded; ``after`` runs once written."""
        conn.push_event(name, payload_json, self.state_version, after)

    def tick(self) -> None:
        """One ``tick`` event to every authenticated socket."""
        text = jsonutil.dumps({"ts": int(time.time() * 1000)})
        for conn in list(self.connections):
            if conn.identity is not None and not conn.closed:
                conn.push_event("tick", text, self.state_version)
        self.metrics.heartbeat_ticks.inc()

    def close_all(self, code: int, reason: str) -> None:
        for conn in list(self.connections):
            conn.close(code, reason)

    def reset(self) -> None:
        """Forget every socket (the gateway stopped)."""
        self.connections.clear()
        self.outbound.total = 0
        self.authed = 0
        self.pre_auth.clear()


__all__ = ["Broadcaster"]
