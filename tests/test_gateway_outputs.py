"""``getNodeOutput`` (reference 5.4) and ``listPrompts`` (reference 5.5) over a real gateway."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from smithers_core.gateway.methods import outputs, prompts
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Seq, Task
from tests.engine_helpers import wait_for
from tests.fixtures.gateway.workflows import Go, Shipped
from tests.gateway_helpers import OP_TOKEN, TOKENS, http, make_gateway, rpc, running, ws_client

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

READER = "reader-token"
PROMPTS_ONLY = "prompts-token"
SCOPED = {
    **TOKENS,
    READER: {"role": "viewer", "scopes": ["run:read"]},
    PROMPTS_ONLY: {"role": "viewer", "scopes": ["prompt:read"]},
}


class Progress(BaseModel):
    done: int


def _fails(t):  # type: ignore[no-untyped-def]
    t.heartbeat({"done": 3})
    raise RuntimeError("boom")


@workflow("failing")
def failing(ctx):  # type: ignore[no-untyped-def]
    return Seq(Task("work", _fails, output=Progress))


async def _run_until(c: Any, run_id: str, *statuses: str) -> None:
    async def check() -> bool:
        r = await rpc(c, "getRun", {"runId": run_id})
        return bool(r.json()["payload"]["status"] in statuses)

    await wait_for(check, 10, f"run {run_id} -> {statuses}")


def _error(r: Any) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


async def test_get_node_output_produced_pending_and_errors(tmp_path: Path) -> None:
    async with running(make_gateway(tmp_path, tokens=SCOPED)) as gw, http(gw, OP_TOKEN) as c:
        run_id = (
            await rpc(c, "launchRun", {"workflow": "deploy", "input": {"sha": "f00"}})
        ).json()["payload"]["runId"]
        await _run_until(c, run_id, "finished")
        r = await rpc(c, "getNodeOutput", {"runId": run_id, "nodeId": "ship"})
        assert r.status_code == 200
        assert r.json()["payload"] == {
            "status": "produced",
            "row": {"sha": "f00"},
            "schema": Shipped.model_json_schema(),
        }
        alias = await rpc(c, "devtools.getNodeOutput", {"runId": run_id, "nodeId": "ship"})
        assert alias.json()["payload"] == r.json()["payload"]

        gated = (await rpc(c, "launchRun", {"workflow": "gated"})).json()["payload"]["runId"]
        await _run_until(c, gated, "waiting-approval")
        # a WaitSignal not reached yet: pending, with its model's schema
        r = await rpc(c, "getNodeOutput", {"runId": gated, "nodeId": "go", "iteration": 0})
        assert r.json()["payload"] == {
            "status": "pending",
            "row": None,
            "schema": Go.model_json_schema(),
        }
        # a gate approval never has an output
        assert _error(await rpc(c, "getNodeOutput", {"runId": gated, "nodeId": "gate"})) == (
            404,
            "NodeHasNoOutput",
        )
        cases: list[tuple[dict[str, Any], tuple[int, str]]] = [
            ({"runId": "no-such-run", "nodeId": "go"}, (404, "RunNotFound")),
            ({"runId": gated, "nodeId": "nope"}, (404, "NodeNotFound")),
            ({"runId": gated, "nodeId": "go", "iteration": 1}, (404, "IterationNotFound")),
            ({"runId": gated, "nodeId": "go", "iteration": 2**31 - 1}, (404, "IterationNotFound")),
            ({"runId": gated, "nodeId": "go", "iteration": 2**31}, (400, "InvalidIteration")),
            ({"runId": gated, "nodeId": "go", "iteration": -1}, (400, "InvalidIteration")),
            ({"runId": gated, "nodeId": "go", "iteration": "0"}, (400, "InvalidIteration")),
            ({"runId": "../x", "nodeId": "go"}, (400, "InvalidRunId")),
            ({"runId": "r" * 129, "nodeId": "go"}, (400, "InvalidRunId")),
            ({"nodeId": "go"}, (400, "InvalidRunId")),
            ({"runId": gated, "nodeId": "a/b"}, (400, "InvalidNodeId")),
            ({"runId": gated}, (400, "InvalidNodeId")),
        ]
        for params, expected in cases:
            assert _error(await rpc(c, "getNodeOutput", params)) == expected, params
        # run:read is the scope; prompt:read alone is not enough
        async with http(gw, READER) as reader:
            ok = await rpc(reader, "getNodeOutput", {"runId": run_id, "nodeId": "ship"})
            assert ok.status_code == 200
        async with http(gw, PROMPTS_ONLY) as other:
            denied = await rpc(other, "devtools.getNodeOutput", {"runId": run_id, "nodeId": "ship"})
            assert _error(denied) == (403, "FORBIDDEN")

        # the same over WebSocket
        async with ws_client(gw) as ws:
            await ws.connect()
            res = await ws.request("getNodeOutput", {"runId": run_id, "nodeId": "ship"})
            assert res["ok"] is True and res["payload"]["row"] == {"sha": "f00"}
            res = await ws.request("getNodeOutput", {"runId": gated, "nodeId": "gate"})
            assert res["ok"] is False and res["error"]["code"] == "NodeHasNoOutput"


async def test_get_node_output_failed_with_partial(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    gw.register("failing", failing)
    async with running(gw), http(gw, OP_TOKEN) as c:
        run_id = (await rpc(c, "launchRun", {"workflow": "failing"})).json()["payload"]["runId"]
        await _run_until(c, run_id, "failed")
        r = await rpc(c, "getNodeOutput", {"runId": run_id, "nodeId": "work"})
        assert r.json()["payload"] == {
            "status": "failed",
            "row": None,
            "schema": Progress.model_json_schema(),
            "partial": {"done": 3},
        }


async def test_get_node_output_size_limit_edge(tmp_path: Path, monkeypatch: Any) -> None:
    async with running(make_gateway(tmp_path, tokens=TOKENS)) as gw, http(gw, OP_TOKEN) as c:
        run_id = (await rpc(c, "launchRun", {"workflow": "deploy"})).json()["payload"]["runId"]
        await _run_until(c, run_id, "finished")
        size = len(b'{"sha":"abc"}')
        monkeypatch.setattr(outputs, "MAX_OUTPUT_BYTES", size)
        r = await rpc(c, "getNodeOutput", {"runId": run_id, "nodeId": "ship"})
        assert r.status_code == 200 and r.json()["payload"]["row"] == {"sha": "abc"}
        monkeypatch.setattr(outputs, "MAX_OUTPUT_BYTES", size - 1)
        r = await rpc(c, "getNodeOutput", {"runId": run_id, "nodeId": "ship"})
        assert _error(r) == (413, "PayloadTooLarge")
        assert r.json()["error"]["maxBytes"] == size - 1


# -- listPrompts ----------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def test_list_prompts(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    base = root / ".smithers" / "prompts"
    _write(base / "review.md", "Review {{diff}}")
    _write(base / "team" / "plan.mdx", "# Plan")
    _write(base / "notes.txt", "not a prompt")
    _write(base / ".hidden.md", "dotfile")
    _write(base / ".drafts" / "x.md", "dot folder")
    secret = _write(tmp_path / "secret.md", "outside the workspace")
    os.symlink(secret, base / "leak.md")
    outside_dir = tmp_path / "elsewhere"
    _write(outside_dir / "inner.md", "outside too")
    os.symlink(outside_dir, base / "linked")
    os.symlink(base / "review.md", base / "alias.md")  # inside the root: followed
    gw = make_gateway(tmp_path, tokens=SCOPED, workspace_root=str(root))
    async with running(gw), http(gw, PROMPTS_ONLY) as c:
        r = await rpc(c, "listPrompts")
        assert r.status_code == 200
        items = r.json()["payload"]
        assert [(i["id"], i["entryFile"], i["source"]) for i in items] == [
            ("alias", "prompts/alias.md", "Review {{diff}}"),
            ("review", "prompts/review.md", "Review {{diff}}"),
            ("team/plan", "prompts/team/plan.mdx", "# Plan"),
        ]
        assert all(isinstance(i["updatedAtMs"], int) for i in items)
        async with http(gw, READER) as reader:
            assert _error(await rpc(reader, "listPrompts")) == (403, "FORBIDDEN")


async def test_list_prompts_bounds_and_missing_folder(tmp_path: Path, monkeypatch: Any) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    gw = make_gateway(tmp_path, tokens=TOKENS, workspace_root=str(root))
    async with running(gw), http(gw, OP_TOKEN) as c:
        assert (await rpc(c, "listPrompts")).json()["payload"] == []
        base = root / ".smithers" / "prompts"
        for i in range(4):
            _write(base / f"p{i}.md", "x" * 10)
        _write(base / "big.md", "y" * 11)
        monkeypatch.setattr(prompts, "MAX_PROMPT_BYTES", 10)  # 10 bytes ok, 11 skipped
        monkeypatch.setattr(prompts, "MAX_PROMPTS", 3)  # the first 3 by id
        ids = [i["id"] for i in (await rpc(c, "listPrompts")).json()["payload"]]
        assert ids == ["p0", "p1", "p2"]
        monkeypatch.setattr(prompts, "MAX_PROMPTS", 4)
        ids = [i["id"] for i in (await rpc(c, "listPrompts")).json()["payload"]]
        assert ids == ["p0", "p1", "p2", "p3"]
        monkeypatch.setattr(prompts, "MAX_TOTAL_BYTES", 20)  # two 10-byte sources fit
        ids = [i["id"] for i in (await rpc(c, "listPrompts")).json()["payload"]]
        assert ids == ["p0", "p1"]


async def test_list_prompts_refuses_a_prompts_folder_linked_outside(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / ".smithers").mkdir(parents=True)
    _write(tmp_path / "other" / "stolen.md", "outside")
    os.symlink(tmp_path / "other", root / ".smithers" / "prompts")
    gw = make_gateway(tmp_path, tokens=TOKENS, workspace_root=str(root))
    async with running(gw), http(gw, OP_TOKEN) as c:
        assert (await rpc(c, "listPrompts")).json()["payload"] == []
