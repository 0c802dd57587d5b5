"""Time travel: ``rewindRun`` (``jumpToFrame``, ``devtools.jumpToFrame``; reference 5.4).

A real gateway on 127.0.0.1: rewinding a finished run to a middle frame re-executes only what
follows it, the owner/admin check, validation, ``Busy``, the rate limit, the audit (and its
recovery after a crash), an executing run stopped first, a WebSocket run stream and the REST
change stream seeing the jump.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import smithers_rest

from smithers_core.engine import rewind as engine_rewind
from smithers_core.engine.engine import HOSTNAME
from smithers_core.gateway import Gateway
from smithers_core.gateway.changes import event_collections
from smithers_core.gateway.events import map_event
from smithers_core.runtime import Runtime
from smithers_core.store import rewind as store_rewind
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Loop, Seq, Task
from tests import stores
from tests.engine_helpers import Harness, wait_for
from tests.fixtures.gateway import rewind_workflows as rw
from tests.gateway_helpers import (
    http,
    make_gateway,
    plugin_host,
    rpc,
    run_events_until,
    running,
    ws_client,
)
from tests.rest_helpers import open_changes

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

OWNER, OTHER, ADMIN, READER = "owner-token", "other-token", "admin-token", "reader-token"
TOKENS: dict[str, Any] = {
    OWNER: {"role": "operator", "scopes": ["*"], "userId": "user:will"},
    OTHER: {"role": "operator", "scopes": ["*"], "userId": "user:olga"},
    ADMIN: {"role": "Admin", "scopes": ["run:admin"], "userId": "user:root"},
    READER: {"role": "admin", "scopes": ["run:read"], "userId": "user:rita"},
}


def gateway(tmp_path: Path, *, rest: bool = False) -> Gateway:
    host = plugin_host()
    if rest:
        host.register(smithers_rest, "smithers_rest")
    gw = make_gateway(tmp_path, tokens=TOKENS, plugins=host)
    gw.register("chain", rw.chain)
    gw.register("chain_gated", rw.chain_gated)
    gw.register("chain_held", rw.chain_held)
    gw.register("chain_flaky", rw.chain_flaky)
    return gw


def db_rows(tmp_path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return stores.rows(tmp_path / "gw.db", sql, *args)


def outputs(tmp_path: Path, run_id: str) -> dict[str, int]:
    rows = db_rows(
        tmp_path,
        "SELECT node_id, payload_json FROM _smithers_outputs WHERE run_id = ?",
        run_id,
    )
    return {r[0]: json.loads(r[1])["n"] for r in rows}


def audit(tmp_path: Path, run_id: str) -> list[tuple[Any, ...]]:
    return db_rows(
        tmp_path,
        "SELECT from_frame_no, to_frame_no, caller, result, error_code, duration_ms"
        " FROM _smithers_time_travel_audit WHERE run_id = ? ORDER BY id",
        run_id,
    )


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    """Task counters and gates start afresh in each test (run ids repeat on each store's leg)."""
    rw.COUNTS.clear()
    rw.GATES.clear()


def counts(run_id: str) -> tuple[int, int, int]:
    return tuple(rw.COUNTS[f"{run_id}:{n}"] for n in "abc")  # type: ignore[return-value]


async def launch(c: httpx.AsyncClient, workflow: str, run_id: str, start: int = 1) -> None:
    r = await rpc(
        c, "launchRun", {"workflow": workflow, "runId": run_id, "input": {"start": start}}
    )
    assert r.status_code == 200, r.text


async def status_of(c: httpx.AsyncClient, run_id: str) -> str:
    r = await rpc(c, "getRun", {"runId": run_id})
    return str(r.json()["payload"]["status"])


async def wait_status(c: httpx.AsyncClient, run_id: str, status: str) -> None:
    async def check() -> bool:
        return await status_of(c, run_id) == status

    await wait_for(check, 10, f"{run_id} {status}")


async def rewind(
    c: httpx.AsyncClient, run_id: str, frame_no: Any, method: str = "rewindRun", **extra: Any
) -> httpx.Response:
    params = {"runId": run_id, "frameNo": frame_no, "confirm": True, **extra}
    return await rpc(c, method, params)


async def finished_chain(c: httpx.AsyncClient, run_id: str, workflow: str = "chain") -> None:
    await launch(c, workflow, run_id)
    await wait_status(c, run_id, "finished" if workflow == "chain" else "waiting-approval")


async def test_rewind_to_a_middle_frame_reexecutes_only_what_follows(tmp_path: Path) -> None:
    async with running(gateway(tmp_path)) as gw, http(gw, OWNER) as c:
        await finished_chain(c, "mid")
        assert counts("mid") == (1, 1, 1)
        assert outputs(tmp_path, "mid") == {"a": 10, "b": 11, "c": 22}
        frames = (await rpc(c, "frames.list", {"runId": "mid"})).json()["payload"]
        assert [f["frameNo"] for f in frames] == [3, 2, 1]
        seqs_before = [r[0] for r in db_rows(tmp_path, "SELECT seq FROM _smithers_events")]

        r = await rewind(c, "mid", 2)
        assert r.status_code == 200, r.text
        result = r.json()["payload"]
        assert result == {
            "ok": True,
            "newFrameNo": 2,
            "revertedSandboxes": 0,
            "deletedFrames": 1,
            "deletedAttempts": 2,  # b (started with frame 2) and c
            "invalidatedDiffs": 0,
            "durationMs": result["durationMs"],
            "effectBoundary": {"blocking": [], "revertible": [], "warnings": []},
        }
        assert isinstance(result["durationMs"], int) and result["durationMs"] >= 0
        await wait_status(c, "mid", "finished")
        assert counts("mid") == (1, 2, 2)  # a kept its output; b and c ran again
        assert outputs(tmp_path, "mid") == {"a": 10, "b": 11, "c": 22}
        frames = (await rpc(c, "frames.list", {"runId": "mid"})).json()["payload"]
        assert [f["frameNo"] for f in frames] == [3, 2, 1]

        # D10: no event row deleted, no seq reused; the jump is an appended event
        rows = db_rows(
            tmp_path,
            "SELECT seq, type, payload_json FROM _smithers_events WHERE run_id = 'mid'"
            " ORDER BY seq",
        )
        assert [r[0] for r in rows] == list(range(len(rows)))
        assert len(rows) > len(seqs_before)
        jumps = [json.loads(r[2]) for r in rows if r[1] == "TimeTravelJumped"]
        assert len(jumps) == 1
        assert jumps[0]["fromFrameNo"] == 3 and jumps[0]["toFrameNo"] == 2
        assert jumps[0]["caller"] == "user:will"
        assert jumps[0]["resetNodes"] == [{"nodeId": "b", "iteration": 0}]
        assert jumps[0]["unmountedNodes"] == [{"nodeId": "c", "iteration": 0}]
        after = [
            r[1]
            for r in rows
            if r[0] > rows.index(next(x for x in rows if x[1] == "TimeTravelJumped"))
        ]
        assert after[:2] == ["NodePending", "RunStarted"]
        assert after[-1] == "RunFinished"

        # frame 0: everything runs again
        r = await rewind(c, "mid", 0)
        assert r.status_code == 200, r.text
        assert r.json()["payload"]["deletedFrames"] == 3
        await wait_status(c, "mid", "finished")
        assert counts("mid") == (2, 3, 3)
        assert outputs(tmp_path, "mid") == {"a": 10, "b": 11, "c": 22}
        assert [r[3] for r in audit(tmp_path, "mid")] == ["success", "success"]


async def test_owner_admin_and_other_users(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    async with running(gw), http(gw, OWNER) as owner, http(gw, OTHER) as other:
        await finished_chain(owner, "own")
        r = await rewind(other, "own", 1)
        assert r.status_code == 401
        error = r.json()["error"]
        assert error["code"] == "Unauthorized"
        assert error["message"] == "Only the run owner or an admin may rewind this run."
        assert counts("own") == (1, 1, 1)

        async with http(gw, ADMIN) as admin:  # role "Admin": any case
            r = await rewind(admin, "own", 1)
            assert r.status_code == 200, r.text
        await wait_status(owner, "own", "finished")
        r = await rewind(owner, "own", 2, method="jumpToFrame")
        assert r.status_code == 200, r.text
        await wait_status(owner, "own", "finished")
        r = await rewind(owner, "own", 3, method="devtools.jumpToFrame")
        assert r.status_code == 200, r.text
        await wait_status(owner, "own", "finished")

        async with http(gw, READER) as reader:  # role admin, but without run:admin
            r = await rewind(reader, "own", 1)
            assert r.status_code == 403 and r.json()["error"]["requiredScope"] == "run:admin"

        assert audit(tmp_path, "own") == [
            (3, 1, "user:olga", "failed", "Unauthorized", 0),
            *[
                (row[0], row[1], row[2], "success", None, row[5])
                for row in audit(tmp_path, "own")[1:]
            ],
        ]
        callers = [row[2] for row in audit(tmp_path, "own")]
        assert callers == ["user:olga", "user:root", "user:will", "user:will"]


async def test_validation_errors(tmp_path: Path) -> None:
    async with running(gateway(tmp_path)) as gw, http(gw, OWNER) as c:
        await finished_chain(c, "val")
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"runId": "val", "frameNo": 1}, 400, "ConfirmationRequired"),
            ({"runId": "val", "frameNo": 1, "confirm": "yes"}, 400, "ConfirmationRequired"),
            ({"runId": "val", "frameNo": -1, "confirm": True}, 400, "InvalidFrameNo"),
            ({"runId": "val", "frameNo": 1.5, "confirm": True}, 400, "InvalidFrameNo"),
            ({"runId": "val", "frameNo": True, "confirm": True}, 400, "InvalidFrameNo"),
            ({"runId": "val", "confirm": True}, 400, "InvalidFrameNo"),
            ({"runId": "val", "frameNo": 4, "confirm": True}, 400, "FrameOutOfRange"),
            ({"runId": "bad id!", "frameNo": 1, "confirm": True}, 400, "InvalidRunId"),
            ({"frameNo": 1, "confirm": True}, 400, "InvalidRunId"),
            ({"runId": "nope", "frameNo": 1, "confirm": True}, 404, "RunNotFound"),
        ]
        for params, status, code in cases:
            r = await rpc(c, "rewindRun", params)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), params
        assert counts("val") == (1, 1, 1)
        # malformed ids are refused by the dispatcher before the method (and are no run)
        codes = [row[4] for row in audit(tmp_path, "val")]
        assert codes == [code for params, _, code in cases if params.get("runId") == "val"]
        assert {row[3] for row in audit(tmp_path, "val")} == {"failed"}
        # refusals do not count against the rate limit
        r = await rewind(c, "val", 1)
        assert r.status_code == 200, r.text


async def test_two_concurrent_rewinds_one_is_busy(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    async with running(gw), http(gw, OWNER) as c:
        await finished_chain(c, "busy")
        engine = gw.runtime.engine
        real_hold = engine.hold

        async def slow_hold(run_id: str, timeout_s: float) -> bool:
            await anyio.sleep(0.5)
            return await real_hold(run_id, timeout_s)

        engine.hold = slow_hold  # type: ignore[method-assign]
        answers: list[httpx.Response] = []

        async def one(delay: float) -> None:
            await anyio.sleep(delay)
            answers.append(await rewind(c, "busy", 1))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 0)
            tg.start_soon(one, 0.2)
        engine.hold = real_hold  # type: ignore[method-assign]
        assert [a.status_code for a in answers] == [409, 200]
        assert answers[0].json()["error"]["code"] == "Busy"
        await wait_status(c, "busy", "finished")
        assert counts("busy") == (2, 2, 2)
        assert [(row[3], row[4]) for row in audit(tmp_path, "busy")] == [
            ("success", None),
            ("failed", "Busy"),
        ]


async def test_rate_limit_per_run_and_caller(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    async with running(gw), http(gw, OWNER) as c, http(gw, ADMIN) as admin:
        await finished_chain(c, "rate")
        for _ in range(store_rewind.RATE_LIMIT):
            r = await rewind(c, "rate", 3)
            assert r.status_code == 200, r.text
            await wait_status(c, "rate", "finished")
        r = await rewind(c, "rate", 3)
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "RateLimited"
        r = await rewind(admin, "rate", 3)  # another caller has its own budget
        assert r.status_code == 200, r.text
        await wait_status(c, "rate", "finished")
        rows = audit(tmp_path, "rate")
        assert [row[3] for row in rows].count("success") == store_rewind.RATE_LIMIT + 1
        assert rows[store_rewind.RATE_LIMIT][3:5] == ("failed", "RateLimited")


async def test_audit_recovery_after_a_crash_mid_rewind(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    async with running(gw), http(gw, OWNER) as c:
        await finished_chain(c, "crash")
        r = await rewind(c, "crash", 2)
        assert r.status_code == 200, r.text
        await wait_status(c, "crash", "finished")
        store = gw.runtime.store
        dead = f"pid:999999999:x@{HOSTNAME}"

        def crashed(tx: Any) -> None:  # what a process that died mid-rewind left behind
            store_rewind.write_audit(
                tx,
                "crash",
                caller="user:will",
                result="in_progress",
                owner_id=dead,
                from_frame_no=3,
                to_frame_no=1,
                duration_ms=None,
            )

        await store.write(crashed)
        # while it is in progress (its process looks alive to nobody: it is dead) no Busy
        r = await rewind(c, "crash", 1)
        assert r.status_code == 200, r.text
        await wait_status(c, "crash", "finished")
    assert [row[3] for row in audit(tmp_path, "crash")] == ["success", "in_progress", "success"]

    async with Runtime(stores.url("gw.db"), base_dir=tmp_path, supervise=False):
        pass
    rows = audit(tmp_path, "crash")
    assert [row[3] for row in rows] == ["success", "partial", "success"]
    assert rows[1][4] == "INTERRUPTED" and rows[1][5] is not None
    assert rows[0][2] == "user:will" and rows[0][5] is not None


async def test_a_live_in_progress_rewind_makes_others_busy(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    async with running(gw), http(gw, OWNER) as c:
        await finished_chain(c, "live")
        owner_id = gw.runtime.engine.owner_id

        def live(tx: Any) -> None:  # a rewind under way in this (live) process
            store_rewind.write_audit(
                tx,
                "live",
                caller="user:x",
                result="in_progress",
                owner_id=owner_id,
                from_frame_no=3,
                to_frame_no=1,
                duration_ms=None,
            )

        await gw.runtime.store.write(live)
        r = await rewind(c, "live", 1)
        assert r.status_code == 409 and r.json()["error"]["code"] == "Busy"
    # a fresh in-progress row of a live process survives a restart's recovery
    async with Runtime(stores.url("gw.db"), base_dir=tmp_path, supervise=False):
        pass
    assert [row[3] for row in audit(tmp_path, "live")] == ["in_progress", "failed"]


async def test_an_executing_run_is_stopped_first(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    async with running(gw), http(gw, OWNER) as c:
        await launch(c, "chain_held", "held")
        await wait_for(lambda: counts("held")[1] == 1, 10, "b started")
        r = await rewind(c, "held", 2)
        assert r.status_code == 200, r.text
        assert r.json()["payload"]["deletedAttempts"] == 1  # b's cancelled attempt
        await wait_for(lambda: counts("held")[1] == 2, 10, "b started again")
        assert await status_of(c, "held") == "running"
        rw.GATES["held"].set()
        await wait_status(c, "held", "finished")
        assert counts("held") == (1, 2, 1)  # a kept
        assert outputs(tmp_path, "held") == {"a": 10, "b": 11, "c": 22}
        cancelled = db_rows(
            tmp_path,
            "SELECT payload_json FROM _smithers_events WHERE run_id = 'held'"
            " AND type = 'NodeCancelled'",
        )
        assert [json.loads(p[0])["reason"] for p in cancelled] == ["shutdown"]


async def test_a_run_stream_sees_the_jump_then_the_rerun(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    async with running(gw), http(gw, OWNER) as c:
        await finished_chain(c, "live-stream", "chain_gated")
        last = db_rows(
            tmp_path, "SELECT MAX(seq) FROM _smithers_events WHERE run_id = 'live-stream'"
        )[0][0]
        async with ws_client(gw) as ws, ws_client(gw) as watcher:
            await ws.recv()  # connect.challenge
            await ws.connect(OWNER)
            await watcher.recv()
            await watcher.connect(OWNER)  # no stream: gets the raw broadcasts
            res = await ws.request(
                "streamRunEvents", {"runId": "live-stream", "afterSeq": last + 1}
            )
            assert res["ok"] is True, res
            r = await rewind(c, "live-stream", 2)
            assert r.status_code == 200, r.text
            await wait_status(c, "live-stream", "waiting-approval")
            total = db_rows(
                tmp_path, "SELECT MAX(seq) FROM _smithers_events WHERE run_id = 'live-stream'"
            )[0][0]
            got = await run_events_until(ws, total + 1)
            names = [f["payload"]["event"] for f in got]
            seqs = [f["payload"]["seq"] for f in got]
            assert seqs == list(range(last + 2, total + 2))  # new seqs, none reused
            assert names[0] == "run.time_travel_jumped"
            assert got[0]["payload"]["payload"] == {
                "runId": "live-stream",
                "fromFrameNo": 4,
                "toFrameNo": 2,
                "timestampMs": got[0]["payload"]["payload"]["timestampMs"],
                "caller": "user:will",
            }
            started = [
                f["payload"]["payload"]["nodeId"]
                for f in got
                if f["payload"]["event"] == "node.started"
            ]
            assert started == ["b", "c"]
            assert "approval.requested" in names
            broadcast = await watcher.event("run.time_travel_jumped", runId="live-stream")
            assert broadcast["payload"]["toFrameNo"] == 2
        assert counts("live-stream") == (1, 2, 2)


async def test_the_change_stream_sees_the_rewind(tmp_path: Path) -> None:
    async with running(gateway(tmp_path, rest=True)) as gw, http(gw, OWNER) as c:
        await finished_chain(c, "chg")
        async with open_changes(gw, OWNER) as changes:
            await changes.until("heartbeat")
            r = await c.post("/v1/api/runs/chg/rewind", json={"frameNo": 1, "confirm": True})
            assert r.status_code == 200, r.text
            seen: set[str] = set()
            while not {"runs", "nodes", "node_outputs", "run_events"} <= seen:
                change = await changes.until("change")
                seen |= set(change.data["collections"])
        await wait_status(c, "chg", "finished")
        assert counts("chg") == (2, 2, 2)  # frame 1 is a mounted: a started after it


async def test_a_failed_run_rewound_runs_again_and_completes_again(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    async with running(gw), http(gw, OWNER) as c, ws_client(gw) as watcher:
        await watcher.recv()
        await watcher.connect(OWNER)
        await launch(c, "chain_flaky", "flaky")
        await wait_status(c, "flaky", "failed")
        first = await watcher.event("run.completed", runId="flaky")
        assert first["payload"]["status"] == "failed"
        r = await rewind(c, "flaky", 3)  # frame 3 mounted c: c runs again
        assert r.status_code == 200, r.text
        await wait_status(c, "flaky", "finished")
        again = await watcher.event("run.completed", runId="flaky")
        assert again["payload"] == {"runId": "flaky", "status": "finished"}
        assert counts("flaky") == (1, 1, 2)
        assert outputs(tmp_path, "flaky") == {"a": 10, "b": 11, "c": 22}
        record = (await rpc(c, "getRun", {"runId": "flaky"})).json()["payload"]
        assert record["errorJson"] is None


def test_the_jump_maps_to_its_wire_name_and_collections() -> None:
    event = {
        "type": "TimeTravelJumped",
        "runId": "r",
        "timestampMs": 5,
        "fromFrameNo": 3,
        "toFrameNo": 1,
        "caller": "user:will",
        "deletedFrames": 2,
    }
    assert map_event(event) == (
        "run.time_travel_jumped",
        {"runId": "r", "fromFrameNo": 3, "toFrameNo": 1, "timestampMs": 5, "caller": "user:will"},
    )
    assert event_collections("TimeTravelJumped") == {"runs", "nodes", "run_events", "node_outputs"}


async def test_a_loop_goes_back_to_the_iteration_of_the_frame(tmp_path: Path) -> None:
    runs: dict[str, int] = {}

    def step(t: Any) -> rw.Num:
        name = f"s{t.iteration}"
        runs[name] = runs.get(name, 0) + 1
        return rw.Num(n=t.iteration * 10)

    def last(t: Any) -> rw.Num:
        runs["after"] = runs.get("after", 0) + 1
        return rw.Num(n=-1)

    @workflow("looped")
    def looped(ctx: Any) -> Any:
        return Seq(
            Loop("l", body=Task("s", step, output=rw.Num), max_iterations=3),
            Task("after", last, output=rw.Num),
        )

    async with Harness(tmp_path) as h:
        rid, status = await h.start(looped)
        assert status == "finished"
        frames = h.store.read(
            lambda c: c.execute(
                "SELECT frame_no, xml_json FROM _smithers_frames WHERE run_id = ?"
                " ORDER BY frame_no",
                (rid,),
            ).fetchall()
        )
        second = next(f[0] for f in frames if '"iteration":"1"' in f[1])
        result = await engine_rewind.rewind(h.engine, rid, second, caller="test")
        assert result["newFrameNo"] == second
        assert await h.settle(rid) == "finished"
        assert runs == {"s0": 1, "s1": 2, "s2": 2, "after": 2}
        assert [h.output(rid, "s", i) for i in range(3)] == [{"n": 0}, {"n": 10}, {"n": 20}]
        loop = h.store.read(
            lambda c: c.execute(
                "SELECT iteration, done FROM _smithers_ralph WHERE run_id = ?", (rid,)
            ).fetchone()
        )
        assert tuple(loop) == (2, 1)


async def test_a_run_that_does_not_stop_in_time_fails_the_rewind(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    async with running(gw), http(gw, OWNER) as c:
        await launch(c, "chain_held", "stuck")
        await wait_for(lambda: counts("stuck")[1] == 1, 10, "b started")
        engine = gw.runtime.engine
        real_hold = engine.hold

        async def never_stops(run_id: str, timeout_s: float) -> bool:
            assert timeout_s == engine_rewind.STOP_TIMEOUT_S == 10
            engine._resuming.add(run_id)  # what hold does, without stopping the driver
            return False

        engine.hold = never_stops  # type: ignore[method-assign]
        r = await rewind(c, "stuck", 1)
        engine.hold = real_hold  # type: ignore[method-assign]
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "RewindFailed"
        assert r.json()["error"]["message"] == "The run did not stop within 10 s."
        rows = audit(tmp_path, "stuck")
        assert [(row[3], row[4]) for row in rows] == [("failed", "RewindFailed")]
        assert "stuck" not in engine._resuming  # released
        assert await status_of(c, "stuck") == "running"  # untouched, still executing
        rw.GATES["stuck"].set()
        await wait_status(c, "stuck", "finished")
        assert counts("stuck") == (1, 1, 1)
        assert outputs(tmp_path, "stuck") == {"a": 10, "b": 11, "c": 22}
