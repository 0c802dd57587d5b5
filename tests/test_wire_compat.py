"""Wire compatibility with upstream 0.32 (issue 13, items 16 and 18): run rows carry the
newer columns, ``configJson`` the run's limits and tool root, ``cancelRun`` says who won, and
no surface discloses a server path the operator did not configure."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from smithers_core import jsonutil
from smithers_core.store.schema import MIGRATIONS
from smithers_core.store.sqlite import SqliteStore
from tests.engine_helpers import engine_options, wait_for
from tests.gateway_helpers import OP_TOKEN, TOKENS, http, make_gateway, rpc, running, ws_client

pytestmark = pytest.mark.anyio

NEW_RUN_FIELDS = (
    "pauseRequestedAtMs",
    "cancelRequestId",
    "cancelRequestSource",
    "cancelRequestClientIdentity",
    "cancelRequestClientPid",
)


async def _status(client: Any, run_id: str, wanted: str) -> dict[str, Any]:
    async def check() -> Any:
        run = (await rpc(client, "getRun", {"runId": run_id})).json()["payload"]
        return run if run["status"] == wanted else None

    result: dict[str, Any] = await wait_for(check, 10, f"run {run_id} -> {wanted}")
    return result


async def test_run_rows_carry_upstreams_newer_fields_and_limits(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        launched = await rpc(c, "launchRun", {"workflow": "gated"})
        run_id = launched.json()["payload"]["runId"]
        run = await _status(c, run_id, "waiting-approval")
        for name in NEW_RUN_FIELDS:
            assert name in run and run[name] is None, name
        config = jsonutil.loads(run["configJson"])
        assert {k: config[k] for k in ("maxConcurrency", "maxOutputBytes", "toolTimeoutMs")} == {
            "maxConcurrency": None,
            "maxOutputBytes": None,
            "toolTimeoutMs": None,
        }
        assert "rootDir" in config and config["rootDir"] is None
        # a gateway names workflows by key: no server path in the row
        assert run["workflowPath"] is None and run["workflowKey"] == "gated"
        [listed] = [r for r in (await rpc(c, "listRuns", {})).json()["payload"]]
        assert listed["workflowPath"] is None
        for name in NEW_RUN_FIELDS:
            assert name in listed

        options = {"maxConcurrency": 2, "maxOutputBytes": 4096, "toolTimeoutMs": 1500}
        r = await rpc(c, "launchRun", {"workflow": "gated", "options": options})
        limited = await _status(c, r.json()["payload"]["runId"], "waiting-approval")
        config = jsonutil.loads(limited["configJson"])
        assert {k: config[k] for k in options} == options


async def test_cancel_run_says_who_won_and_records_who_asked(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        run_id = (await rpc(c, "launchRun", {"workflow": "slow"})).json()["payload"]["runId"]
        await _status(c, run_id, "running")
        first = (await rpc(c, "cancelRun", {"runId": run_id})).json()["payload"]
        assert first == {
            "runId": run_id,
            "status": "cancelling",
            "won": True,
            "terminalStatus": None,
            "repaired": False,
        }
        second = (await rpc(c, "cancelRun", {"runId": run_id})).json()
        if second["ok"]:  # still stopping: the second request did not win
            assert second["payload"]["won"] is False
        else:  # already cancelled
            assert second["error"]["code"] == "RUN_NOT_ACTIVE"
        run = await _status(c, run_id, "cancelled")
        assert run["cancelRequestSource"] == "gateway"
        assert run["cancelRequestClientIdentity"] == "user:will"
        assert run["cancelRequestClientPid"] is None
        assert uuid.UUID(run["cancelRequestId"])
        assert isinstance(run["cancelRequestedAtMs"], int)


async def test_cancel_of_an_orphaned_running_row_repairs_it(tmp_path: Path) -> None:
    """A ``running`` row whose owner is gone is finalised by the cancel itself: repaired."""
    gw = make_gateway(tmp_path, tokens=TOKENS, engine_options=engine_options(sweep_ms=600_000))
    async with running(gw), http(gw, OP_TOKEN) as c:
        assert gw.runtime is not None

        def orphan(tx: Any) -> None:
            old = tx.now - 3_600_000
            tx.execute(
                "INSERT INTO _smithers_runs (run_id, workflow_name, status, created_at_ms,"
                " started_at_ms, heartbeat_at_ms, runtime_owner_id, config_json)"
                " VALUES ('orphan', 'slow', 'running', ?, ?, ?, 'pid:999999:x@elsewhere', '{}')",
                (old, old, old),
            )
            tx.emit("orphan", "RunStarted")

        await gw.runtime.store.write(orphan)
        r = (await rpc(c, "cancelRun", {"runId": "orphan"})).json()["payload"]
        assert r == {
            "runId": "orphan",
            "status": "cancelled",
            "won": True,
            "terminalStatus": "cancelled",
            "repaired": True,
        }
        run = (await rpc(c, "getRun", {"runId": "orphan"})).json()["payload"]
        assert run["status"] == "cancelled" and run["cancelRequestSource"] == "gateway"


async def test_health_and_hello_do_not_disclose_the_working_directory(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw) as c:
        identity = (await c.get("/health")).json()["identity"]
        assert identity["workspaceRoot"] is None
        async with ws_client(gw) as ws:
            challenge = await ws.recv()
            hello = await ws.connect(OP_TOKEN)
            assert hello["ok"] is True
            for frame in (challenge, hello):
                assert str(Path.cwd()) not in str(frame) and str(tmp_path) not in str(frame)
            assert hello["payload"]["identity"]["workspaceRoot"] is None


async def test_a_configured_workspace_root_is_shown(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    gw = make_gateway(tmp_path, tokens=TOKENS, workspace_root=str(root))
    async with running(gw), http(gw) as c:
        identity = (await c.get("/health")).json()["identity"]
        assert identity["workspaceRoot"] == str(root.resolve())


@pytest.mark.sqlite_only  # the PostgreSQL twin: tests/test_store_postgres.py
def test_a_version_1_store_gains_the_new_columns(tmp_path: Path) -> None:
    """An existing database keeps its runs; their new fields read as null."""
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE _smithers_meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO _smithers_meta VALUES ('schema_version', '1')")
    conn.execute(
        "INSERT INTO _smithers_runs (run_id, workflow_name, status, created_at_ms)"
        " VALUES ('old-run', 'wf', 'finished', 1)"
    )
    conn.commit()
    conn.close()
    store = SqliteStore(f"sqlite:///{db}").open()
    try:
        from smithers_core.store.db import SmithersDb

        run = SmithersDb(store).get_run("old-run")
        assert run is not None and run["status"] == "finished"
        for name in NEW_RUN_FIELDS:
            assert run[name] is None
    finally:
        store.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute(
            "SELECT value FROM _smithers_meta WHERE key = 'schema_version'"
        ).fetchone() == (str(len(MIGRATIONS)),)
    finally:
        conn.close()
