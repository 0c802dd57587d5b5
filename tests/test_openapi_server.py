"""start_server's OpenAPI document (``GET /openapi.json``): valid OpenAPI 3.1, one operation per
route of the server's router, and true of the live server (schemathesis fuzzes a real
start_server, every check must pass and the server must log no failure).

Also the regressions of what the fuzz found: numbers beyond SQLite's integers in query
parameters, cursors and bodies answered 500 ``SERVER_ERROR``.
"""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from smithers_core.hosts.openapi import server_document_bytes, server_operations
from smithers_core.http.params import MAX_SQL_INT, int_prefix, js_number
from tests.engine_helpers import REPO_ROOT
from tests.fixtures.server.helpers import server
from tests.fuzz_helpers import assert_clean_fuzz, assert_clean_log, run_schemathesis
from tests.processes import spawn

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PUBLIC = {("GET", "/health"), ("GET", "/openapi.json")}
EXAMPLE_WORKFLOW = "workflows/hello.py"
"""Where the fuzzed server's root holds examples/hello.py: the document's workflowPath example."""

HUGE = "9" * 40


def documented(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }


@pytest.mark.anyio
@pytest.mark.timeout(20)
async def test_document_is_valid_and_covers_every_route(tmp_path: Path) -> None:
    async with server(tmp_path, auth_token=TOKEN) as s:
        r = await s.client.get("/openapi.json")  # public: no token
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.headers["cache-control"] == "no-store"
        assert r.content == server_document_bytes()
        doc = r.json()
        validate(doc)
        assert doc["openapi"] == "3.1.0"

        # every route of the router (and /health, answered before routing) is documented,
        # and nothing else: a route added without documentation fails here
        routes = {
            (method, route.path)
            for route in s.running.app.router
            for method in route.methods or ("*",)
        }
        ops = documented(doc)
        assert set(ops) == routes | {("GET", "/health")}
        assert len({op["operationId"] for op in ops.values()}) == len(ops)

        for key, op in ops.items():
            responses = op["responses"]
            ok = [code for code in responses if code.startswith("2")]
            assert ok, key
            for code, reply in responses.items():
                if code != "204":
                    (media,) = reply["content"].values()
                    assert media["schema"], (key, code)
            if key in PUBLIC:
                assert op["security"] == [] and "401" not in responses, key
            else:
                assert op["security"] == [{"bearerAuth": []}, {}], key
                assert "401" in responses, key

        # the token gates everything else, unknown paths included
        assert (await s.client.get("/metrics")).status_code == 401
        assert (await s.client.get("/openapi.json/x")).status_code == 401
        assert (await s.client.post("/openapi.json")).status_code == 401
        r = await s.client.post("/openapi.json", headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.anyio
@pytest.mark.timeout(20)
async def test_numbers_beyond_sqlite_integers_are_not_server_errors(tmp_path: Path) -> None:
    """Found by the fuzz: each of these answered 500 (OverflowError binding a query)."""
    async with server(tmp_path) as s:
        run_id = await s.start("fast")
        assert await s.wait_status(run_id, "finished") == "finished"
        for query in (f"limit={HUGE}", "limit=1e300", f"afterFrameNo={HUGE}"):
            r = await s.client.get(f"/v1/runs/{run_id}/frames?{query}")
            assert r.status_code == 200, (query, r.text)
        assert (await s.client.get(f"/v1/runs/{run_id}/frames?afterFrameNo={HUGE}")).json() == []
        r = await s.client.get(f"/v1/runs?limit={HUGE}")
        assert r.status_code == 200 and [row["runId"] for row in r.json()] == [run_id]
        r = await s.client.get(f"/v1/runs/{run_id}/events?afterSeq={HUGE}")
        assert r.status_code == 204
        r = await s.client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": HUGE})
        assert r.status_code == 204
        r = await s.client.post(f"/v1/runs/{run_id}/nodes/task1/approve", json={"iteration": 2**64})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        for value in (10**400, "0x" + "f" * 300):
            body = {"workflowPath": "wf/fast.py", "config": {"maxConcurrency": value}}
            r = await s.client.post("/v1/runs", json=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["message"] == "config.maxConcurrency must be a positive number"
    assert js_number("0x" + "f" * 300) == float("inf")
    assert int_prefix("9" * 5000) == MAX_SQL_INT
    assert int_prefix("-" + "9" * 40) == -MAX_SQL_INT - 1


SERVE = """
import logging, signal, sys
from smithers_core.hosts.server import start_server

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # for sigwait
handle = start_server(port=0, root_dir=sys.argv[1], auth_token=sys.argv[2])
print(f"start_server listening on {handle.url}", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
handle.close()
print("start_server closed", flush=True)
"""

FUZZ_CONFIG = """
[dictionaries.runs]
values = ["fuzz-finished", "fuzz-cancelled"]

[dictionaries.workflows]
values = ["workflows/hello.py"]

[parameters]
"path.runId" = { dictionary = "runs", probability = 0.5 }
"body.runId" = { dictionary = "runs", probability = 0.3 }
"body.workflowPath" = { dictionary = "workflows", probability = 0.5 }
"""
"""Half the run ids are runs that exist (finished, cancelled), half the workflow paths the
example workflow, so the fuzz reaches the decisions, signals and cancels, not only 404s."""


def settle(client: httpx.Client, run_id: str) -> str:
    """Read the run's event stream to its end (it ends once the run is terminal)."""
    with client.stream("GET", f"/v1/runs/{run_id}/events") as r:
        assert r.status_code in (200, 204), r.read()
        for _ in r.iter_bytes():
            pass
    status: str = client.get(f"/v1/runs/{run_id}").json()["status"]
    return status


@pytest.mark.timeout(150)
def test_schemathesis_finds_nothing_against_a_live_server(tmp_path: Path) -> None:
    """start_server in a child process (its whole output is its log), root_dir a copy of one
    quick example workflow, a token; a finished and a cancelled run to aim at; then every
    operation of the document fuzzed (20 examples each, fixed seed, all four phases)."""
    root = tmp_path / "root"
    (root / "workflows").mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "examples" / "hello.py", root / EXAMPLE_WORKFLOW)
    args = [sys.executable, "-c", SERVE, root, TOKEN]
    with spawn(args, cwd=tmp_path, label="start_server") as child:
        url = child.wait_for(r"start_server listening on (http://127\.0\.0\.1:\d+)\n").group(1)
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
            for run_id in ("fuzz-finished", "fuzz-cancelled"):
                body = {"workflowPath": EXAMPLE_WORKFLOW, "runId": run_id}
                assert client.post("/v1/runs", json=body).status_code == 200
            assert client.post("/v1/runs/fuzz-cancelled/cancel").status_code == 200
            assert settle(client, "fuzz-finished") == "finished"
            assert settle(client, "fuzz-cancelled") == "cancelled"

            result = run_schemathesis(
                f"{url}/openapi.json",
                tmp_path / "schemathesis",
                headers=AUTH,
                max_examples=20,
                seed=20261207,
                config=FUZZ_CONFIG,
            )
            operations = len(server_operations())
            assert_clean_fuzz(result, operations=operations)
            assert result.report["test_cases"]["generated"] >= 20 * operations

            # still serving, and every run the fuzz started is a file inside the root
            assert httpx.get(f"{url}/health").json() == {"ok": True}
            runs = client.get("/v1/runs", params={"limit": 100_000}).json()
            assert len(runs) > 2
            example = str((root / EXAMPLE_WORKFLOW).resolve())
            assert {row["workflowPath"] for row in runs} == {example}
        assert child.stop(signal.SIGTERM, timeout=20) == 0
    assert "start_server closed" in child.output
    assert_clean_log(child.output)
    # random workflowPaths never reached outside the root (the server sandboxes them)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "schemathesis"]
