"""The stores: migrations, epoch, group commit isolation, driver selection (SQLite files
themselves in the ``sqlite_only`` tests; the rest on both stores)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from smithers_core.errors import SmithersError
from smithers_core.store import open_store
from smithers_core.store.schema import SCHEMA_VERSION
from smithers_core.store.sqlite import Tx, sqlite_path_from_url
from tests import stores


@pytest.mark.sqlite_only
def test_url_forms(tmp_path: Path) -> None:
    assert sqlite_path_from_url("sqlite:///rel/x.db", tmp_path) == tmp_path / "rel/x.db"
    assert sqlite_path_from_url("sqlite:////abs/x.db", tmp_path) == Path("/abs/x.db")
    with pytest.raises(SmithersError):
        sqlite_path_from_url("sqlite://", tmp_path)


@pytest.mark.sqlite_only
def test_open_creates_wal_schema_and_a_stable_epoch(tmp_path: Path) -> None:
    store = open_store("sqlite:///s.db", base_dir=tmp_path)
    epoch = store.epoch
    store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(conn.execute("SELECT key, value FROM _smithers_meta").fetchall())
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert meta == {"schema_version": str(SCHEMA_VERSION), "epoch": epoch}
    expected = (
        "_smithers_runs _smithers_nodes _smithers_attempts _smithers_frames _smithers_events"
        " _smithers_approvals _smithers_signals _smithers_cron _smithers_ralph _smithers_input"
        " _smithers_outputs _smithers_meta"
    )
    for name in expected.split():
        assert name in tables
    again = open_store("sqlite:///s.db", base_dir=tmp_path)
    assert again.epoch == epoch
    again.close()


@pytest.mark.sqlite_only
def test_newer_schema_is_refused(tmp_path: Path) -> None:
    open_store("sqlite:///s.db", base_dir=tmp_path).close()
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("UPDATE _smithers_meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SmithersError) as err:
        open_store("sqlite:///s.db", base_dir=tmp_path)
    assert err.value.code == "SCHEMA_TOO_NEW"


@pytest.mark.sqlite_only
def test_unknown_scheme_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(SmithersError) as err:
        open_store("mysql://x/y", base_dir=tmp_path)
    assert err.value.code == "STORE_UNSUPPORTED"


def test_a_failing_change_rolls_back_alone_in_a_group(tmp_path: Path) -> None:
    store = stores.open_store(tmp_path, "g.db")
    gate = threading.Event()
    started = threading.Event()

    def block(tx: Tx) -> None:
        started.set()
        gate.wait(5)

    first = store.submit(block)
    assert started.wait(5)

    def good(i: int):  # type: ignore[no-untyped-def]
        def change(tx: Tx) -> int:
            tx.emit("r", "NodeOutput", text=str(i))
            return i

        return change

    def bad(tx: Tx) -> None:
        tx.emit("r", "NodeOutput", text="lost")
        raise ValueError("boom")

    # queued while the writer is busy: committed together as one group
    futures = [store.submit(good(0)), store.submit(bad), store.submit(good(1))]
    gate.set()
    first.result(5)
    assert futures[0].result(5) == 0
    with pytest.raises(ValueError):
        futures[1].result(5)
    assert futures[2].result(5) == 1
    events = [(e.seq, e.event["text"]) for e in store.tail(0)]
    assert events == [(0, "0"), (1, "1")]  # no gap where the failed change's event was
    store.close()


def test_commit_listeners_see_events_in_seq_order_after_commit(tmp_path: Path) -> None:
    store = stores.open_store(tmp_path, "l.db")
    seen: list[int] = []
    store.add_commit_listener(lambda events: seen.extend(e.seq for e in events))
    for _ in range(5):
        store.write_sync(lambda tx: tx.emit("r", "RunStarted"))
    assert seen == [0, 1, 2, 3, 4]
    store.close()


def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    store = stores.open_store(tmp_path, "c.db")
    store.close()
    with pytest.raises(SmithersError) as err:
        store.submit(lambda tx: None)
    assert err.value.code == "STORE_CLOSED"


def test_a_caller_that_gave_up_does_not_kill_the_writer(tmp_path: Path) -> None:
    store = stores.open_store(tmp_path, "k.db")
    gate = threading.Event()
    started = threading.Event()

    def block(tx: Tx) -> None:
        started.set()
        gate.wait(5)

    first = store.submit(block)
    assert started.wait(5)
    abandoned = store.submit(lambda tx: tx.emit("r", "NodeOutput", text="never"))
    assert abandoned.cancel()  # like an awaiting task cancelled during shutdown
    gate.set()
    first.result(5)
    assert store.write_sync(lambda tx: tx.emit("r", "RunStarted"))["type"] == "RunStarted"
    assert [e.type for e in store.tail(0)] == ["RunStarted"]
    store.close()


def test_a_change_alone_in_its_transaction_fails_alone(tmp_path: Path) -> None:
    store = stores.open_store(tmp_path, "a.db")
    try:

        def bad(tx: Tx) -> None:
            tx.emit("r", "NodeOutput", text="lost")
            tx.execute("UPDATE _smithers_meta SET value = 'x' WHERE key = 'epoch'")
            raise ValueError("boom")

        with pytest.raises(ValueError):
            store.write_sync(bad)
        # nothing of it committed, and the writer goes on
        assert store.write_sync(lambda tx: tx.emit("r", "RunStarted"))["type"] == "RunStarted"
        assert [(e.seq, e.type) for e in store.tail(0)] == [(0, "RunStarted")]
        assert (
            store.read(
                lambda c: c.execute(
                    "SELECT value FROM _smithers_meta WHERE key = 'epoch'"
                ).fetchone()
            )[0]
            == store.epoch
        )
        # a statement the database refuses fails its change only
        with pytest.raises(Exception) as err:
            store.write_sync(lambda tx: tx.execute("INSERT INTO no_such_table VALUES (1)"))
        assert "no_such_table" in str(err.value)
        assert store.write_sync(lambda tx: tx.emit("r", "RunFinished"))["type"] == "RunFinished"
    finally:
        store.close()
