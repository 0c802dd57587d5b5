"""Scope matrix over real HTTP RPC: every core method x every scope family and legacy level,
plus method-name and prefix grants (reference 6.7, D8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.gateway_helpers import TOKENS, http, make_gateway, rpc, running, ws_client

pytestmark = pytest.mark.anyio

# Method as called -> the scope it requires.
CORE_METHODS = {
    "health": "run:read",
    "listWorkflows": "run:read",
    "workflows.list": "run:read",
    "launchRun": "run:write",
    "runs.create": "run:write",
    "getRun": "run:read",
    "runs.get": "run:read",
    "listRuns": "run:read",
    "runs.list": "run:read",
    "resumeRun": "run:write",
    "cancelRun": "run:write",
    "runs.cancel": "run:write",
    "runs.rerun": "run:write",
    "listNodeStates": "run:read",
    "frames.list": "run:read",
    "frames.get": "run:read",
    "attempts.list": "run:read",
    "attempts.get": "run:read",
    "listApprovals": "run:read",
    "approvals.list": "run:read",
    "submitApproval": "approval:submit",
    "approvals.decide": "approval:submit",
    "approve": "approval:submit",
    "submitSignal": "signal:submit",
    "signals.send": "signal:submit",
    "pauseRun": "run:write",
    "nope": "run:read",  # unknown methods pass the gate with run:read, then 404
}

# Grant -> the scopes it satisfies (written out independently of smithers_core.scopes).
ALL = {
    "run:read",
    "run:write",
    "run:admin",
    "approval:submit",
    "signal:submit",
    "cron:read",
    "cron:write",
}
GRANTS: dict[str, set[str]] = {
    "*": ALL,
    "run:read": {"run:read"},
    "run:write": {"run:read", "run:write"},
    "run:admin": {"run:read", "run:write", "run:admin"},
    "approval:submit": {"approval:submit"},
    "signal:submit": {"signal:submit"},
    "cron:read": {"cron:read"},
    "cron:write": {"cron:read", "cron:write"},
    "ticket:read": set(),
    "ticket:write": set(),
    "observability:read": set(),
    "account:read": set(),
    "memory:read": set(),
    "prompt:read": set(),
    "score:read": set(),
    "read": {"run:read", "cron:read"},
    "execute": {"run:read", "run:write", "signal:submit", "cron:read", "cron:write"},
    "approve": {
        "run:read",
        "run:write",
        "signal:submit",
        "cron:read",
        "cron:write",
        "approval:submit",
    },
    "admin": ALL,
}


def _params(method: str) -> dict[str, Any]:
    # Params that fail *after* the scope gate, so nothing is launched or decided.
    if method in ("launchRun", "runs.create"):
        return {}
    return {"runId": "ghost"}


async def test_scope_matrix(tmp_path: Path) -> None:
    tokens = {f"tok-{i}": {"role": "operator", "scopes": [g]} for i, g in enumerate(GRANTS)}
    async with running(make_gateway(tmp_path, tokens=tokens)) as gw:
        for i, (grant, satisfied) in enumerate(GRANTS.items()):
            async with http(gw, f"tok-{i}") as c:
                for method, required in CORE_METHODS.items():
                    r = await rpc(c, method, _params(method))
                    body = r.json()
                    forbidden = r.status_code == 403
                    assert forbidden == (required not in satisfied), (grant, method, r.text)
                    if forbidden:
                        assert body["error"] == {
                            "version": "v1",
                            "code": "FORBIDDEN",
                            "message": f"Missing required scope {required} for {method}",
                            "requiredScope": required,
                        }


NAME_GRANT_CASES = [
    # (grants, method, params, allowed)
    (["runs.create", "runs.get"], "runs.create", {"workflow": "deploy"}, True),
    (["runs.create", "runs.get"], "launchRun", {"workflow": "deploy"}, True),
    (["runs.create", "runs.get"], "getRun", {"runId": "ghost"}, True),
    (["health", "runs.list", "runs.get"], "runs.create", {"workflow": "deploy"}, False),
    (["health", "runs.list", "runs.get"], "health", {}, True),
    (["health", "runs.list", "runs.get"], "listRuns", {}, True),
    (["approve", "approvals.list", "runs.get"], "approvals.decide", {"runId": "ghost"}, True),
    (["approvals.list"], "listApprovals", {}, True),
    (["approvals.list"], "submitApproval", {"runId": "ghost"}, False),
    (["runs.*"], "runs.cancel", {"runId": "ghost"}, True),
    (["runs.*"], "runs.rerun", {"runId": "ghost"}, True),
    (["runs.*"], "submitSignal", {"runId": "ghost"}, False),
    (["getRun"], "launchRun", {"workflow": "deploy"}, False),
    (["getRun"], "cancelRun", {"runId": "ghost"}, False),
    (["frames.*"], "frames.get", {"runId": "ghost"}, True),
    (["frames.*"], "attempts.get", {"runId": "ghost"}, False),
    (["nope"], "nope", {}, False),
    ([" run:read ", ""], "getRun", {"runId": "ghost"}, True),
]


async def test_method_name_and_prefix_grants(tmp_path: Path) -> None:
    tokens = {
        f"n{i}": {"role": "operator", "scopes": grants}
        for i, (grants, _m, _p, _a) in enumerate(NAME_GRANT_CASES)
    }
    async with running(make_gateway(tmp_path, tokens=tokens)) as gw:
        for i, (grants, method, params, allowed) in enumerate(NAME_GRANT_CASES):
            async with http(gw, f"n{i}") as c:
                r = await rpc(c, method, params)
                assert (r.status_code != 403) == allowed, (grants, method, r.text)


async def test_scope_failure_over_websocket(tmp_path: Path) -> None:
    tokens = {**TOKENS, "reader": {"role": "viewer", "scopes": ["run:read"]}}
    async with running(make_gateway(tmp_path, tokens=tokens)) as gw, ws_client(gw) as ws:
        await ws.recv()
        await ws.connect("reader")
        res = await ws.request("runs.create", {"workflow": "deploy"}, frame_id="x")
        assert res == {
            "type": "res",
            "id": "x",
            "ok": False,
            "apiVersion": "v1",
            "error": {
                "version": "v1",
                "code": "FORBIDDEN",
                "message": "Missing required scope run:write for runs.create",
                "requiredScope": "run:write",
            },
            "_seen": True,
        }
