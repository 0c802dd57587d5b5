"""Property tests over one real gateway per module: whatever a client sends over HTTP RPC,
the answer is a well-formed ResponseFrame with the right status, never a 500."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway_helpers import OP_TOKEN, TOKENS, make_gateway

METHODS = [
    "health",
    "listWorkflows",
    "launchRun",
    "runs.create",
    "getRun",
    "listRuns",
    "resumeRun",
    "cancelRun",
    "runs.rerun",
    "listNodeStates",
    "frames.list",
    "frames.get",
    "attempts.list",
    "attempts.get",
    "listApprovals",
    "submitApproval",
    "submitSignal",
    "streamRunEvents",
    "pauseRun",
    "ext.none.here",
]
OK_STATUSES = {200, 400, 401, 403, 404, 409, 413, 429}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
param_values = st.fixed_dictionaries(
    {},
    optional={
        "runId": st.one_of(st.text(max_size=10), st.integers(), st.none()),
        "workflow": st.sampled_from(["deploy", "ghost", ""]) | st.integers(),
        "nodeId": st.text(max_size=5),
        "iteration": st.integers(-2, 3) | st.text(max_size=2),
        "approved": st.booleans() | st.integers(),
        "input": json_values,
        "filter": json_values,
        "limit": st.integers(-3, 3) | st.text(max_size=2),
        "frameNo": st.integers(-1, 3),
        "afterSeq": st.integers(-1, 3),
        "signalName": st.text(max_size=5),
        "options": json_values,
        "extra": json_values,
    },
)


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One gateway for the whole module, on its own event loop in a thread."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    ready = threading.Event()
    url: list[str] = []
    stop: list[anyio.Event] = []

    async def serve() -> None:
        gw = make_gateway(tmp, tokens=TOKENS)
        bound = await gw.listen(port=0)
        url.append(bound.url)
        done = anyio.Event()
        stop.append(done)
        ready.set()
        try:
            await done.wait()
        finally:
            await gw.close()

    with anyio.from_thread.start_blocking_portal() as portal:
        future = portal.start_task_soon(serve)
        assert ready.wait(10)
        yield url[0]
        portal.call(stop[0].set)
        future.result(10)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(method=st.sampled_from(METHODS), params=param_values)
def test_any_params_get_a_well_formed_answer(
    gateway_url: str, method: str, params: dict[str, Any]
) -> None:
    headers = {"authorization": f"Bearer {OP_TOKEN}"}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=10) as c:
        r = c.post("/rpc", json={"id": "f", "method": method, "params": params})
    assert r.status_code in OK_STATUSES, r.text
    assert r.headers["x-smithers-api-version"] == "v1"
    body = r.json()
    assert body["type"] == "res" and body["id"] == "f" and body["apiVersion"] == "v1"
    assert body["ok"] is (r.status_code == 200)
    if not body["ok"]:
        assert body["error"]["version"] == "v1"
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    if method in ("launchRun", "runs.create") and body["ok"]:
        run_id = body["payload"]["runId"]
        with httpx.Client(base_url=gateway_url, headers=headers, timeout=10) as c:
            c.post("/v1/rpc/cancelRun", json={"runId": run_id})


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_body_bytes_are_refused_cleanly(gateway_url: str, body: bytes) -> None:
    headers = {"authorization": f"Bearer {OP_TOKEN}", "content-type": "application/json"}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=10) as c:
        r = c.post("/rpc", content=body)
    assert r.status_code in OK_STATUSES, r.text
    frame = json.loads(r.text)
    assert frame["type"] == "res" and frame["apiVersion"] == "v1"
