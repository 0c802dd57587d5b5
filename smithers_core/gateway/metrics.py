"""Gateway metric families (reference 9.1) in a per-gateway ``CollectorRegistry`` (D9).

Counters end in ``_total``; ``_created`` series are disabled; the exposition content type is
``text/plain; version=0.0.4; charset=utf-8``.
"""

from __future__ import annotations

from bisect import bisect_left

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
P = "smithers_gateway_"


_DURATION_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class GatewayMetrics:
    """One set of gateway metrics; each gateway owns its registry.

    The per-frame and per-call series (frames sent and received, RPC calls and durations)
    are counted in plain integers on the hot path and folded into the Prometheus families
    by :meth:`flush`, which :meth:`render` calls before every exposition.
    """

    def __init__(self) -> None:
        self.sent = 0  # WebSocket frames written, not yet folded into messages_sent
        self.received = 0  # WebSocket messages received, not yet in messages_received
        self._calls: dict[tuple[str, str], int] = {}
        self._durations = [0] * (len(_DURATION_BUCKETS) + 1)
        self._duration_sum = 0.0
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.approval_decisions = Counter(
            P + "approval_decisions", "Approval decisions", ["decision"], registry=r
        )
        self.auth_events = Counter(P + "auth_events", "Auth outcomes", ["result"], registry=r)
        self.connections_active = Gauge(P + "connections_active", "Open sockets", registry=r)
        self.connections_closed = Counter(P + "connections_closed", "Closed sockets", registry=r)
        self.connections = Counter(P + "connections", "Accepted sockets", registry=r)
        self.cron_triggers = Counter(P + "cron_triggers", "Cron triggers", registry=r)
        self.errors = Counter(P + "errors", "RPC errors", ["code"], registry=r)
        self.heartbeat_ticks = Counter(P + "heartbeat_ticks", "Tick rounds", registry=r)
        self.messages_received = Counter(
            P + "messages_received", "WebSocket messages received", registry=r
        )
        self.messages_sent = Counter(P + "messages_sent", "WebSocket frames sent", registry=r)
        self.rpc_calls = Counter(P + "rpc_calls", "RPC calls", ["method", "transport"], registry=r)
        self.rpc_duration = Histogram(
            P + "rpc_duration_ms",
            "RPC duration in milliseconds",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.runs_completed = Counter(
            P + "runs_completed", "Runs completed", ["status"], registry=r
        )
        self.runs_started = Counter(P + "runs_started", "Runs started", registry=r)
        self.signals = Counter(P + "signals", "Signals delivered", registry=r)
        self.webhooks_received = Counter(P + "webhooks_received", "Webhooks received", registry=r)
        self.webhooks_rejected = Counter(
            P + "webhooks_rejected", "Webhooks rejected", ["reason"], registry=r
        )
        self.webhooks_verified = Counter(P + "webhooks_verified", "Webhooks verified", registry=r)
        self.backpressure_disconnects = Counter(
            P + "backpressure_disconnects", "Sockets closed for backpressure", registry=r
        )

    def call(self, method: str, transport: str) -> None:
        """One RPC call (``rpc_calls_total{method, transport}``)."""
        key = (method, transport)
        self._calls[key] = self._calls.get(key, 0) + 1

    def duration(self, ms: float) -> None:
        """One ``rpc_duration_ms`` observation (buckets are upper bounds, as Prometheus')."""
        self._durations[bisect_left(_DURATION_BUCKETS, ms)] += 1
        self._duration_sum += ms

    def flush(self) -> None:
        """Fold the pending hot-path counts into the Prometheus families."""
        if self.sent:
            self.messages_sent.inc(self.sent)
            self.sent = 0
        if self.received:
            self.messages_received.inc(self.received)
            self.received = 0
        if self._calls:
            calls, self._calls = self._calls, {}
            for (method, transport), n in calls.items():
                self.rpc_calls.labels(method, transport).inc(n)
        if self._duration_sum or any(self._durations):
            hist = self.rpc_duration
            for index, n in enumerate(self._durations):
                if n:
                    hist._buckets[index].inc(n)  # what observe() increments, n at once
            hist._sum.inc(self._duration_sum)
            self._durations = [0] * len(self._durations)
            self._duration_sum = 0.0

    def render(self) -> bytes:
        self.flush()
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "GatewayMetrics"]
