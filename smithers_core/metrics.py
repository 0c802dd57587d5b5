"""Prometheus metrics of one host (D9): a per-host registry, rendered by ``prometheus_client``.

Counters end in ``_total`` and ``_created`` series are disabled; names otherwise follow
upstream's catalog (reference/server.md 6). Run, node, approval and event counters are fed by
the :class:`~smithers_core.eventhub.EventHub` tap, so they count every committed event of the
host's store, including those of runs executed by other processes (found by the poller).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from smithers_core.store.base import CommittedEvent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_BUCKETS = tuple(float(2**i) for i in range(11))  # 1, 2, 4, ... 1024 ms (+Inf)
DURATION_BUCKETS = (10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 30000.0, 300000.0, 3600000.0)

try:  # prometheus_client >= 0.10: turn off the ``_created`` series everywhere
    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # type: ignore[no-untyped-call]
except ImportError:  # pragma: no cover
    pass

_EVENT_COUNTERS = {
    "RunFinished": "runs_finished",
    "RunFailed": "runs_failed",
    "RunCancelled": "runs_cancelled",
    "RunContinuedAsNew": "runs_continued",
    "NodeStarted": "nodes_started",
    "NodeFinished": "nodes_finished",
    "NodeFailed": "nodes_failed",
    "NodeRetrying": "node_retries",
    "ApprovalRequested": "approvals_requested",
    "ApprovalGranted": "approvals_granted",
    "ApprovalDenied": "approvals_denied",
    "TimerCreated": "timers_created",
    "TimerFired": "timers_fired",
    "TimerCancelled": "timers_cancelled",
}


class HostMetrics:
    """The metric families of one host, in their own :class:`CollectorRegistry`."""

    def __init__(self, *, active_runs: Callable[[], int] | None = None) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.started_at = time.time()
        self.http_requests = Counter(
            "smithers_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status_code", "status_class"],
            registry=r,
        )
        self.http_duration = Histogram(
            "smithers_http_request_duration_ms",
            "HTTP request duration in milliseconds",
            ["method", "route", "status_code", "status_class"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.runs_started = Counter("smithers_runs", "Runs started (first starts)", registry=r)
        self.runs_resumed = Counter("smithers_runs_resumed", "Runs resumed", registry=r)
        c: dict[str, Counter] = {}
        for name, help_text in (
            ("runs_finished", "Runs finished"),
            ("runs_failed", "Runs failed"),
            ("runs_cancelled", "Runs cancelled"),
            ("runs_continued", "Runs continued as new"),
            ("nodes_started", "Node attempts started"),
            ("nodes_finished", "Nodes finished"),
            ("nodes_failed", "Node attempts failed"),
            ("node_retries", "Node retries"),
            ("approvals_requested", "Approvals requested"),
            ("approvals_granted", "Approvals granted"),
            ("approvals_denied", "Approvals denied"),
            ("timers_created", "Timers created"),
            ("timers_fired", "Timers fired"),
            ("timers_cancelled", "Timers cancelled"),
        ):
            c[name] = Counter(f"smithers_{name}", help_text, registry=r)
        self.counters = c
        self.events_emitted = Counter(
            "smithers_events_emitted", "Events committed, by type", ["type"], registry=r
        )
        self.run_duration = Histogram(
            "smithers_run_duration_ms",
            "Run duration (start to terminal event) in milliseconds",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.sse_streams = Gauge(
            "smithers_sse_streams_active", "Open SSE event streams", registry=r
        )
        runs_active = Gauge("smithers_runs_active", "Runs executing in this process", registry=r)
        if active_runs is not None:
            runs_active.set_function(lambda: float(active_runs()))
        uptime = Gauge("smithers_process_uptime_seconds", "Host uptime in seconds", registry=r)
        uptime.set_function(lambda: time.time() - self.started_at)
        self._run_started_ms: dict[str, int] = {}

    # -- feeding ----------------------------------------------------------------------------
    def observe_events(self, events: list[CommittedEvent]) -> None:
        """EventHub tap: count runs, nodes, approvals and events."""
        for e in events:
            self.events_emitted.labels(type=e.type).inc()
            ts = e.event.get("timestampMs") if isinstance(e.event, dict) else None
            if e.type == "RunStarted":
                if e.seq == 0:
                    self.runs_started.inc()
                    if isinstance(ts, int):
                        self._run_started_ms[e.run_id] = ts
                else:
                    self.runs_resumed.inc()
                continue
            name = _EVENT_COUNTERS.get(e.type)
            if name is not None:
                self.counters[name].inc()
            if e.type in ("RunFinished", "RunFailed", "RunCancelled", "RunContinuedAsNew"):
                began = self._run_started_ms.pop(e.run_id, None)
                if began is not None and isinstance(ts, int):
                    self.run_duration.observe(max(0, ts - began))

    def observe_request(self, method: str, route: str, status: int, duration_ms: float) -> None:
        labels = {
            "method": method.upper(),
            "route": route,
            "status_code": str(status),
            "status_class": f"{status // 100}xx",
        }
        self.http_requests.labels(**labels).inc()
        self.http_duration.labels(**labels).observe(duration_ms)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


__all__ = ["CONTENT_TYPE", "HostMetrics"]
