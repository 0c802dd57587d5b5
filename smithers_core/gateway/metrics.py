"""Gateway metric families (reference 9.1) in a per-gateway ``CollectorRegistry`` (D9).

Counters end in ``_total``; ``_created`` series are disabled; the exposition content type is
``text/plain; version=0.0.4; charset=utf-8``.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
P = "smithers_gateway_"


class GatewayMetrics:
    """One set of gateway metrics; each gateway owns its registry."""

    def __init__(self) -> None:
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
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
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

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "GatewayMetrics"]
