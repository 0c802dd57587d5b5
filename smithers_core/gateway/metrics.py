"""Gateway metric families (reference 9.1) in a per-gateway ``CollectorRegistry`` (D9).

Counters end in ``_total``; ``_created`` series are disabled; the exposition content type is
``text/plain; version=0.0.4; charset=utf-8``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from smithers_core.errors import SmithersError

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
P = "smithers_gateway_"


_DURATION_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class _HotPath(Collector):
    """The per-frame and per-call series, counted in plain integers on the hot path (a
    Prometheus child per increment costs more than the frame) and reported at collect time
    through prometheus_client's custom-collector interface."""

    def __init__(self) -> None:
        self.sent = 0  # WebSocket frames written
        self.received = 0  # WebSocket messages received
        self.calls: dict[tuple[str, str], int] = {}
        self.durations = [0] * (len(_DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(P + "messages_received", "WebSocket messages received")
        received.add_metric([], self.received)
        sent = CounterMetricFamily(P + "messages_sent", "WebSocket frames sent")
        sent.add_metric([], self.sent)
        calls = CounterMetricFamily(P + "rpc_calls", "RPC calls", labels=["method", "transport"])
        for (method, transport), n in self.calls.items():
            calls.add_metric([method, transport], n)
        cumulative, buckets = 0, []
        bounds = [str(float(b)) for b in _DURATION_BUCKETS] + ["+Inf"]
        for bound, n in zip(bounds, self.durations, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        duration = HistogramMetricFamily(
            P + "rpc_duration_ms",
            "RPC duration in milliseconds",
            buckets=buckets,
            sum_value=self.duration_sum,
        )
        yield from (received, sent, calls, duration)


class GatewayMetrics:
    """One set of gateway metrics; each gateway owns its registry.

    Frames, messages and RPC calls and durations are plain integers bumped on the hot path
    (:attr:`sent`, :attr:`received`, :meth:`call`, :meth:`duration`) and read by the registry
    at each exposition; every other family is an ordinary ``prometheus_client`` metric.
    """

    def __init__(self) -> None:
        self._hot = _HotPath()
        r = self.registry = CollectorRegistry(auto_describe=True)
        r.register(self._hot)
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

    PLUGIN_COUNTERS = frozenset(
        {"cron_triggers", "signals", "webhooks_received", "webhooks_rejected", "webhooks_verified"}
    )

    def count(self, metric: str, **labels: str) -> None:
        """Add one to a counter plugins may bump (:attr:`PLUGIN_COUNTERS`)."""
        if metric not in self.PLUGIN_COUNTERS:
            raise SmithersError("INVALID_INPUT", f"Unknown counter: {metric}")
        counter: Counter = getattr(self, metric)
        (counter.labels(**labels) if labels else counter).inc()

    @property
    def sent(self) -> int:
        """WebSocket frames written (``messages_sent_total``)."""
        return self._hot.sent

    @sent.setter
    def sent(self, value: int) -> None:
        self._hot.sent = value

    @property
    def received(self) -> int:
        """WebSocket messages received (``messages_received_total``)."""
        return self._hot.received

    @received.setter
    def received(self, value: int) -> None:
        self._hot.received = value

    def call(self, method: str, transport: str) -> None:
        """One RPC call (``rpc_calls_total{method, transport}``)."""
        calls = self._hot.calls
        key = (method, transport)
        calls[key] = calls.get(key, 0) + 1

    def duration(self, ms: float) -> None:
        """One ``rpc_duration_ms`` observation (buckets are upper bounds, as Prometheus')."""
        hot = self._hot
        hot.durations[bisect_left(_DURATION_BUCKETS, ms)] += 1
        hot.duration_sum += ms

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "GatewayMetrics"]
