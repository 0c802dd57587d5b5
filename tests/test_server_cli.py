"""``smithers server`` on the command line, and a fuzz check that bad input never crashes it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smithers_core.hosts.server import start_server
from tests import stores
from tests.engine_helpers import engine_options
from tests.fixtures.server.helpers import copy_workflows
from tests.processes import SMITHERS, run, spawn

pytestmark = pytest.mark.timeout(20)


def test_smithers_server_serves_until_sigterm(tmp_path: Path) -> None:
    copy_workflows(tmp_path)
    env = {**os.environ, "SMITHERS_API_KEY": "k"}
    args = [*SMITHERS, "server", "--root", tmp_path, "--port", "0"]
    with spawn(args, env=env) as server:
        line = server.wait_for(r"smithers server listening on (http://127\.0\.0\.1:\d+)\n")
        url = line.group(1)
        assert httpx.get(f"{url}/v1/runs").status_code == 401
        r = httpx.post(
            f"{url}/v1/runs",
            json={"workflowPath": "wf/fast.py", "runId": "cli-1"},
            headers={"x-smithers-key": "k"},
        )
        assert r.json() == {"runId": "cli-1"}
        assert server.stop(signal.SIGTERM, timeout=10) == 0
    # the default store: <root>/smithers.db (on the PostgreSQL leg: $SMITHERS_DB)
    assert stores.rows(tmp_path / "smithers.db", "SELECT run_id FROM _smithers_runs") == [
        ("cli-1",)
    ]


def test_smithers_server_help() -> None:
    done = run([*SMITHERS, "server", "--help"], timeout=30)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for flag in (
        "--root",
        "--port",
        "--host",
        "--db",
        "--auth-token",
        "--max-body-bytes",
        "--allow-network",
        "--insecure",
        "--headers-timeout",
        "--request-timeout",
    ):
        assert flag in out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "workflowPath": st.sampled_from(["wf/fast.py", "wf/typed.py", "../x.py", "", 5]),
            "input": json_values,
            "runId": json_values,
            "resume": json_values,
            "config": json_values,
            "iteration": json_values,
            "data": json_values,
        },
    ).map(lambda v: json.dumps(v).encode()),
)
paths = st.sampled_from(
    [
        "/v1/runs",
        "/v1/runs/fz/resume",
        "/v1/runs/fz/cancel",
        "/v1/runs/fz/nodes/task1/approve",
        "/v1/runs/fz/nodes/%ZZ/deny",
        "/v1/runs/fz/signals/go",
        "/signal/fz/%E0%A4%A",
        "/v1/runs/fz/frames?limit=%00",
        "/v1/runs/fz/events?afterSeq=1e400",
        "/v1/runs?limit=-0&status=%FF",
    ]
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> object:
    root = tmp_path_factory.mktemp("fuzz")
    copy_workflows(root)
    handle = start_server(port=0, root_dir=str(root), auth_token="", options=engine_options())
    client = httpx.Client(base_url=handle.url, timeout=5)
    yield client
    client.close()
    handle.close()


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(path=paths, body=bodies, method=st.sampled_from(["POST", "GET"]))
def test_bad_input_never_crashes_the_server(
    fuzz_server: httpx.Client, path: str, body: bytes, method: str
) -> None:
    r = fuzz_server.request(method, path, content=body if method == "POST" else None)
    if r.status_code in (200, 204) and "text/event-stream" in r.headers.get("content-type", ""):
        return
    # issue 13: bad input is never a 500 (a missing workflow file and a malformed escape were)
    assert r.status_code in (200, 204, 400, 403, 404, 409, 413, 422), r.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) <= {"code", "message", "details"} and err["code"] and err["message"]
    assert fuzz_server.get("/health").json() == {"ok": True}
