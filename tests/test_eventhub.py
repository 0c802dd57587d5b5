"""EventHub: readers get every event in order, woken by commits here and in other processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from smithers_core.eventhub import EventHub
from smithers_core.store.sqlite import SqliteStore, Tx

pytestmark = pytest.mark.anyio


def _emit(n: int, run_id: str = "r", final: bool = False):  # type: ignore[no-untyped-def]
    def change(tx: Tx) -> None:
        if tx.one("SELECT 1 FROM _smithers_runs WHERE run_id = ?", (run_id,)) is None:
            tx.execute(
                "INSERT INTO _smithers_runs (run_id, workflow_name, status, created_at_ms)"
                " VALUES (?, 'w', 'running', 0)",
                (run_id,),
            )
        for i in range(n):
            tx.emit(run_id, "NodeOutput", text=str(i))
        if final:
            tx.execute("UPDATE _smithers_runs SET status = 'finished' WHERE run_id = ?", (run_id,))
            tx.emit(run_id, "RunFinished")

    return change


async def test_subscribe_replays_then_follows_live_commits_until_terminal(tmp_path: Path) -> None:
    store = SqliteStore("sqlite:///h.db", base_dir=tmp_path).open()
    try:
        await store.write(_emit(3))
        async with EventHub(store, poll_ms=5000) as hub:
            got: list[int] = []

            async def reader() -> None:
                async for ev in hub.subscribe("r", -1):
                    got.append(ev.seq)

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(reader)
                    for _ in range(5):
                        await store.write(_emit(2))
                    await store.write(_emit(0, final=True))
            assert got == list(range(14))
            # a cursor in the middle resumes exactly after it
            tail = [ev.seq async for ev in hub.subscribe("r", 9)]
            assert tail == [10, 11, 12, 13]
    finally:
        store.close()


async def test_commits_from_another_process_wake_readers(tmp_path: Path) -> None:
    store = SqliteStore("sqlite:///x.db", base_dir=tmp_path).open()
    try:
        await store.write(_emit(1, run_id="other"))
        async with EventHub(store, poll_ms=20) as hub:
            code = textwrap.dedent(
                """
                import sys
                from pathlib import Path
                from smithers_core.store.sqlite import SqliteStore
                s = SqliteStore("sqlite:///x.db", base_dir=Path(sys.argv[1])).open()
                def change(tx):
                    for i in range(3):
                        tx.emit("other", "NodeOutput", text=str(i))
                    tx.execute("UPDATE _smithers_runs SET status='finished' WHERE run_id='other'")
                    tx.emit("other", "RunFinished")
                s.write_sync(change)
                s.close()
                """
            )
            seen: list[str] = []
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:

                    async def reader() -> None:
                        async for ev in hub.subscribe("other", 0):
                            seen.append(ev.type)

                    tg.start_soon(reader)
                    await anyio.to_thread.run_sync(
                        lambda: subprocess.run(
                            [sys.executable, "-c", code, str(tmp_path)], check=True, timeout=30
                        )
                    )
            assert seen == ["NodeOutput"] * 3 + ["RunFinished"]
    finally:
        store.close()


async def test_taps_see_in_process_commits(tmp_path: Path) -> None:
    store = SqliteStore("sqlite:///t.db", base_dir=tmp_path).open()
    try:
        async with EventHub(store, poll_ms=5000) as hub:
            batches: list[list[int]] = []
            hub.add_tap(lambda events: batches.append([e.seq for e in events]))
            waiter = hub.waiter("r")
            await store.write(_emit(2))
            with anyio.fail_after(2):
                await waiter.wait()
            assert batches == [[0, 1]]
    finally:
        store.close()
