"""Queries of loop progress (``_smithers_ralph``): the iteration a loop is in and whether it
is done."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from smithers_core.store.base import Tx
from smithers_core.store.conn import Connection, Row


@dataclass(slots=True)
class LoopState:
    """A loop's stored progress: its current iteration and whether it finished."""

    iteration: int = 0
    done: bool = False


LOOPS_SQL = "SELECT ralph_id, iteration, done FROM _smithers_ralph WHERE run_id = ?"


def loop_states_of(rows: Iterable[Row]) -> dict[str, LoopState]:
    """Rows of :data:`LOOPS_SQL` by loop id."""
    return {r["ralph_id"]: LoopState(int(r["iteration"]), bool(r["done"])) for r in rows}


def loop_states(conn: Connection, run_id: str) -> dict[str, LoopState]:
    """The progress of every loop the run mounted, by loop id."""
    return loop_states_of(conn.execute(LOOPS_SQL, (run_id,)))


def start_loops(tx: Tx, run_id: str, loop_ids: Iterable[str]) -> None:
    """Record iteration 0 of newly mounted loops (loops already recorded are kept)."""
    for loop_id in loop_ids:
        tx.execute(
            "INSERT INTO _smithers_ralph (run_id, ralph_id, iteration, done,"
            " updated_at_ms) VALUES (?, ?, 0, 0, ?)"
            " ON CONFLICT(run_id, ralph_id) DO NOTHING",
            (run_id, loop_id, tx.now),
        )


def set_loop(tx: Tx, run_id: str, loop_id: str, iteration: int, done: bool) -> None:
    """Store a loop's iteration and whether it is done."""
    tx.execute(
        "INSERT INTO _smithers_ralph (run_id, ralph_id, iteration, done, updated_at_ms)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT(run_id, ralph_id) DO UPDATE SET"
        " iteration = excluded.iteration, done = excluded.done,"
        " updated_at_ms = excluded.updated_at_ms",
        (run_id, loop_id, iteration, 1 if done else 0, tx.now),
    )
