"""Several writers (threads, stores, processes) appending to one SQLite file keep each run's
event seq contiguous from 0 with no duplicates (seqs are allocated inside BEGIN IMMEDIATE)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from smithers_core import jsonutil
from smithers_core.store import Store
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Par, Seq, Task
from tests import stores
from tests.engine_helpers import REPO_ROOT, Harness, contiguous, open_store

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

N = 200


def _events(store: Store, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    rows = store.read(
        lambda c: c.execute(
            "SELECT seq, payload_json FROM _smithers_events WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
    )
    return [(int(r[0]), jsonutil.loads(r[1])) for r in rows]


@pytest.mark.parametrize("mode", ["burst", "one-by-one"])
async def test_two_stores_same_file_contiguous_seqs(tmp_path: Path, mode: str) -> None:
    one = open_store(tmp_path)
    two = open_store(tmp_path)
    try:
        run_id = "shared-run"

        def emit(writer: str, i: int) -> Any:
            return lambda tx: tx.emit(run_id, "Probe", writer=writer, i=i)

        if mode == "burst":
            # every change is queued at once on both writer threads (group commits contend)
            futures = []
            for i in range(N):
                futures.append(asyncio.wrap_future(one.submit(emit("one", i))))
                futures.append(asyncio.wrap_future(two.submit(emit("two", i))))
            await asyncio.gather(*futures)
        else:
            # one transaction per event on each store, both stores writing concurrently

            async def writer(store: Store, name: str) -> None:
                for i in range(N):
                    await store.write(emit(name, i))

            await asyncio.gather(writer(one, "one"), writer(two, "two"))

        for store in (one, two):
            events = _events(store, run_id)
            seqs = [s for s, _ in events]
            assert seqs == list(range(2 * N))
            assert contiguous(seqs)
            # payloads survive, each writer's events in its own order
            for name in ("one", "two"):
                assert [e["i"] for _, e in events if e["writer"] == name] == list(range(N))
    finally:
        one.close()
        two.close()


async def test_failing_change_in_group_commit_does_not_take_others_down(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:

        def bad(tx: Any) -> None:
            tx.emit("r", "Probe", i=-1)
            raise RuntimeError("this change fails")

        futures = [store.write(lambda tx, i=i: tx.emit("r", "Probe", i=i)) for i in range(5)]
        futures.insert(2, store.write(bad))
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert isinstance(results[2], RuntimeError)
        events = _events(store, "r")
        assert [s for s, _ in events] == [0, 1, 2, 3, 4]
        assert [e["i"] for _, e in events] == [0, 1, 2, 3, 4]
    finally:
        store.close()


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from smithers_core.store import open_store

    base, name, count, url = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    store = open_store(url, base_dir=base)
    try:
        for i in range(count):  # one transaction per event
            store.write_sync(lambda tx, i=i: tx.emit("proc-run", "Probe", writer=name, i=i))
    finally:
        store.close()
    """
)


async def test_processes_and_threads_same_file_contiguous_seqs(tmp_path: Path) -> None:
    store = open_store(tmp_path)  # creates and migrates the file first
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(tmp_path), f"p{k}", str(N), stores.url()],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for k in range(2)
        ]
        # this process writes concurrently too, until both children are done (and >= N)
        written = 0
        while written < N or any(p.poll() is None for p in procs):
            assert written < 100_000
            await store.write(
                lambda tx, i=written: tx.emit("proc-run", "Probe", writer="main", i=i)
            )
            written += 1
        for p in procs:
            _out, err = await asyncio.to_thread(p.communicate, timeout=15)
            assert p.returncode == 0, err.decode()
        events = _events(store, "proc-run")
        assert [s for s, _ in events] == list(range(2 * N + written))
        for writer, count in (("p0", N), ("p1", N), ("main", written)):
            assert [e["i"] for _, e in events if e["writer"] == writer] == list(range(count))
    finally:
        store.close()


# -- two engines on one file ------------------------------------------------------------------


class _Num(BaseModel):
    n: int


async def _tick(t: Any) -> _Num:
    await anyio.sleep(0.001)
    t.log(f"step {t.node_id}")
    return _Num(n=1)


@workflow("busy")
def busy(ctx: Any) -> Any:
    return Seq(
        Par(*(Task(f"p{i}", _tick, output=_Num) for i in range(4))),
        *(Task(f"s{i}", _tick, output=_Num) for i in range(4)),
    )


async def test_two_engines_same_file(tmp_path: Path) -> None:
    one = open_store(tmp_path)
    two = open_store(tmp_path)
    try:
        async with (
            Harness(tmp_path, busy, store=one) as h1,
            Harness(tmp_path, busy, store=two) as h2,
        ):
            runs = []
            for _ in range(3):
                runs.append((h1, await h1.launch(busy)))
                runs.append((h2, await h2.launch(busy)))
            for h, rid in runs:
                assert await h.settle(rid) == "finished"
            for h, rid in runs:
                for reader in (h1, h2):
                    events = reader.events(rid)  # asserts contiguous seqs from 0
                    assert events[0]["type"] == "RunStarted"
                    assert events[-1]["type"] == "RunFinished"
                    assert len(reader.find(rid, "NodeOutput")) == 8
                assert h.run(rid)["summary"] == {"finished": 8}
    finally:
        one.close()
        two.close()


async def test_cancel_from_another_engine(tmp_path: Path) -> None:
    started = anyio.Event()

    async def long(t: Any) -> _Num:
        started.set()
        await anyio.sleep(30)
        return _Num(n=1)

    @workflow("long-x")
    def long_x(ctx: Any) -> Any:
        return Task("long", long, output=_Num)

    one = open_store(tmp_path)
    two = open_store(tmp_path)
    try:
        async with (
            Harness(tmp_path, long_x, store=one) as h1,
            Harness(tmp_path, long_x, store=two) as h2,
        ):
            rid = await h1.launch(long_x)
            with anyio.fail_after(3):
                await started.wait()
            # the owner is alive (fresh heartbeat): the other engine only requests the cancel
            assert await h2.svc.cancel(rid) == {
                "runId": rid,
                "status": "cancelling",
                "won": True,
                "terminalStatus": None,
                "repaired": False,
            }
            assert await h1.settle(rid) == "cancelled"
            assert h2.find(rid, "NodeCancelled")[0]["reason"] == "aborted"
            assert h2.types(rid)[-1] == "RunCancelled"
    finally:
        one.close()
        two.close()
