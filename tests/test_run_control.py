"""The run-control methods of issue 19 (reference 5.1) over a real gateway: ``pauseRun``,
``retryTask``, ``listRunDescendants``, ``listRunTokenUsage`` and ``getSchemaSignature``."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from smithers_core import jsonutil
from smithers_core.gateway import Gateway
from smithers_core.gateway.methods.control import schema_signature
from smithers_core.store import runs
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Par, Seq, Task
from tests.engine_helpers import engine_options, wait_for
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import (
    OP_TOKEN,
    TOKENS,
    http,
    make_gateway,
    plugin_host,
    rpc,
    running,
    ws_client,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

READER = "reader-token"
SCOPED = {**TOKENS, READER: {"role": "viewer", "scopes": ["run:read"]}}


class N(BaseModel):
    n: int


RUNS: Counter[str] = Counter()
STARTED: dict[str, anyio.Event] = {}
RELEASE: dict[str, anyio.Event] = {}


async def _hold(name: str) -> None:
    """Tell the test the task started, then wait until it releases it (if it set a gate)."""
    started = STARTED.get(name)
    if started is not None:
        started.set()
    gate = RELEASE.get(name)
    if gate is not None:
        await gate.wait()


async def _first(t):  # type: ignore[no-untyped-def]
    RUNS["first"] += 1
    await _hold("first")
    return N(n=1)


async def _second(t, x):  # type: ignore[no-untyped-def]
    RUNS["second"] += 1
    return N(n=x.n + 1)


@workflow("pausable")
def pausable(ctx):  # type: ignore[no-untyped-def]
    return Seq(
        Task("first", _first, output=N),
        Task("second", _second, output=N, needs={"x": "first"}),
    )


async def _a(t):  # type: ignore[no-untyped-def]
    RUNS["a"] += 1
    await _hold("a")
    return N(n=RUNS["a"])


def _side(t):  # type: ignore[no-untyped-def]
    RUNS["side"] += 1
    return N(n=0)


def _b(t, x):  # type: ignore[no-untyped-def]
    RUNS["b"] += 1
    return N(n=x.n * 10 + RUNS["b"])


def _c(t, y):  # type: ignore[no-untyped-def]
    RUNS["c"] += 1
    return N(n=y.n + 1)


@workflow("chain")
def chain(ctx):  # type: ignore[no-untyped-def]
    return Seq(
        Par(Task("a", _a, output=N), Task("side", _side, output=N)),
        Task("b", _b, output=N, needs={"x": "a"}),
        Task("c", _c, output=N, needs={"y": "b"}),
    )


def _metered(t):  # type: ignore[no-untyped-def]
    t.report_usage(model="gpt-x", input_tokens=10, output_tokens=5)
    t.report_usage(model="gpt-x", agent="coder", cache_read_tokens=3, reasoning_tokens=7)
    return N(n=1)


@workflow("metered")
def metered(ctx):  # type: ignore[no-untyped-def]
    return Seq(Task("llm", _metered, output=N))


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()
    STARTED.clear()
    RELEASE.clear()


def _gateway(tmp_path: Path) -> Gateway:
    gw = make_gateway(tmp_path, tokens=SCOPED)
    gw.register("pausable", pausable)
    gw.register("chain", chain)
    gw.register("metered", metered)
    return gw


def _error(r: Any) -> tuple[int, str, str]:
    body = r.json()["error"]
    return r.status_code, body["code"], body["message"]


async def _launch(c: Any, key: str, **params: Any) -> str:
    r = await rpc(c, "launchRun", {"workflow": key, **params})
    assert r.status_code == 200, r.text
    run_id: str = r.json()["payload"]["runId"]
    return run_id


async def _run(c: Any, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = (await rpc(c, "getRun", {"runId": run_id})).json()["payload"]
    return run


async def _until(c: Any, run_id: str, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        run = await _run(c, run_id)
        return run if run["status"] in statuses else None

    result: dict[str, Any] = await wait_for(check, 10, f"run {run_id} -> {statuses}")
    return result


def _events(gw: Gateway, run_id: str) -> list[dict[str, Any]]:
    rows = gw.runtime.db.list_events(run_id, limit=10_000)
    return [jsonutil.loads(r["payloadJson"]) for r in rows]


def _output(gw: Gateway, run_id: str, node_id: str) -> Any:
    return gw.runtime.db.get_output(run_id, node_id)


# -- pauseRun ---------------------------------------------------------------------------------


async def test_pause_drains_inflight_task_then_resume_finishes(tmp_path: Path) -> None:
    STARTED["first"], RELEASE["first"] = anyio.Event(), anyio.Event()
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "pausable")
        with anyio.fail_after(5):
            await STARTED["first"].wait()
        r = await rpc(c, "pauseRun", {"runId": run_id})
        assert r.status_code == 200, r.text
        assert r.json()["payload"] == {"runId": run_id, "status": "pausing"}
        row = gw.runtime.db.run_row(run_id)
        assert row is not None and row["pause_requested_at_ms"] is not None
        # draining: the in-flight task keeps running, the run stays running
        assert (await _run(c, run_id))["status"] == "running"
        RELEASE["first"].set()
        await _until(c, run_id, "paused")
        assert RUNS == {"first": 1}  # drained, and nothing new started
        assert _output(gw, run_id, "first") == {"n": 1}
        types = [(e["type"], e.get("nodeId"), e.get("status")) for e in _events(gw, run_id)]
        assert ("NodeFinished", "first", None) in types
        assert not [t for t in types if t[0] == "NodeCancelled"]
        assert ("RunStatusChanged", None, "paused") in types
        assert ("NodeStarted", "second", None) not in types
        row = gw.runtime.db.run_row(run_id)
        assert row is not None
        assert row["pause_requested_at_ms"] is None and row["runtime_owner_id"] is None

        r = await rpc(c, "resumeRun", {"runId": run_id})
        assert r.json()["payload"] == {"runId": run_id, "status": "resume_requested"}
        await _until(c, run_id, "finished")
        assert RUNS == {"first": 1, "second": 1}
        assert _output(gw, run_id, "second") == {"n": 2}


async def test_pause_request_written_by_another_process_is_honoured(tmp_path: Path) -> None:
    """The request is durable: written straight to the store (as another process's engine
    would), the owning engine sees it at its next cycle and parks the run."""
    STARTED["first"], RELEASE["first"] = anyio.Event(), anyio.Event()
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "pausable")
        with anyio.fail_after(5):
            await STARTED["first"].wait()
        await gw.runtime.store.write(lambda tx: runs.request_pause(tx, run_id))
        RELEASE["first"].set()
        await _until(c, run_id, "paused")
        assert RUNS == {"first": 1}
        await rpc(c, "resumeRun", {"runId": run_id})
        await _until(c, run_id, "finished")
        assert _output(gw, run_id, "second") == {"n": 2}


def _fails_once(t):  # type: ignore[no-untyped-def]
    RUNS["once"] += 1
    if RUNS["once"] == 1:
        raise RuntimeError("first attempt fails")
    return N(n=RUNS["once"])


@workflow("backoff")
def backoff_wf(ctx):  # type: ignore[no-untyped-def]
    return Seq(Task("f", _fails_once, output=N, retries=1, backoff="fixed", backoff_ms=30_000))


async def test_pause_reaches_a_driver_waiting_on_a_backoff_through_the_poll(
    tmp_path: Path,
) -> None:
    """Nothing is in flight and nothing pokes the driver (as when another process writes
    the request): the owner's inbox poll notices the request long before the backoff ends."""
    gw = _gateway(tmp_path)
    gw.register("backoff", backoff_wf)
    async with running(gw), http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "backoff")
        await wait_for(
            lambda: any(e["type"] == "NodeRetrying" for e in _events(gw, run_id)), 5, "retrying"
        )
        await gw.runtime.store.write(lambda tx: runs.request_pause(tx, run_id))
        await _until(c, run_id, "paused")  # within 10 s, the backoff is 30 s
        assert RUNS == {"once": 1}
        r = await rpc(c, "cancelRun", {"runId": run_id})
        assert r.json()["payload"]["status"] == "cancelled"


async def test_pause_errors_alias_and_scope(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        r = await rpc(c, "pauseRun", {})
        assert _error(r)[:2] == (400, "INVALID_REQUEST")
        r = await rpc(c, "pauseRun", {"runId": "nope"})
        assert _error(r) == (404, "RunNotFound", "Run not found: nope")
        done = await _launch(c, "deploy")
        await _until(c, done, "finished")
        r = await rpc(c, "runs.pause", {"runId": done})
        assert _error(r) == (409, "RUN_NOT_ACTIVE", "Run is not currently executing")
        gated = await _launch(c, "gated")
        await _until(c, gated, "waiting-approval")
        r = await rpc(c, "pauseRun", {"runId": gated})
        assert _error(r)[:2] == (409, "RUN_NOT_ACTIVE")
        async with http(gw, READER) as reader:
            r = await rpc(reader, "pauseRun", {"runId": gated})
            assert r.status_code == 403
        # over WebSocket too, with the alias
        async with ws_client(gw) as ws:
            await ws.connect()
            res = await ws.request("runs.pause", {"runId": done})
            assert res["ok"] is False and res["error"]["code"] == "RUN_NOT_ACTIVE"


async def test_cancel_a_paused_run(tmp_path: Path) -> None:
    STARTED["first"], RELEASE["first"] = anyio.Event(), anyio.Event()
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "pausable")
        with anyio.fail_after(5):
            await STARTED["first"].wait()
        await rpc(c, "pauseRun", {"runId": run_id})
        RELEASE["first"].set()
        await _until(c, run_id, "paused")
        r = await rpc(c, "cancelRun", {"runId": run_id})
        assert r.status_code == 200, r.text
        await _until(c, run_id, "cancelled")


# -- retryTask --------------------------------------------------------------------------------


async def test_retry_with_and_without_dependents(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "chain")
        await _until(c, run_id, "finished")
        assert RUNS == {"a": 1, "side": 1, "b": 1, "c": 1}
        assert _output(gw, run_id, "b") == {"n": 11}
        assert _output(gw, run_id, "c") == {"n": 12}

        # b and everything that started after it ended (c); a and side keep their outputs
        r = await rpc(c, "retryTask", {"runId": run_id, "nodeId": "b"})
        assert r.status_code == 200, r.text
        assert r.json()["payload"] == {
            "runId": run_id,
            "nodeId": "b",
            "iteration": 0,
            "resetNodes": [{"nodeId": "b", "iteration": 0}, {"nodeId": "c", "iteration": 0}],
            "status": "retry_requested",
        }
        await _until(c, run_id, "finished")
        assert RUNS == {"a": 1, "side": 1, "b": 2, "c": 2}
        assert _output(gw, run_id, "b") == {"n": 12}
        assert _output(gw, run_id, "c") == {"n": 13}

        # a: its dependents b and c again, not its parallel sibling (started with it)
        r = await rpc(c, "retryTask", {"runId": run_id, "nodeId": "a", "iteration": 0})
        reset = [n["nodeId"] for n in r.json()["payload"]["resetNodes"]]
        assert reset == ["a", "b", "c"]
        await _until(c, run_id, "finished")
        assert RUNS == {"a": 2, "side": 1, "b": 3, "c": 3}
        assert _output(gw, run_id, "a") == {"n": 2}
        assert _output(gw, run_id, "b") == {"n": 23}
        assert _output(gw, run_id, "c") == {"n": 24}

        # without dependents: only the node itself
        r = await rpc(c, "retryTask", {"runId": run_id, "nodeId": "b", "resetDependents": False})
        assert [n["nodeId"] for n in r.json()["payload"]["resetNodes"]] == ["b"]
        await _until(c, run_id, "finished")
        assert RUNS == {"a": 2, "side": 1, "b": 4, "c": 3}
        assert _output(gw, run_id, "b") == {"n": 24}
        assert _output(gw, run_id, "c") == {"n": 24}  # not re-run, as asked

        pending = [e for e in _events(gw, run_id) if e["type"] == "RetryTaskStarted"]
        assert [e["nodeId"] for e in pending] == ["b", "a", "b"]


async def test_retry_over_websocket_subscribes_and_finishes(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "chain")
        await _until(c, run_id, "finished")
        async with ws_client(gw) as ws:
            await ws.connect()
            res = await ws.request("retryTask", {"runId": run_id, "nodeId": "c"})
            assert res["ok"] is True, res
            assert res["payload"]["status"] == "retry_requested"
            await ws.event("run.completed", timeout=10, runId=run_id, status="finished")
        assert RUNS["c"] == 2 and RUNS["b"] == 1


async def test_retry_errors_and_run_active(tmp_path: Path) -> None:
    STARTED["a"], RELEASE["a"] = anyio.Event(), anyio.Event()
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        r = await rpc(c, "retryTask", {"runId": "nope", "nodeId": "a"})
        assert _error(r)[:2] == (404, "NOT_FOUND")
        r = await rpc(c, "retryTask", {"runId": "nope"})
        assert _error(r) == (400, "INVALID_REQUEST", "nodeId is required")
        r = await rpc(c, "retryTask", {"runId": "nope", "nodeId": "a", "iteration": -1})
        assert _error(r)[:2] == (400, "INVALID_REQUEST")
        r = await rpc(c, "retryTask", {"runId": "nope", "nodeId": "a", "resetDependents": 1})
        assert _error(r)[:2] == (400, "INVALID_REQUEST")

        run_id = await _launch(c, "chain")
        with anyio.fail_after(5):
            await STARTED["a"].wait()
        before = anyio.current_time()
        r = await rpc(c, "retryTask", {"runId": run_id, "nodeId": "a"})
        assert _error(r)[:2] == (409, "RUN_ACTIVE")
        assert anyio.current_time() - before >= 0.9  # it waited for the run to settle
        RELEASE["a"].set()
        await _until(c, run_id, "finished")
        r = await rpc(c, "retryTask", {"runId": run_id, "nodeId": "ghost"})
        assert _error(r)[:2] == (404, "NOT_FOUND")
        r = await rpc(c, "retryTask", {"runId": run_id, "nodeId": "a", "iteration": 3})
        assert _error(r)[:2] == (404, "NOT_FOUND")
        assert (await _run(c, run_id))["status"] == "finished"  # nothing changed
        async with http(gw, READER) as reader:
            r = await rpc(reader, "retryTask", {"runId": run_id, "nodeId": "a"})
            assert r.status_code == 403


async def test_retry_a_failed_run(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()

    def flaky(t):  # type: ignore[no-untyped-def]
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise RuntimeError("first time fails")
        return N(n=calls["flaky"])

    @workflow("flaky")
    def flaky_wf(ctx):  # type: ignore[no-untyped-def]
        return Seq(Task("f", flaky, output=N, backoff_ms=1))

    gw = _gateway(tmp_path)
    gw.register("flaky", flaky_wf)
    async with running(gw), http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "flaky")
        await _until(c, run_id, "failed")
        r = await rpc(c, "retryTask", {"runId": run_id, "nodeId": "f"})
        assert r.status_code == 200, r.text
        run = await _until(c, run_id, "finished")
        assert run["errorJson"] is None
        assert _output(gw, run_id, "f") == {"n": 2}


# -- listRunDescendants -----------------------------------------------------------------------


async def test_list_run_descendants(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        root = await _launch(c, "deploy")
        engine = gw.runtime.engine
        child = await engine.launch(wfs.deploy, {}, parent_run_id=root)
        grandchild = await engine.launch(wfs.deploy, {}, parent_run_id=child)
        other = await engine.launch(wfs.deploy, {})
        for run_id in (root, child, grandchild, other):
            await _until(c, run_id, "finished")

        r = await rpc(c, "listRunDescendants", {"runId": root})
        assert r.status_code == 200, r.text
        rows = r.json()["payload"]
        assert {row["runId"] for row in rows} == {child, grandchild}
        listed = (await rpc(c, "listRuns", {"filter": {"includeSystem": True}})).json()
        assert set(rows[0]) == set(listed["payload"][0])  # the listRuns row shape
        assert {row["parentRunId"] for row in rows} == {root, child}

        r = await rpc(c, "runs.descendants", {"runId": child})
        assert [row["runId"] for row in r.json()["payload"]] == [grandchild]
        r = await rpc(c, "listRunDescendants", {"runId": root, "limit": 1})
        assert len(r.json()["payload"]) == 1
        r = await rpc(c, "listRunDescendants", {"runId": grandchild})
        assert r.json()["payload"] == []
        r = await rpc(c, "listRunDescendants", {"runId": "nope"})
        assert _error(r) == (404, "NOT_FOUND", "Run not found: nope")
        r = await rpc(c, "listRunDescendants", {})
        assert _error(r)[:2] == (400, "INVALID_REQUEST")
        async with http(gw, READER) as reader:
            r = await rpc(reader, "listRunDescendants", {"runId": root})
            assert r.status_code == 200


# -- listRunTokenUsage ------------------------------------------------------------------------


async def test_token_usage_reported_listed_and_streamed(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        async with ws_client(gw) as ws:
            await ws.connect()
            res = await ws.request("launchRun", {"workflow": "metered"})
            run_id = res["payload"]["runId"]
            frame = await ws.event("token.usage", runId=run_id)
            assert frame["payload"]["model"] == "gpt-x"
            assert frame["payload"]["inputTokens"] == 10
        await _until(c, run_id, "finished")
        # an event with missing fields (an older writer): defaults
        await gw.runtime.store.write(lambda tx: tx.emit(run_id, "TokenUsageReported"))

        r = await rpc(c, "listRunTokenUsage", {"runId": run_id})
        assert r.status_code == 200, r.text
        body = r.json()["payload"]
        assert body["runId"] == run_id
        events = body["events"]
        assert len(events) == 3
        for ev in events:
            assert ev["timestampMs"] > 0
            del ev["timestampMs"]
        assert events == [
            {
                "nodeId": "llm",
                "iteration": 0,
                "attempt": 1,
                "model": "gpt-x",
                "agent": "unknown",
                "inputTokens": 10,
                "outputTokens": 5,
                "cacheReadTokens": 0,
                "cacheWriteTokens": 0,
                "reasoningTokens": 0,
            },
            {
                "nodeId": "llm",
                "iteration": 0,
                "attempt": 1,
                "model": "gpt-x",
                "agent": "coder",
                "inputTokens": 0,
                "outputTokens": 0,
                "cacheReadTokens": 3,
                "cacheWriteTokens": 0,
                "reasoningTokens": 7,
            },
            {
                "nodeId": "unknown",
                "iteration": 0,
                "attempt": 0,
                "model": "unknown",
                "agent": "unknown",
                "inputTokens": 0,
                "outputTokens": 0,
                "cacheReadTokens": 0,
                "cacheWriteTokens": 0,
                "reasoningTokens": 0,
            },
        ]
        r = await rpc(c, "listRunTokenUsage", {"runId": "nope"})
        assert _error(r)[:2] == (404, "RunNotFound")
        r = await rpc(c, "listRunTokenUsage", {})
        assert _error(r)[:2] == (400, "INVALID_REQUEST")


async def test_report_usage_refuses_bad_counts(tmp_path: Path) -> None:
    def bad(t):  # type: ignore[no-untyped-def]
        t.report_usage(input_tokens=-1)
        return N(n=1)

    @workflow("bad_usage")
    def bad_wf(ctx):  # type: ignore[no-untyped-def]
        return Seq(Task("x", bad, output=N))

    gw = _gateway(tmp_path)
    gw.register("bad_usage", bad_wf)
    async with running(gw), http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "bad_usage")
        run = await _until(c, run_id, "failed")
        assert "inputTokens" in run["errorJson"]


# -- getSchemaSignature -----------------------------------------------------------------------


async def test_schema_signature_is_stable(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with running(_gateway(tmp_path / "a")) as gw, http(gw, OP_TOKEN) as c:
        first = (await rpc(c, "getSchemaSignature")).json()["payload"]
        again = (await rpc(c, "getSchemaSignature", {})).json()["payload"]
    async with running(_gateway(tmp_path / "b")) as gw2, http(gw2, READER) as c2:
        other = (await rpc(c2, "getSchemaSignature")).json()["payload"]
    assert first == again == other
    assert first["schemaVersion"] == "0001"
    assert set(first["components"]) == {
        "deploy",
        "gated",
        "restricted",
        "slow",
        "pausable",
        "chain",
        "metered",
    }
    deploy = first["components"]["deploy"]
    assert deploy["input"] == wfs.DeployInput.model_json_schema()
    assert deploy["outputs"] == {"ship": wfs.Shipped.model_json_schema()}
    canonical = jsonutil.canonical(first["components"]).encode()
    assert first["signature"] == hashlib.sha256(canonical).hexdigest()


def test_schema_signature_changes_with_the_models() -> None:
    empty = schema_signature({})
    assert empty == {
        "schemaVersion": "0000",
        "signature": hashlib.sha256(b"empty").hexdigest(),
        "components": {},
    }
    one = schema_signature({"deploy": wfs.deploy})
    two = schema_signature({"deploy": wfs.deploy, "chain": chain})
    assert one["signature"] != two["signature"] != empty["signature"]
    assert schema_signature({"chain": chain, "deploy": wfs.deploy}) == two


async def test_schema_signature_without_workflows(tmp_path: Path) -> None:
    gw = Gateway(plugins=plugin_host(), base_dir=tmp_path, engine_options=engine_options())
    async with running(gw), http(gw) as c:
        r = await rpc(c, "getSchemaSignature")
        assert r.status_code == 200, r.text
        assert r.json()["payload"] == {
            "schemaVersion": "0000",
            "signature": hashlib.sha256(b"empty").hexdigest(),
            "components": {},
        }
