"""Where a one-task run's time goes inside the engine, without sockets (scenario 4's
breakdown): ``python -m bench.engine_breakdown runs '{"runs": N, "concurrency": C}'``.

An Engine on a fresh store (a SQLite file, or the ``db`` option's URL) launches ``runs``
one-task runs, ``concurrency`` in flight. A commit listener stamps each event as its transaction
commits, so every phase is measured from the ``Engine.launch`` call: the run row inserted
(``RunStarted``), the first render's frame and node mounted (``FrameCommitted``), the attempt
scheduled (``NodeStarted``), the task run and its output written (``NodeFinished``), the run
finished (``RunFinished``), and the driver settled. Also: CPU per run of the whole process and
of the event-loop thread.
Prints ``RESULT {json}``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench.common import emit


async def runs(opts: dict[str, Any]) -> None:
    from bench import workflows as wfs
    from smithers_core.engine.engine import Engine
    from smithers_core.store import open_store
    from smithers_core.store.base import CommittedEvent

    n, conc = int(opts.get("runs", 1000)), int(opts.get("concurrency", 32))
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    store = open_store(str(opts.get("db") or f"sqlite:///{tmp}/bench.db"))
    stamps: dict[str, dict[str, float]] = {}

    def on_commit(events: list[CommittedEvent]) -> None:
        now = time.perf_counter()
        for ev in events:
            stamps.setdefault(ev.run_id, {}).setdefault(f"{ev.type} committed", now)

    store.add_commit_listener(on_commit)
    engine = Engine(store)
    started: dict[str, float] = {}
    settled: dict[str, float] = {}
    waiters: dict[str, anyio.Event] = {}

    def on_settled(run_id: str, _status: str | None) -> None:
        settled[run_id] = time.perf_counter()
        ev = waiters.pop(run_id, None)
        if ev is not None:
            ev.set()

    engine.on_run_settled.append(on_settled)

    async def worker(count: int) -> None:
        for _ in range(count):
            t0 = time.perf_counter()
            run_id = await engine.launch(wfs.one, {})
            started[run_id] = t0
            if run_id not in settled:
                waiters[run_id] = ev = anyio.Event()
                with anyio.fail_after(60):
                    await ev.wait()

    async with engine:
        async with anyio.create_task_group() as tg:  # warm-up
            for _ in range(8):
                tg.start_soon(worker, 8)
        started.clear()
        cpu0, main0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(conc):
                tg.start_soon(worker, n // conc)
        cpu1, main1, t1 = time.process_time(), time.thread_time(), time.perf_counter()
    store.close()
    done = len(started)
    phases: dict[str, list[float]] = {}
    for run_id, at in started.items():
        marks = dict(stamps.get(run_id, {}))
        marks["driver settled"] = settled.get(run_id, at)
        for name, when in marks.items():
            phases.setdefault(name, []).append((when - at) * 1000)
    emit(
        "RESULT",
        {
            "runs": done,
            "runsPerS": done / (t1 - t0),
            "cpuMsPerRun": (cpu1 - cpu0) * 1000 / done,
            "loopCpuMsPerRun": (main1 - main0) * 1000 / done,
            "phasesP50Ms": {
                name: sorted(v)[len(v) // 2] for name, v in phases.items() if len(v) >= done // 2
            },
        },
    )


KINDS = {"runs": runs}


def main() -> None:
    kind, opts = sys.argv[1], json.loads(sys.argv[2])
    try:
        anyio.run(KINDS[kind], opts)
    except Exception as exc:
        emit("ERROR", f"{kind}: {type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main()
