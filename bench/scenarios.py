"""The six scenarios by name. Each returns ``{"rows": [...], "details": {...}}``; a row is one
figure with the system under test (``sut``), its baseline (``base``, may be None), the ratio
and the target from issue 8 (see :func:`bench.orchestration.row`)."""

from __future__ import annotations

from bench.load_scenarios import idle, throughput
from bench.rpc_scenarios import http_rpc, ws_rpc
from bench.stream_scenarios import fanout, sse

SCENARIOS = {
    "http": http_rpc,
    "ws": ws_rpc,
    "fanout": fanout,
    "throughput": throughput,
    "idle": idle,
    "sse": sse,
}
