"""EventHub: readers get every event in order, woken by commits here and in other processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from smithers_core.eventhub import EventHub, RunWindows
from smithers_core.store.sqlite import CommittedEvent, Tx
from tests import stores

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
    store = stores.open_store(tmp_path, "h.db")
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
    store = stores.open_store(tmp_path, "x.db")
    try:
        await store.write(_emit(1, run_id="other"))
        async with EventHub(store, poll_ms=20) as hub:
            code = textwrap.dedent(
                """
                import sys
                from pathlib import Path
                from smithers_core.store import open_store
                s = open_store(sys.argv[2], base_dir=Path(sys.argv[1]))
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
                            [sys.executable, "-c", code, str(tmp_path), stores.url("x.db")],
                            check=True,
                            timeout=30,
                        )
                    )
            assert seen == ["NodeOutput"] * 3 + ["RunFinished"]
    finally:
        store.close()


async def test_taps_see_in_process_commits(tmp_path: Path) -> None:
    store = stores.open_store(tmp_path, "t.db")
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


def _ev(run_id: str, seq: int, type: str = "NodeOutput") -> CommittedEvent:
    return CommittedEvent(run_id, seq, type, {"timestampMs": seq}, b'{"s":%d}' % seq, seq + 1)


def test_windows_are_contiguous_bounded_and_deduplicated() -> None:
    w = RunWindows(size=3, max_windows=10, terminal_grace_ms=0)
    assert [w.append(_ev("r", i)) for i in (0, 1, 1, 2)] == [True, True, False, True]
    assert [e.seq for e in w.read("r", -1, 10) or []] == [0, 1, 2]
    w.append(_ev("r", 3))  # trims the oldest
    assert w.read("r", -1, 10) is None  # cursor older than the window: read the store
    assert [e.seq for e in w.read("r", 0, 10) or []] == [1, 2, 3]
    assert w.read("r", 3, 10) is None  # at the live end of a running run: ask the store
    w.append(_ev("r", 7))  # a gap restarts the window
    assert w.read("r", 3, 10) is None
    assert [e.seq for e in w.read("r", 6, 10) or []] == [7]
    w.append(_ev("r", 8, "RunFinished"))
    assert w.read("r", 8, 10) == []  # terminal and fully read: nothing more, ever
    w.release_expired()
    assert len(w) == 0


def test_windows_evict_terminal_runs_first() -> None:
    w = RunWindows(size=10, max_windows=2, terminal_grace_ms=60_000)
    w.append(_ev("a", 0))
    w.append(_ev("b", 0, "RunFinished"))
    w.append(_ev("c", 0))
    assert w.read("b", -1, 1) is None and w.read("a", -1, 1) is not None
    w.append(_ev("d", 0))
    assert w.read("a", -1, 1) is None  # then least recently used


async def test_poller_never_skips_rows_of_another_process_behind_a_local_commit(
    tmp_path: Path,
) -> None:
    # Another process commits rowid N, then this process commits rowid N+1 before the next
    # poll: the local commit must not move the poll cursor past N (issue 6). Local rows are
    # fed once (by the commit listener), foreign rows once (by the poller).
    store = stores.open_store(tmp_path, "p.db")
    other = stores.open_store(tmp_path, "p.db")
    try:
        async with EventHub(store, poll_ms=60_000) as hub:
            fed: list[tuple[str, int]] = []
            local: list[tuple[str, int]] = []
            hub.add_tap(lambda events: fed.extend((e.run_id, e.seq) for e in events))
            hub.add_tap(
                lambda events: local.extend((e.run_id, e.seq) for e in events), local_only=True
            )
            await other.write(_emit(2, run_id="foreign"))
            waiter = hub.waiter("mine")
            await store.write(_emit(1, run_id="mine"))
            with anyio.fail_after(2):
                await waiter.wait()
            await hub._poll_once()
            await hub._poll_once()
            assert sorted(fed) == [("foreign", 0), ("foreign", 1), ("mine", 0)]
            assert local == [("mine", 0)]
            assert [e.seq for e in hub.read("foreign", -1)] == [0, 1]
    finally:
        other.close()
        store.close()
