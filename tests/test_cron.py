"""The ``smithers_cron`` plugin: registered schedules, the scheduler's claim and catch-up
rules, time zones, the four cron RPCs with their aliases, errors and scopes, the
``cron.triggered`` event and ``smithers cron`` against a store and a gateway."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest
import smithers_cron
from pydantic import BaseModel
from smithers_cron.patterns import check_pattern, next_fire_ms
from smithers_cron.scheduler import CronScheduler, poll_interval_ms

from smithers_core.errors import SmithersError
from smithers_core.gateway import Gateway
from smithers_core.store import crons
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Seq, Task
from tests import stores
from tests.engine_helpers import wait_for
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import (
    TOKENS,
    http,
    make_gateway,
    plugin_host,
    rpc,
    running,
    ws_client,
)
from tests.processes import SMITHERS

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

NY = "America/New_York"
CRON_TOKENS: dict[str, Any] = {
    **TOKENS,
    "reader": {"role": "viewer", "scopes": ["cron:read"]},
    "runs-only": {"role": "viewer", "scopes": ["run:read"]},
    "legacy-exec": {"role": "operator", "scopes": ["execute"]},
}


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _ny(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(NY)).isoformat()


def cron_host() -> Any:
    host = plugin_host()
    host.register(smithers_cron, "smithers_cron")
    return host


def cron_gateway(tmp_path: Path, **options: Any) -> Gateway:
    options.setdefault("plugins", cron_host())
    return make_gateway(tmp_path, tokens=CRON_TOKENS, **options)


def scheduler_of(gw: Gateway) -> CronScheduler:
    """A second scheduler over a listening gateway's host, ticked by the test's clock."""
    sched = CronScheduler()
    sched.host = gw.context
    return sched


def rows(gw: Gateway) -> dict[str, dict[str, Any]]:
    return {r["cronId"]: r for r in gw.context.store.read(crons.cron_rows)}


async def set_due(gw: Gateway, cron_id: str, due_ms: int) -> None:
    await gw.context.store.write(lambda tx: crons.make_due(tx, cron_id, due_ms))


class Needed(BaseModel):
    ticket: str


@workflow("needs_input", input=Needed)
def needs_input(ctx):  # type: ignore[no-untyped-def]
    """A workflow a cron cannot start: its input has a required field and cron sends {}."""
    return Seq(Task("noop", lambda t: None))


# -- patterns ----------------------------------------------------------------------------
def test_patterns_and_zones() -> None:
    assert check_pattern(" 0 8 * * 1-5 ") == "0 8 * * 1-5"
    start = _ms(datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")))
    assert next_fire_ms("*/2 * * * * *", start) == start + 2000  # seconds first, as cron-parser
    assert next_fire_ms("0 8 * * *", start, "Europe/Paris") == start + 7 * 3_600_000
    for bad, reason in [
        ("61 * * * *", "out of range"),
        ("* * *", "5 fields, or 6 with seconds first"),
        ("", "1-256 characters"),
        ("a b c d e", "Invalid cron pattern"),
    ]:
        with pytest.raises(SmithersError) as info:
            check_pattern(bad)
        assert info.value.code == "INVALID_INPUT" and reason in info.value.message
    with pytest.raises(SmithersError) as info:
        next_fire_ms("0 8 * * *", start, "Mars/Olympus")
    assert info.value.code == "INVALID_INPUT" and "Unknown time zone" in info.value.message


def test_daylight_saving_changes() -> None:
    """A fixed-hour pattern fires once on a fall-back day and at 03:00 on a spring-forward
    day; an hourly-wildcard pattern keeps firing through the repeated hour."""
    fall = _ms(datetime(2026, 11, 1, 0, 0, tzinfo=ZoneInfo(NY)))
    fires, t = [], fall
    for _ in range(3):
        t = next_fire_ms("30 1 * * *", t, NY)
        fires.append(_ny(t))
    assert fires == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]
    fires, t = [], fall
    for _ in range(4):
        t = next_fire_ms("*/20 1 * * *", t, NY)
        fires.append(_ny(t))
    assert fires[-1] == "2026-11-02T01:00:00-05:00"  # the repeated hour is not run again
    t = _ms(datetime(2026, 11, 1, 1, 40, tzinfo=ZoneInfo(NY)))
    assert _ny(next_fire_ms("*/20 * * * *", t, NY)) == "2026-11-01T01:00:00-05:00"
    spring = _ms(datetime(2026, 3, 8, 0, 0, tzinfo=ZoneInfo(NY)))
    t1 = next_fire_ms("30 2 * * *", spring, NY)
    assert _ny(t1) == "2026-03-08T03:00:00-04:00"
    assert _ny(next_fire_ms("30 2 * * *", t1, NY)) == "2026-03-09T02:30:00-04:00"
    assert poll_interval_ms(10) == 1000 and poll_interval_ms(60_000) == 15_000
    assert poll_interval_ms(5000) == 5000


# -- the scheduler -----------------------------------------------------------------------
async def test_schedule_fires_within_the_poll_interval(tmp_path: Path) -> None:
    """A per-second schedule with a 1 s poll: a subscribed socket sees ``cron.triggered`` and
    the run carries the system auth."""
    gw = cron_gateway(tmp_path, heartbeat_ms=1000)
    gw.register("ticker", wfs.deploy, schedule="* * * * * *")
    async with running(gw), ws_client(gw) as ws, http(gw, "op-token") as c:
        await ws.connect()
        event = await ws.event("cron.triggered", timeout=5, cronId="gateway:ticker")
        payload = event["payload"]
        assert payload["workflow"] == "ticker"
        run = (await rpc(c, "getRun", {"runId": payload["runId"]})).json()["payload"]
        config = json.loads(run["configJson"])
        assert config["auth"]["triggeredBy"] == "cron:gateway"
        assert config["auth"]["role"] == "system" and config["auth"]["scopes"] == ["*"]
        assert config["gatewayWorkflowKey"] == "ticker"
        row = rows(gw)["gateway:ticker"]
        assert row["lastRunAtMs"] is not None and row["errorJson"] is None


async def test_two_gateways_on_one_store_fire_once_per_window(tmp_path: Path) -> None:
    a = cron_gateway(tmp_path)
    b = cron_gateway(tmp_path)
    for gw in (a, b):
        gw.register("nightly", wfs.deploy, schedule="0 3 * * *")
    async with running(a), running(b):
        sa, sb = scheduler_of(a), scheduler_of(b)
        now = a.context.now_ms()
        for window in range(20):
            due = now + window * 1000
            await set_due(a, "gateway:nightly", due)
            started = await asyncio.gather(sa.tick(due), sb.tick(due))
            assert sum(started) == 1, (window, started)
        async with http(a, "op-token") as c:
            runs = (await rpc(c, "listRuns", {"limit": 100})).json()["payload"]
        assert len(runs) == 20


async def test_catch_up_after_downtime_fires_once(tmp_path: Path) -> None:
    gw = cron_gateway(tmp_path)
    gw.register("minutely", wfs.deploy, schedule="* * * * *")
    async with running(gw):
        sched = scheduler_of(gw)
        now = gw.context.now_ms()
        await set_due(gw, "gateway:minutely", now - 10 * 24 * 3_600_000)  # ten days missed
        assert await sched.tick(now) == 1
        row = rows(gw)["gateway:minutely"]
        assert now < row["nextRunAtMs"] <= now + 60_000 and row["lastRunAtMs"] == now
        assert await sched.tick(now + 1) == 0


async def test_a_restart_keeps_a_missed_window_due(tmp_path: Path) -> None:
    """listen() re-syncs an unchanged schedule without moving its next fire time."""
    gw = cron_gateway(tmp_path)
    gw.register("daily", wfs.deploy, schedule="0 6 * * *")
    async with running(gw):
        await set_due(gw, "gateway:daily", 1000)
    gw = cron_gateway(tmp_path)
    gw.register("daily", wfs.deploy, schedule="0 6 * * *")
    async with running(gw):  # the first tick runs at once
        await wait_for(lambda: rows(gw)["gateway:daily"]["lastRunAtMs"] is not None)
        assert rows(gw)["gateway:daily"]["nextRunAtMs"] > gw.context.now_ms()
        async with http(gw, "op-token") as c:
            runs = (await rpc(c, "listRuns")).json()["payload"]
        assert [r["workflowName"] for r in runs] == ["deploy"]


async def test_timezone_rows_follow_the_local_clock(tmp_path: Path) -> None:
    gw = cron_gateway(tmp_path)
    async with running(gw), http(gw, "op-token") as c:
        r = await rpc(
            c,
            "cronCreate",
            {"workflow": "deploy", "pattern": "30 1 * * *", "cronId": "ny", "timezone": NY},
        )
        assert r.status_code == 200 and r.json()["payload"]["timezone"] == NY
        sched = scheduler_of(gw)
        first = _ms(datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo(NY)))
        await set_due(gw, "ny", first)
        assert await sched.tick(first) == 1
        assert _ny(rows(gw)["ny"]["nextRunAtMs"]) == "2026-11-02T01:30:00-05:00"
        assert await sched.tick(first + 3_600_000) == 0  # 01:30 again, an hour later


async def test_registrations_sync_into_rows(tmp_path: Path) -> None:
    gw = cron_gateway(tmp_path)
    gw.register("early", wfs.deploy, schedule="0 5 * * *")
    async with running(gw):
        sched = scheduler_of(gw)
        assert rows(gw)["gateway:early"]["pattern"] == "0 5 * * *"
        gw.register("late", wfs.deploy, schedule="0 22 * * *")  # after listen()
        gw.register("early", wfs.deploy, schedule="15 5 * * *")  # a changed pattern
        await sched.tick(gw.context.now_ms())
        assert rows(gw)["gateway:late"]["pattern"] == "0 22 * * *"
        assert rows(gw)["gateway:early"]["pattern"] == "15 5 * * *"
        gw.register("early", wfs.deploy)  # no schedule any more
        await sched.tick(gw.context.now_ms())
        assert "gateway:early" not in rows(gw)
    gw = cron_gateway(tmp_path)  # 'late' is no longer registered
    async with running(gw):
        assert "gateway:late" not in rows(gw)


async def test_a_failed_start_is_recorded_and_retried(tmp_path: Path) -> None:
    gw = cron_gateway(tmp_path)
    gw.register("picky", needs_input, schedule="0 3 * * *")
    async with running(gw):
        sched = scheduler_of(gw)
        now = gw.context.now_ms() + 1000
        await set_due(gw, "gateway:picky", now)
        assert await sched.tick(now) == 0
        row = rows(gw)["gateway:picky"]
        assert row["nextRunAtMs"] == now + 60_000 and row["lastRunAtMs"] == now
        assert "ticket" in json.loads(row["errorJson"])["message"]
        assert await sched.tick(now + 59_000) == 0  # not before the retry


# -- RPCs --------------------------------------------------------------------------------
async def test_cron_rpcs_and_aliases(tmp_path: Path) -> None:
    gw = cron_gateway(tmp_path)
    async with running(gw), http(gw, "op-token") as c, ws_client(gw) as ws:
        await ws.connect()
        r = await rpc(c, "cronCreate", {"workflow": "deploy", "pattern": "0 8 * * 1-5"})
        assert r.status_code == 200
        row = r.json()["payload"]
        assert row["workflowPath"] == "gateway:deploy" and row["workflow"] == "deploy"
        assert row["enabled"] is True and row["lastRunAtMs"] is None
        assert row["nextRunAtMs"] > row["createdAtMs"] and row["errorJson"] is None
        r = await rpc(
            c,
            "cron.add",
            {"workflow": "gated", "pattern": "0 9 * * *", "cronId": "g", "enabled": False},
        )
        assert r.json()["payload"]["enabled"] is False
        listed = (await rpc(c, "cronList")).json()["payload"]
        assert [x["cronId"] for x in listed] == [row["cronId"], "g"]
        only = (await rpc(c, "cron.list", {"filter": {"workflow": "gated"}})).json()["payload"]
        assert [x["cronId"] for x in only] == ["g"]

        r = await rpc(c, "cronRun", {"cronId": "g", "input": {"sha": "def"}})
        assert r.status_code == 200
        fired = r.json()["payload"]
        assert fired["workflow"] == "gated" and fired["system"] is False
        event = await ws.event("cron.triggered", cronId="g")
        assert event["payload"]["runId"] == fired["runId"]
        run = (await rpc(c, "getRun", {"runId": fired["runId"]})).json()["payload"]
        assert json.loads(run["configJson"])["auth"]["triggeredBy"] == "user:will"
        assert rows(gw)["g"]["lastRunAtMs"] is not None
        r = await rpc(c, "cron.trigger", {"workflow": "deploy"})
        assert r.status_code == 200 and r.json()["payload"]["workflow"] == "deploy"

        r = await rpc(c, "cronDelete", {"cronId": "g"})
        assert r.json()["payload"] == {"cronId": "g", "removed": True}
        r = await rpc(c, "cron.remove", {"cronId": "g"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
        assert r.json()["error"]["message"] == "Cron not found: g"


@pytest.mark.parametrize(
    ("method", "params", "status", "code", "message"),
    [
        (
            "cronCreate",
            {"workflow": "deploy"},
            400,
            "INVALID_REQUEST",
            "workflow and pattern are required",
        ),
        (
            "cronCreate",
            {"workflow": "nope", "pattern": "* * * * *"},
            404,
            "NOT_FOUND",
            "Unknown workflow: nope",
        ),
        (
            "cronCreate",
            {"workflow": "deploy", "pattern": "99 * * * *"},
            400,
            "INVALID_INPUT",
            "out of range",
        ),
        (
            "cronCreate",
            {"workflow": "deploy", "pattern": "* * * * *", "timezone": "X/Y"},
            400,
            "INVALID_INPUT",
            "Unknown time zone",
        ),
        ("cronCreate", {"workflow": "deploy", "pattern": 5}, 400, "INVALID_REQUEST", "pattern"),
        (
            "cronCreate",
            {"workflow": "deploy", "pattern": "* * * * *", "extra": 1},
            400,
            "INVALID_REQUEST",
            "",
        ),
        ("cronDelete", {}, 400, "INVALID_REQUEST", "cronId is required"),
        ("cronRun", {}, 400, "INVALID_REQUEST", "cronId or workflow is required"),
        (
            "cronRun",
            {"cronId": "missing"},
            400,
            "INVALID_REQUEST",
            "cronId or workflow is required",
        ),
        ("cronRun", {"workflow": "nope"}, 404, "NOT_FOUND", "Unknown workflow: nope"),
        (
            "cronRun",
            {"workflow": "deploy", "input": [1]},
            400,
            "INVALID_INPUT",
            "input must be an object",
        ),
        ("cronList", {"filter": {"workflow": 3}}, 400, "INVALID_REQUEST", "workflow"),
        ("cronList", {"filter": "zz"}, 400, "INVALID_REQUEST", "filter must be an object"),
    ],
)
async def test_cron_rpc_errors(
    tmp_path: Path, method: str, params: dict[str, Any], status: int, code: str, message: str
) -> None:
    gw = cron_gateway(tmp_path)
    async with running(gw), http(gw, "op-token") as c:
        r = await rpc(c, method, params)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code and message in r.json()["error"]["message"]
        assert rows(gw) == {}


async def test_cron_scopes(tmp_path: Path) -> None:
    gw = cron_gateway(tmp_path)
    async with running(gw):
        async with http(gw, "reader") as c:
            assert (await rpc(c, "cronList")).status_code == 200
            r = await rpc(c, "cronCreate", {"workflow": "deploy", "pattern": "* * * * *"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
            assert (await rpc(c, "cron.trigger", {"workflow": "deploy"})).status_code == 403
        async with http(gw, "runs-only") as c:
            assert (await rpc(c, "cron.list")).status_code == 403
        async with http(gw, "legacy-exec") as c:  # execute implies cron:write
            r = await rpc(c, "cron.add", {"workflow": "deploy", "pattern": "* * * * *"})
            assert r.status_code == 200


# -- the CLI -----------------------------------------------------------------------------
def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SMITHERS, "cron", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


async def test_cli_against_a_store_and_a_gateway(tmp_path: Path) -> None:
    gw = cron_gateway(tmp_path)
    db = stores.abs_url(tmp_path, "gw.db")
    async with running(gw):
        url = gw.url or ""

        def store_side() -> None:
            r = _cli(
                "add",
                "deploy",
                "0 8 * * 1-5",
                "--id",
                "cli",
                "--timezone",
                NY,
                "--db",
                db,
                cwd=tmp_path,
            )
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["timezone"] == NY
            r = _cli("list", "--db", db, cwd=tmp_path)
            assert [x["cronId"] for x in json.loads(r.stdout)] == ["cli"]
            r = _cli("trigger", "cli", "--input", "{}", "--db", db, cwd=tmp_path)
            assert r.returncode == 2 and "--input needs --url" in r.stderr
            r = _cli("trigger", "cli", "--db", db, cwd=tmp_path)
            assert r.returncode == 0 and json.loads(r.stdout)["due"] is True
            r = _cli("add", "deploy", "nope", "--db", db, cwd=tmp_path)
            assert r.returncode == 2 and "INVALID_INPUT" in r.stderr
            r = _cli("remove", "gone", "--db", db, cwd=tmp_path)
            assert r.returncode == 1 and "Cron not found: gone" in r.stderr
            r = _cli("list", "--db", stores.abs_url(tmp_path, "none.db"), cwd=tmp_path)
            assert r.returncode == 2 and "STORE_NOT_FOUND" in r.stderr

        await anyio.to_thread.run_sync(store_side)
        # the due row fires once: here, or already in the gateway's own poll (the CLI calls
        # above can outlast its interval)
        started = await scheduler_of(gw).tick(gw.context.now_ms())
        async with http(gw, "op-token") as c:
            runs = (await rpc(c, "listRuns", {"limit": 10})).json()["payload"]
        assert started in (0, 1) and len(runs) == 1, (started, runs)

        def gateway_side() -> None:
            auth = ("--url", url, "--token", "op-token")
            r = _cli("add", "gated", "0 9 * * *", "--id", "rpc", *auth, cwd=tmp_path)
            assert r.returncode == 0 and json.loads(r.stdout)["workflow"] == "gated"
            r = _cli("trigger", "rpc", "--input", '{"sha": "x"}', *auth, cwd=tmp_path)
            assert r.returncode == 0 and json.loads(r.stdout)["workflow"] == "gated"
            r = _cli("list", "--workflow", "gated", *auth, cwd=tmp_path)
            assert [x["cronId"] for x in json.loads(r.stdout)] == ["rpc"]
            r = _cli("remove", "rpc", *auth, cwd=tmp_path)
            assert json.loads(r.stdout) == {"cronId": "rpc", "removed": True}
            r = _cli("list", "--url", url, "--token", "runs-only", cwd=tmp_path)
            assert r.returncode == 2 and "FORBIDDEN" in r.stderr

        await anyio.to_thread.run_sync(gateway_side)


async def test_cron_run_over_websocket_subscribes_the_caller(tmp_path: Path) -> None:
    """A filtered socket that triggers a run follows it (auto-subscribe, reference 4.5)."""
    gw = cron_gateway(tmp_path)
    async with running(gw), ws_client(gw) as ws:
        await ws.connect(subscribe=["some-other-run"])
        res = await ws.request("cron.trigger", {"workflow": "deploy"})
        assert res["ok"] is True, res
        run_id = res["payload"]["runId"]
        done = await ws.event("run.completed", timeout=10, runId=run_id)
        assert done["payload"]["status"] == "finished"


@pytest.mark.parametrize("pattern", ["0 25 * * *", "bad pattern", "0 0 8 * * 1-5 2027"])
async def test_an_invalid_registered_schedule_fails_listen(tmp_path: Path, pattern: str) -> None:
    gw = cron_gateway(tmp_path)
    gw.register("broken", wfs.deploy, schedule=pattern)
    with pytest.raises(SmithersError) as info:
        await gw.listen(port=0)
    assert info.value.code == "INVALID_INPUT"
    assert info.value.message.startswith("'schedule' on workflow 'broken': Invalid cron pattern")


async def test_fires_are_counted_in_metrics(tmp_path: Path) -> None:
    gw = cron_gateway(tmp_path)
    gw.register("nightly", wfs.deploy, schedule="0 3 * * *")
    async with running(gw), http(gw, "op-token") as c:
        now = gw.context.now_ms()
        await set_due(gw, "gateway:nightly", now)
        assert await scheduler_of(gw).tick(now) == 1
        assert (await rpc(c, "cronRun", {"cronId": "gateway:nightly"})).status_code == 200
        text = (await c.get("/metrics")).text
        assert "smithers_gateway_cron_triggers_total 2.0" in text
