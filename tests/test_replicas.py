"""Two ``smithers gateway`` processes on one store (issue 20): the runs, streams, approvals,
cron windows and webhook deliveries of several replicas behind one address.

Runs on both stores (``conftest.BOTH_STORES``): on PostgreSQL as deployed (docs/deploy.md), on
SQLite as two processes sharing one file. Each replica has its own ``SMITHERS_REPLICA_ID``, so a
dead owner is found by its stale lease, never by a PID check.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import shutil
import signal
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets

from tests import stores
from tests.conftest import REPO_ROOT
from tests.gateway_helpers import WsClient
from tests.processes import SMITHERS, Child, spawn

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

STALE_MS = 2000
HEARTBEAT_MS = 200
SECRET = "replica-test-secret"

CONFIG = """
[gateway]
host = "127.0.0.1"
heartbeat_ms = 1000

[plugins]
enable = ["smithers_auth_token", "smithers_cron", "smithers_webhooks"]

[auth]
mode = "token"
tokens_file = "tokens.toml"

[[workflows]]
key = "gated"
path = "wf.py:gated"

[[workflows]]
key = "crashy"
path = "wf.py:crashy"

[[workflows]]
key = "chatty"
path = "wf.py:chatty"

[[workflows]]
key = "signalled"
path = "wf.py:signalled"

[[workflows]]
key = "hook"
path = "wf.py:hook"
webhook = { secret_env = "REPLICA_WEBHOOK_SECRET", scheme = "github" }
"""

TICKER = """
[[workflows]]
key = "ticker"
path = "wf.py:ticker"
schedule = "*/2 * * * * *"
"""


class Replica:
    """One gateway process: its child, base URL and WebSocket URL."""

    def __init__(self, child: Child, url: str) -> None:
        self.child = child
        self.url = url
        self.ws_url = url.replace("http://", "ws://") + "/"


def _env(name: str, db_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}
    if db_url is not None:
        env["SMITHERS_DB"] = db_url
    env.update(
        SMITHERS_REPLICA_ID=f"replica-{name}",
        SMITHERS_STALE_AFTER_MS=str(STALE_MS),
        SMITHERS_HEARTBEAT_INTERVAL_MS=str(HEARTBEAT_MS),
        SMITHERS_SWEEP_MS="200",
        SMITHERS_TIMER_TICK_MS="50",
        REPLICA_WEBHOOK_SECRET=SECRET,
    )
    return env


@contextmanager
def two_replicas(tmp_path: Path, *, cron: bool = False) -> Iterator[tuple[Replica, Replica, str]]:
    """Replicas A and B on the test's store (A given it with ``--db``, B with
    ``$SMITHERS_DB``); yields them and the operator token."""
    shutil.copy(REPO_ROOT / "tests" / "fixtures" / "replicas" / "wf.py", tmp_path / "wf.py")
    (tmp_path / "smithers.toml").write_text(CONFIG + (TICKER if cron else ""))
    db_url = stores.abs_url(tmp_path, "replicas.db")
    args = [*SMITHERS, "gateway", "--config", tmp_path / "smithers.toml", "--port", "0"]
    with spawn([*args, "--db", db_url], cwd=tmp_path, env=_env("a", None)) as a:
        token = a.wait_for(r"\n    (\S+)\n", timeout=30).group(1)
        url_a = a.wait_for(r"listening on (http://\S+)").group(1)
        with spawn(args, cwd=tmp_path, env=_env("b", db_url)) as b:
            url_b = b.wait_for(r"listening on (http://\S+)", timeout=30).group(1)
            yield Replica(a, url_a), Replica(b, url_b), token


def client(replica: Replica, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=replica.url, headers={"authorization": f"Bearer {token}"}, timeout=10
    )


async def call(c: httpx.AsyncClient, method: str, params: Any = None) -> Any:
    r = await c.post(f"/v1/rpc/{method}", json=params or {})
    assert r.status_code == 200, r.text
    return r.json()["payload"]


async def wait_status(c: httpx.AsyncClient, run_id: str, *statuses: str, timeout: float = 20):
    with anyio.fail_after(timeout):
        while True:
            run = await call(c, "getRun", {"runId": run_id})
            if run["status"] in statuses:
                return run
            await anyio.sleep(0.05)


@asynccontextmanager
async def stream(
    replica: Replica, token: str, run_id: str, after: int = 0
) -> AsyncIterator[tuple[WsClient, dict[str, Any]]]:
    """A WebSocket on ``replica`` streaming ``run_id``'s events after stream seq ``after``
    (0: from the run's first event)."""
    async with websockets.connect(replica.ws_url, open_timeout=5) as ws:
        c = WsClient(ws)
        await c.recv()  # connect.challenge
        await c.connect(token)
        res = await c.request("streamRunEvents", {"runId": run_id, "afterSeq": after})
        assert res["ok"] is True, res
        yield c, res["payload"]


async def events_until(
    c: WsClient, done: Any, timeout: float = 30
) -> list[tuple[int, str, Any, float]]:
    """``(seq, event, payload, received at ms)`` of ``run.event`` frames until ``done(event)``."""
    out: list[tuple[int, str, Any, float]] = []
    with anyio.fail_after(timeout):
        while True:
            frame = await c.recv(timeout)
            name = frame.get("event")
            assert name not in ("run.error", "run.gap_resync"), frame
            if name != "run.event":
                continue
            p = frame["payload"]
            out.append((p["seq"], p["event"], p["payload"], time.time() * 1000))
            if done(out[-1]):
                return out


def persisted(tmp_path: Path, run_id: str) -> list[dict[str, Any]]:
    rows = stores.rows(
        tmp_path / "replicas.db",
        "SELECT seq, payload_json FROM _smithers_events WHERE run_id = ? ORDER BY seq",
        run_id,
    )
    assert [r[0] for r in rows] == list(range(len(rows))), "seqs contiguous from 0"
    return [json.loads(r[1]) for r in rows]


def marks(tmp_path: Path) -> list[str]:
    path = tmp_path / "marks.log"
    return path.read_text().split() if path.exists() else []


def finished(item: tuple[int, str, Any, float]) -> bool:
    return item[1] == "run.completed"


async def test_launch_on_a_stream_and_approve_on_b_finishes_once(tmp_path: Path) -> None:
    with two_replicas(tmp_path) as (a, b, token):
        async with client(a, token) as ca, client(b, token) as cb:
            run_id = (await call(ca, "launchRun", {"workflow": "gated"}))["runId"]
            # B streams the run A executes, up to its approval request
            async with stream(b, token, run_id) as (ws, first):
                seen = await events_until(ws, lambda e: e[1] == "approval.requested")
            # B sees A's epoch: a cursor from one replica resumes on the other
            async with stream(a, token, run_id) as (_, on_a):
                assert on_a["epoch"] == first["epoch"]
            pending = await call(cb, "listApprovals")
            assert [(p["runId"], p["nodeId"]) for p in pending] == [(run_id, "approve")]
            # resume on B after the last seq seen, then approve on B
            async with stream(b, token, run_id, after=seen[-1][0]) as (ws, _):
                ok = await call(
                    cb, "submitApproval", {"runId": run_id, "nodeId": "approve", "approved": True}
                )
                assert ok is not None
                rest = await events_until(ws, finished)
            assert rest[-1][2]["status"] == "finished"
            seqs = [e[0] for e in seen + rest]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap, no duplicate"
            # a later decision, on A, changes nothing
            r = await ca.post(
                "/v1/rpc/submitApproval",
                json={"runId": run_id, "nodeId": "approve", "approved": False},
            )
            assert r.json()["ok"] is False
            run = await wait_status(ca, run_id, "finished")
            assert run["status"] == "finished"
    events = persisted(tmp_path, run_id)
    assert [e["type"] for e in events].count("RunFinished") == 1
    assert [e["type"] for e in events].count("ApprovalGranted") == 1
    assert marks(tmp_path) == ["build", "ship"]


async def test_kill_9_of_the_owner_b_takes_the_run_over_after_the_lease(tmp_path: Path) -> None:
    with two_replicas(tmp_path) as (a, b, token):
        async with client(a, token) as ca, client(b, token) as cb:
            run_id = (await call(ca, "launchRun", {"workflow": "crashy"}))["runId"]
            async with stream(b, token, run_id) as (ws, _):
                with anyio.fail_after(20):
                    while not (tmp_path / "b-started").exists():
                        a.child.check_running()
                        await anyio.sleep(0.02)
                before = (await call(cb, "getRun", {"runId": run_id}))["runtimeOwnerId"]
                assert before.endswith("@replica-a")
                a.child.proc.send_signal(signal.SIGKILL)
                a.child.proc.wait(10)
                killed = time.monotonic()
                killed_ms = time.time() * 1000
                got = await events_until(ws, finished, timeout=30)
            run = await call(cb, "getRun", {"runId": run_id})
            assert run["status"] == "finished"
            assert run["runtimeOwnerId"] is None or run["runtimeOwnerId"].endswith("@replica-b")
    # the client streaming from B saw every event once, in order, across the takeover
    seqs = [e[0] for e in got]
    assert seqs == list(range(1, len(seqs) + 1))  # stream seq = stored seq + 1
    assert got[-1][2]["status"] == "finished"
    events = persisted(tmp_path, run_id)
    assert seqs[-1] == len(events)
    kinds = [(e["type"], e.get("nodeId"), e.get("attempt")) for e in events]
    assert ("NodeCancelled", "b", 1) in kinds and ("NodeStarted", "b", 2) in kinds
    assert [k for k in kinds if k[0] == "NodeFinished"] == [
        ("NodeFinished", "a", 1),
        ("NodeFinished", "b", 2),
        ("NodeFinished", "c", 1),
    ]
    assert [k[0] for k in kinds].count("RunFinished") == 1
    assert marks(tmp_path) == ["a", "b1", "b2", "c"]  # a never ran again
    # B waited for A's lease to go stale (no PID check across replica ids)
    takeover = [e for e in events if e["type"] == "RunStarted"][1]
    assert takeover["timestampMs"] - killed_ms >= STALE_MS - HEARTBEAT_MS - 100
    assert time.monotonic() - killed < 30


async def test_a_cron_schedule_fires_once_per_window_with_two_replicas(tmp_path: Path) -> None:
    with two_replicas(tmp_path, cron=True) as (a, b, token):
        async with client(b, token) as cb:
            with anyio.fail_after(40):
                while len(await call(cb, "listRuns", {"limit": 100})) < 4:
                    a.child.check_running()
                    b.child.check_running()
                    await anyio.sleep(0.2)
            runs = await call(cb, "listRuns", {"limit": 100})
    created = sorted(r["createdAtMs"] for r in runs if r["workflowName"] == "ticker")
    assert len(created) >= 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(created)]
    # one run per 2 s window: a second replica firing the same window would start a run
    # milliseconds after the first
    assert min(gaps) > 1000, gaps


def _signed(body: bytes, delivery: str) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": delivery,
        "x-hub-signature-256": f"sha256={digest}",
    }


async def both(
    c: httpx.AsyncClient, urls: list[str], body: bytes, headers: dict[str, str]
) -> list[httpx.Response]:
    """The same delivery posted to every URL at once."""
    answers: list[httpx.Response] = []

    async def post(url: str) -> None:
        answers.append(await c.post(f"{url}/webhooks/hook", content=body, headers=headers))

    async with anyio.create_task_group() as tg:
        for url in urls:
            tg.start_soon(post, url)
    return answers


async def test_the_same_webhook_delivery_to_a_and_b_is_applied_once(tmp_path: Path) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode()
    with two_replicas(tmp_path) as (a, b, token):
        async with httpx.AsyncClient(timeout=10) as c, client(a, token) as ca:
            for delivery in ("d-1", "d-2", "d-3"):
                answers = await both(c, [a.url, b.url], body, _signed(body, delivery))
                assert [r.status_code for r in answers] == [200, 200]
                flags = sorted(r.json()["duplicate"] for r in answers)
                assert flags == [False, True], [r.json() for r in answers]
            runs = await call(ca, "listRuns", {"limit": 100})
            assert len([r for r in runs if r["workflowName"] == "hook"]) == 3
            for r in runs:
                await wait_status(ca, r["runId"], "finished")
    assert marks(tmp_path) == ["hook"] * 3


@pytest.mark.postgres_only
async def test_events_of_a_run_on_a_reach_a_client_on_b_within_50_ms(tmp_path: Path) -> None:
    """LISTEN/NOTIFY wakes B's stream when A commits (B's poll fallback is every 250 ms)."""
    with two_replicas(tmp_path) as (a, b, token):
        async with client(a, token) as ca:
            run_id = (await call(ca, "launchRun", {"workflow": "chatty"}))["runId"]
            async with stream(b, token, run_id) as (ws, _):
                ticks: list[tuple[int, str, Any, float]] = []
                while len(ticks) < 20:
                    ticks += [
                        e
                        for e in await events_until(ws, lambda e: e[1] == "task.output")
                        if e[1] == "task.output"
                    ]
                (tmp_path / "release").write_text("1")
                await events_until(ws, finished)
    # each line is the task's wall clock when it logged it (A commits it within milliseconds)
    delays = [received - float(payload["output"]) for _, _, payload, received in ticks]
    assert statistics.median(delays) < 50, delays


async def decide_at_once(
    run_id: str, deciders: dict[str, tuple[httpx.AsyncClient, bool]]
) -> dict[str, httpx.Response]:
    """Every client decides the run's approval at the same moment."""
    answers: dict[str, httpx.Response] = {}

    async def decide(name: str, c: httpx.AsyncClient, approved: bool) -> None:
        answers[name] = await c.post(
            "/v1/rpc/submitApproval",
            json={"runId": run_id, "nodeId": "approve", "approved": approved},
        )

    async with anyio.create_task_group() as tg:
        for name, (c, approved) in deciders.items():
            tg.start_soon(decide, name, c, approved)
    return answers


async def test_simultaneous_decisions_on_a_and_b_apply_once(tmp_path: Path) -> None:
    with two_replicas(tmp_path) as (a, b, token):
        async with client(a, token) as ca, client(b, token) as cb:
            outcomes: list[str] = []
            for _ in range(3):
                run_id = (await call(ca, "launchRun", {"workflow": "gated"}))["runId"]
                await wait_status(cb, run_id, "waiting-approval")
                answers = await decide_at_once(run_id, {"a": (ca, True), "b": (cb, False)})
                won = [k for k, r in answers.items() if r.json()["ok"] is True]
                assert len(won) == 1, {k: r.json() for k, r in answers.items()}
                run = await wait_status(ca, run_id, "finished", "failed")
                # the winner's decision is the one applied
                assert run["status"] == ("finished" if won == ["a"] else "failed")
                events = [e["type"] for e in persisted(tmp_path, run_id)]
                assert events.count("ApprovalGranted") + events.count("ApprovalDenied") == 1
                outcomes.append(run["status"])
    assert marks(tmp_path).count("build") == 3
    assert marks(tmp_path).count("ship") == outcomes.count("finished")


async def test_a_signal_sent_to_b_reaches_the_run_on_a_once(tmp_path: Path) -> None:
    with two_replicas(tmp_path) as (a, b, token):
        async with client(a, token) as ca, client(b, token) as cb:
            run_id = (await call(ca, "launchRun", {"workflow": "signalled"}))["runId"]
            await wait_status(cb, run_id, "waiting-event")
            sent = await call(
                cb, "submitSignal", {"runId": run_id, "signalName": "go", "payload": {"n": 7}}
            )
            assert sent is not None
            await wait_status(ca, run_id, "finished")
            output = await call(cb, "getNodeOutput", {"runId": run_id, "nodeId": "go"})
            assert output["row"] == {"n": 7}
    events = [e["type"] for e in persisted(tmp_path, run_id)]
    assert events.count("SignalReceived") == 1 and events.count("RunFinished") == 1
    assert marks(tmp_path) == ["before", "after"]


async def test_the_change_stream_on_b_reports_runs_launched_on_a(tmp_path: Path) -> None:
    with two_replicas(tmp_path) as (a, b, token):
        async with (
            client(a, token) as ca,
            client(b, token) as cb,
            cb.stream("GET", "/v1/api/stream", timeout=20) as response,
        ):
            assert response.status_code == 200
            lines = response.aiter_lines()
            with anyio.fail_after(10):  # the first heartbeat: the stream is subscribed
                while not (await lines.__anext__()).startswith("event: heartbeat"):
                    pass
            # nothing else happens: the changes that follow are those of A's run
            await call(ca, "launchRun", {"workflow": "gated"})
            with anyio.fail_after(10):
                while True:
                    line = await lines.__anext__()
                    if line.startswith("data:") and "collections" in line:
                        assert {"runs", "run_events"} <= set(json.loads(line[5:])["collections"])
                        break


async def test_a_stopping_replica_hands_its_runs_over_at_once(tmp_path: Path) -> None:
    """SIGTERM releases the lease: B resumes the run without waiting for it to go stale."""
    with two_replicas(tmp_path) as (a, b, token):
        async with client(a, token) as ca, client(b, token) as cb:
            run_id = (await call(ca, "launchRun", {"workflow": "crashy"}))["runId"]
            with anyio.fail_after(20):
                while not (tmp_path / "b-started").exists():
                    a.child.check_running()
                    await anyio.sleep(0.02)
            assert a.child.stop(signal.SIGTERM, timeout=20) == 0
            stopped = time.monotonic()
            run = await wait_status(cb, run_id, "finished", timeout=20)
            assert time.monotonic() - stopped < STALE_MS / 1000 * 0.75
            assert run["status"] == "finished"
    events = persisted(tmp_path, run_id)
    kinds = [(e["type"], e.get("nodeId"), e.get("reason")) for e in events]
    assert ("NodeCancelled", "b", "shutdown") in kinds
    assert "RunCancelled" not in [k[0] for k in kinds]
    assert marks(tmp_path) == ["a", "b1", "b2", "c"]
