"""Each gateway method's error code and message for an unknown run, a field of the wrong type
and a missing field (issue 13 item 10), over HTTP RPC and WebSocket.

Codes are the ones reference/gateway.md 5 gives per method, inconsistent as upstream is
(``getRun`` answers ``NOT_FOUND`` where ``cancelRun`` answers ``RunNotFound``); the table in
docs/gateway.md lists the same. Messages say what is wrong: a field of the wrong type is
``<field> must be <type>``, never ``... is required``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.gateway_helpers import OP_TOKEN, TOKENS, http, make_gateway, rpc, running, ws_client

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

NOPE = "no-such-run"
Case = tuple[dict[str, Any], int, str, str | None]  # params, status, code, message (None: any)

# method -> (unknown run, wrong type, missing field)
TABLE: dict[str, tuple[Case, Case, Case]] = {
    "getRun": (
        ({"runId": NOPE}, 404, "NOT_FOUND", f"Run not found: {NOPE}"),
        ({"runId": 5}, 400, "INVALID_REQUEST", "runId must be a string"),
        ({}, 400, "INVALID_REQUEST", "runId is required"),
    ),
    "resumeRun": (
        ({"runId": NOPE}, 404, "NOT_FOUND", None),
        ({"runId": ["x"]}, 400, "INVALID_REQUEST", "runId must be a string"),
        ({}, 400, "INVALID_REQUEST", "runId is required"),
    ),
    "cancelRun": (
        ({"runId": NOPE}, 404, "RunNotFound", "Run not found"),
        ({"runId": True}, 400, "INVALID_REQUEST", "runId must be a string"),
        ({}, 400, "INVALID_REQUEST", "runId is required"),
    ),
    "runs.rerun": (
        ({"runId": NOPE}, 404, "NOT_FOUND", None),
        ({"runId": NOPE, "newRunId": 7}, 400, "INVALID_REQUEST", "newRunId must be a string"),
        ({}, 400, "INVALID_REQUEST", "runId is required"),
    ),
    "listNodeStates": (
        ({"runId": NOPE}, 404, "NOT_FOUND", None),
        ({"runId": {}}, 400, "INVALID_REQUEST", "runId must be a string"),
        ({}, 400, "INVALID_REQUEST", "runId is required"),
    ),
    "frames.list": (
        ({"runId": NOPE}, 404, "NOT_FOUND", None),
        ({"runId": 1}, 400, "INVALID_REQUEST", "runId must be a string"),
        ({}, 400, "INVALID_REQUEST", "runId is required"),
    ),
    "frames.get": (
        ({"runId": NOPE}, 404, "NOT_FOUND", None),
        ({"runId": 1}, 400, "INVALID_REQUEST", "runId must be a string"),
        ({}, 400, "INVALID_REQUEST", "runId is required"),
    ),
    "attempts.list": (
        ({"runId": NOPE}, 404, "NOT_FOUND", None),
        ({"runId": NOPE, "nodeId": 3}, 400, "INVALID_REQUEST", "nodeId must be a string"),
        ({}, 400, "INVALID_REQUEST", "runId is required"),
    ),
    "attempts.get": (
        (
            {"runId": NOPE, "nodeId": "a", "iteration": 0, "attempt": 1},
            404,
            "NOT_FOUND",
            None,
        ),
        (
            {"runId": NOPE, "nodeId": "a", "iteration": "0", "attempt": 1},
            400,
            "INVALID_REQUEST",
            "iteration must be an integer",
        ),
        (
            {"runId": NOPE, "nodeId": "a"},
            400,
            "INVALID_REQUEST",
            "runId, nodeId, iteration, and attempt are required",
        ),
    ),
    "submitApproval": (
        ({"runId": NOPE, "nodeId": "gate", "approved": True}, 404, "NOT_FOUND", None),
        (
            {"runId": NOPE, "nodeId": "gate", "approved": "yes"},
            400,
            "INVALID_REQUEST",
            "approved must be a boolean",
        ),
        (
            {"runId": NOPE, "nodeId": "gate"},
            400,
            "INVALID_REQUEST",
            "runId, nodeId, and approved are required",
        ),
    ),
    "submitSignal": (
        ({"runId": NOPE, "signalName": "go"}, 404, "NOT_FOUND", None),
        (
            {"runId": 12, "signalName": "go"},
            400,
            "INVALID_REQUEST",
            "runId must be a string",
        ),
        (
            {"runId": None, "signalName": "go"},
            400,
            "INVALID_REQUEST",
            "runId and signalName are required",
        ),
    ),
    "launchRun": (
        ({"workflow": "nope"}, 404, "NOT_FOUND", "Unknown workflow: nope"),
        ({"workflow": 5}, 400, "INVALID_REQUEST", "workflow must be a string"),
        ({}, 400, "INVALID_REQUEST", "workflow is required"),
    ),
}

# WebSocket only; the reference gives catalog codes here
STREAM: tuple[Case, Case, Case] = (
    ({"runId": NOPE}, 404, "RunNotFound", f"Run not found: {NOPE}"),
    ({"runId": 5}, 400, "InvalidRunId", "runId must be a string"),
    ({}, 400, "InvalidRunId", "runId is required"),
)

KINDS = ("unknown run", "wrong type", "missing field")


def _check(method: str, kind: str, error: dict[str, Any], code: str, message: str | None) -> None:
    where = f"{method} / {kind}"
    assert error["code"] == code, (where, error)
    if message is not None:
        assert error["message"] == message, (where, error)
    assert "is required" not in error["message"] or kind == "missing field", (where, error)


async def test_error_codes_per_method_over_http_and_websocket(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw), http(gw, OP_TOKEN) as c, ws_client(gw) as ws:
        await ws.connect()
        for method, cases in TABLE.items():
            for kind, (params, status, code, message) in zip(KINDS, cases, strict=True):
                r = await rpc(c, method, params)
                assert r.status_code == status, (method, kind, r.text)
                _check(method, kind, r.json()["error"], code, message)
                res = await ws.request(method, params)
                assert res["ok"] is False, (method, kind, res)
                _check(method, kind, res["error"], code, message)
        for kind, (params, _status, code, message) in zip(KINDS, STREAM, strict=True):
            res = await ws.request("streamRunEvents", params)
            assert res["ok"] is False
            _check("streamRunEvents", kind, res["error"], code, message)


async def test_malformed_json_is_invalid_input_on_every_transport(tmp_path: Path) -> None:
    """reference 9.6 and 3: non-JSON is 400 ``INVALID_INPUT`` (HTTP) and an
    ``INVALID_INPUT`` answer with id ``invalid`` (WebSocket), which keeps answering."""
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw), http(gw, OP_TOKEN) as c, ws_client(gw) as ws:
        headers = {"content-type": "application/json"}
        for path in ("/rpc", "/v1/rpc/getRun"):
            r = await c.post(path, content=b'{"runId": "x",', headers=headers)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "INVALID_INPUT"
        await ws.connect()
        await ws.send('{"type": "req", "id": "x", ')
        res = await ws.wait_for(lambda f: f.get("type") == "res" and f.get("id") == "invalid")
        assert res["ok"] is False and res["error"]["code"] == "INVALID_INPUT"
        res = await ws.request("getRun", {"runId": NOPE})
        assert res["error"]["code"] == "NOT_FOUND"
