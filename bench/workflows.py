"""Workflows the bench servers run. Loadable as a module (gateway) and by path (start_server)."""

from __future__ import annotations

import time

from pydantic import BaseModel

from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Approval, Seq, Task, WaitSignal


class Pad(BaseModel):
    note: str = ""


class Out(BaseModel):
    v: int = 1


class Go(BaseModel):
    msg: str = ""


class LogInput(BaseModel):
    n: int = 100
    rate: int = 0  # lines per second; 0 logs them all at once


def _log_lines(t):  # type: ignore[no-untyped-def]
    # Each line carries its wall-clock emit time: commit-to-receipt latency is measured
    # from it (an upper bound: emit precedes commit).
    n, rate = t.input.n, t.input.rate
    t0 = time.monotonic()
    for i in range(n):
        if rate:
            ahead = t0 + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        t.log(f"{time.time():.6f} line {i}")
    return Out(v=n)


@workflow("one", input=Pad)
def one(ctx):  # type: ignore[no-untyped-def]
    """One task: the run-throughput and getRun workflow."""
    return Task("t", lambda t: Out(v=1), output=Out)


@workflow("logger", input=LogInput)
def logger(ctx):  # type: ignore[no-untyped-def]
    """Waits for signal ``go``, then one task logs ``n`` lines (fan-out)."""
    return Seq(WaitSignal("go", output=Go), Task("log", _log_lines, output=Out))


@workflow("sig")
def sig(ctx):  # type: ignore[no-untyped-def]
    """Waits for signal ``go``, then finishes (signal-to-run.completed latency)."""
    return Seq(WaitSignal("go", output=Go), Task("done", lambda t: Out(v=2), output=Out))


@workflow("sse_logger", input=LogInput)
def sse_logger(ctx):  # type: ignore[no-untyped-def]
    """start_server variant: an approval gate, then ``n`` log lines."""
    return Seq(Approval("gate", "Go?"), Task("log", _log_lines, output=Out))
