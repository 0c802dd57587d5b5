"""Store queries the hosts and the gateway read through: runs, pending approvals, node states,
and gaps in a run's events. Rows are written with the store's own write functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smithers_core.store import approvals, events, nodes, runs
from smithers_core.store.db import SmithersDb
from smithers_core.store.sqlite import SqliteStore, Tx
from tests import stores


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = stores.open_store(tmp_path, "q.db")
    try:
        yield s
    finally:
        s.close()


def _run(
    run_id: str,
    *,
    status: str = "running",
    parent: str | None = None,
    created_at: int | None = None,
) -> Callable[[Tx], None]:
    def change(tx: Tx) -> None:
        assert runs.create_run(
            tx,
            run_id=run_id,
            parent_run_id=parent,
            workflow_name="wf",
            workflow_path="/flows/wf.py",
            workflow_hash=None,
            owner_id="owner",
            config={"k": run_id},
            input_payload={},
        )
        if status in ("finished", "failed", "cancelled"):
            runs.finish_run(tx, run_id, status)
        elif status != "running":
            assert runs.park_run(tx, run_id, "owner", status, None, 0)
        if created_at is not None:
            tx.execute(
                "UPDATE _smithers_runs SET created_at_ms = ? WHERE run_id = ?",
                (created_at, run_id),
            )

    return change


def _ask(
    run_id: str, node_id: str, iteration: int = 0, *, at: int, label: str | None = None
) -> Callable[[Tx], None]:
    """An approval request on a node that waits for it, requested at ``at`` ms."""

    def change(tx: Tx) -> None:
        key = (node_id, iteration)
        nodes.set_node(tx, run_id, node_id, iteration, "pending", label=label)
        approvals.request_approval(tx, run_id, key, {"title": node_id})
        nodes.set_node(tx, run_id, node_id, iteration, "waiting-approval")
        tx.execute(
            "UPDATE _smithers_approvals SET requested_at_ms = ? WHERE run_id = ?"
            " AND node_id = ? AND iteration = ?",
            (at, run_id, node_id, iteration),
        )

    return change


def _set_status(run_id: str, status: str) -> Callable[[Tx], None]:
    def change(tx: Tx) -> None:
        tx.execute("UPDATE _smithers_runs SET status = ? WHERE run_id = ?", (status, run_id))

    return change


def test_iter_runs_is_newest_first_with_optional_filters(store: SqliteStore) -> None:
    store.write_sync(_run("a", created_at=100))
    store.write_sync(_run("b", status="waiting-event", created_at=300))
    store.write_sync(_run("c", status="finished", parent="a", created_at=200))
    store.write_sync(_run("d", status="waiting-timer", parent="a", created_at=300))

    def ids(**filters: Any) -> list[str]:
        return store.read(lambda c: [r["run_id"] for r in runs.iter_runs(c, **filters)])

    # equal created_at_ms: the later insert first
    assert ids() == ["d", "b", "c", "a"]
    assert ids(status="finished") == ["c"]
    assert ids(statuses=("running", "waiting-event")) == ["b", "a"]
    assert ids(parent_run_id="a") == ["d", "c"]
    assert ids(parent_run_id="a", statuses=("waiting-timer", "running")) == ["d"]
    assert ids(status="", statuses=(), parent_run_id="") == ["d", "b", "c", "a"]
    assert ids(limit=2) == ["d", "b"]
    rows = store.read(lambda c: list(runs.iter_runs(c, status="finished")))
    assert rows[0]["config_json"] == '{"k":"c"}' and rows[0]["workflow_path"] == "/flows/wf.py"
    assert [r["runId"] for r in SmithersDb(store).list_runs(limit=3)] == ["d", "b", "c"]


def test_pending_approvals_are_requested_on_live_runs_and_waiting_nodes(
    store: SqliteStore,
) -> None:
    store.write_sync(_run("r1", status="waiting-approval"))
    store.write_sync(_run("r2", status="waiting-approval"))
    store.write_sync(_ask("r2", "late", at=30))
    store.write_sync(_ask("r1", "gate", at=10, label="The gate"))
    store.write_sync(_ask("r2", "b", 1, at=20))
    store.write_sync(_ask("r2", "b", 0, at=20))
    store.write_sync(_ask("r1", "b", at=20))
    # decided: not pending
    store.write_sync(_ask("r1", "decided", at=5))
    store.write_sync(
        lambda tx: approvals.decide_approval(
            tx, "r1", ("decided", 0), approved=True, note=None, decided_by="u", decision=None
        )
    )
    # the node no longer waits (withdrawn, cancelled): not pending
    store.write_sync(_ask("r1", "withdrawn", at=6))
    store.write_sync(lambda tx: nodes.set_node(tx, "r1", "withdrawn", 0, "cancelled"))
    # the run is terminal: not pending
    for status in ("finished", "failed", "cancelled", "continued"):
        run_id = f"t-{status}"
        store.write_sync(_run(run_id, status="waiting-approval"))
        store.write_sync(_ask(run_id, "gate", at=1))
        store.write_sync(_set_status(run_id, status))

    rows = store.read(lambda c: approvals.pending_approvals(c))
    assert [(r["run_id"], r["node_id"], r["iteration"]) for r in rows] == [
        ("r1", "gate", 0),
        ("r1", "b", 0),
        ("r2", "b", 0),
        ("r2", "b", 1),
        ("r2", "late", 0),
    ]
    first = rows[0]
    assert first["status"] == "requested" and first["requested_at_ms"] == 10
    assert first["request_json"] == '{"title":"gate"}'
    assert first["label"] == "The gate"
    assert first["run_status"] == "waiting-approval"
    assert first["workflow_name"] == "wf" and first["workflow_path"] == "/flows/wf.py"
    assert first["config_json"] == '{"k":"r1"}'
    assert {"decided_at_ms", "note", "decided_by", "decision_json", "auto_approved"} <= set(first)
    only_r2 = store.read(lambda c: approvals.pending_approvals(c, "r2"))
    assert [(r["node_id"], r["iteration"]) for r in only_r2] == [("b", 0), ("b", 1), ("late", 0)]
    assert SmithersDb(store).pending_approvals() == rows


def test_node_states_carry_their_last_attempt_times(store: SqliteStore) -> None:
    store.write_sync(_run("r"))

    def change(tx: Tx) -> None:
        nodes.set_node(tx, "r", "a", 0, "pending", label="A")
        for attempt, state in ((1, "failed"), (2, "in-progress")):
            nodes.insert_attempt(
                tx, "r", ("a", 0), attempt, state, started_at_ms=100 * attempt, meta={}
            )
        nodes.set_node(tx, "r", "a", 0, "in-progress", last_attempt=2)
        nodes.set_node(tx, "r", "b", 0, "pending")
        tx.execute("UPDATE _smithers_nodes SET updated_at_ms = 5 WHERE node_id = 'b'")

    store.write_sync(change)
    store.write_sync(lambda tx: nodes.settle_attempt(tx, "r", ("a", 0), 2, "finished"))
    rows = store.read(lambda c: nodes.node_states(c, "r"))
    finished = store.read(lambda c: nodes.attempt_row(c, "r", "a", 0, 2))
    assert finished is not None
    assert rows == [
        {
            "nodeId": "b",
            "iteration": 0,
            "state": "pending",
            "lastAttempt": None,
            "updatedAtMs": 5,
            "label": None,
            "startedAtMs": None,
            "finishedAtMs": None,
        },
        {
            "nodeId": "a",
            "iteration": 0,
            "state": "in-progress",
            "lastAttempt": 2,
            "updatedAtMs": rows[1]["updatedAtMs"],
            "label": "A",
            "startedAtMs": 200,
            "finishedAtMs": finished["finished_at_ms"],
        },
    ]
    assert rows[1]["finishedAtMs"] is not None
    assert store.read(lambda c: nodes.node_states(c, "other")) == []


def test_newest_missing_event_seq_finds_the_newest_gap(store: SqliteStore) -> None:
    def emit(tx: Tx) -> None:
        for i in range(10):
            tx.emit("r", "NodeOutput", text=str(i))

    store.write_sync(emit)

    def missing(lo: int, hi: int) -> int | None:
        return store.read(lambda c: events.newest_missing_event_seq(c, "r", lo, hi))

    assert missing(0, 9) is None
    assert missing(3, 5) is None
    assert missing(8, 12) == 12  # rows beyond the newest event do not exist
    store.write_sync(
        lambda tx: tx.execute("DELETE FROM _smithers_events WHERE run_id = 'r' AND seq IN (2, 6)")
    )
    assert missing(0, 9) == 6
    assert missing(0, 5) == 2
    assert missing(3, 5) is None
    assert missing(6, 6) == 6
    assert store.read(lambda c: events.newest_missing_event_seq(c, "other", 0, 3)) == 3
