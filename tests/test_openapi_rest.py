"""The REST facade's OpenAPI document (``GET /v1/api/openapi.json``): valid OpenAPI 3.1, one
operation per facade route with its scope, and true of a live gateway (schemathesis fuzzes
every operation but the endless stream, every check must pass, nothing may be logged)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from openapi_spec_validator import validate
from smithers_rest.openapi import OPENAPI_PATH, STREAM_PATH
from smithers_rest.routes import ROUTES

from smithers_core.gateway import catalog
from tests.fuzz_helpers import assert_clean_log, captured_logs, run_schemathesis
from tests.gateway_helpers import http, running
from tests.rest_helpers import rest_gateway

pytestmark = pytest.mark.anyio


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }


@pytest.mark.timeout(30)
async def test_document_is_valid_and_covers_every_route(tmp_path: Path) -> None:
    async with running(rest_gateway(tmp_path)) as gw, http(gw) as anonymous:
        response = await anonymous.get(OPENAPI_PATH)  # public: no token
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        doc = response.json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    ops = operations(doc)
    expected = {(r.method, r.full_path) for r in ROUTES} | {
        ("GET", STREAM_PATH),
        ("GET", OPENAPI_PATH),
    }
    assert set(ops) == expected
    assert len({op["operationId"] for op in ops.values()}) == len(ops)
    for route in ROUTES:
        op = ops[(route.method, route.full_path)]
        scope = catalog.required_scope(route.rpc) if route.rpc else "run:read"
        assert op["security"] == [{"bearerAuth": [scope]}] and op["x-smithers-scope"] == scope
        success = op["responses"]["200"]["content"]["application/json"]["schema"]
        name = success["$ref"].rsplit("/", 1)[1]
        schema = doc["components"]["schemas"][name]
        required = {"ok", "data", "seq"} if route.mutation else {"ok", "data"}
        assert set(schema["required"]) == required, route
        for status in ("400", "401", "403", "404"):
            error = op["responses"][status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Failure"}
        if route.body is not None:
            assert "requestBody" in op
    assert ops[("GET", OPENAPI_PATH)]["security"] == []
    stream = ops[("GET", STREAM_PATH)]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert "429" in stream["responses"]
    launch = ops[("POST", "/v1/api/runs")]
    body = launch["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/LaunchBody"}


FUZZ_CONFIG = """
[dictionaries.runs]
values = [{runs}]

[dictionaries.nodes]
values = ["ship", "gate", "go"]

[dictionaries.workflows]
values = ["deploy", "gated"]

[parameters]
"path.runId" = {{ dictionary = "runs", probability = 0.5 }}
"query.runId" = {{ dictionary = "runs", probability = 0.5 }}
"body.runId" = {{ dictionary = "runs", probability = 0.4 }}
"path.nodeId" = {{ dictionary = "nodes", probability = 0.5 }}
"body.workflow" = {{ dictionary = "workflows", probability = 0.5 }}
"query.workflow" = {{ dictionary = "workflows", probability = 0.5 }}

[[operations]]
include-path-regex = "/diff$"
checks = {{ not_a_server_error = {{ expected-statuses = ["2xx", "3xx", "4xx", "501"] }} }}
"""
"""Half the run ids, node ids and workflow keys exist, so the fuzz reaches launches, outputs,
decisions, signals and cancels, not only 404s. A node diff is 501 ``UnsupportedSandbox``
(documented: this host has no version-controlled sandbox), not a server failure."""


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    """Every facade operation fuzzed (bounded examples, fixed seed) as an operator: no 500,
    statuses, content types and bodies as documented, no failure in the gateway's log, and the
    gateway still answers afterwards. The stream is left out: it never ends (its own tests
    cover its errors)."""
    with captured_logs("uvicorn", "smithers") as logs:
        async with running(rest_gateway(tmp_path / "gw")) as gw, http(gw, "op-token") as op:
            runs = []
            for workflow in ("deploy", "gated"):
                answer = await op.post("/v1/api/runs", json={"workflow": workflow})
                runs.append(answer.json()["data"]["runId"])
            url = gw.url or ""
            config = FUZZ_CONFIG.format(runs=", ".join(f'"{r}"' for r in runs))
            result = await anyio.to_thread.run_sync(
                lambda: run_schemathesis(
                    url + OPENAPI_PATH,
                    tmp_path / "fuzz",
                    headers={"Authorization": "Bearer op-token"},
                    max_examples=15,
                    seed=20261207,
                    config=config,
                    extra_args=("--exclude-path", STREAM_PATH),
                    timeout=200,
                )
            )
            report = result.report
            assert report and result.returncode == 0, result.summary()
            assert report["complete"] and report["stop_reason"] == "completed", result.summary()
            ops, cases = report["operations"], report["test_cases"]
            assert ops["tested"] == ops["selected"] == len(ROUTES) + 1, result.summary()
            assert ops["total"] == len(ROUTES) + 2, result.summary()  # with the stream
            assert ops["errored"] == 0 and cases["errored"] == 0, result.summary()
            assert cases["with_failures"] == 0 and not report["failures"], result.summary()
            assert not report["errors"], result.summary()
            assert cases["generated"] > 1000, result.summary()
            assert (await op.get("/v1/api/runs?limit=1")).status_code == 200
            assert (await op.get("/health")).status_code == 200
    assert_clean_log(logs.text)
