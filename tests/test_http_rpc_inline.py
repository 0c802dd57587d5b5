"""HTTP RPC answers inline methods (health, getRun, listWorkflows) from their JSON text, with
the same payloads as the awaited path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import OP_TOKEN, TOKENS, http, make_gateway, rpc, running

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(15)]


def _without_uptime(payload: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in payload.items() if k != "uptimeMs"}


def test_health_json_is_the_health_payload_and_follows_the_registry(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    ctx = gw.context
    text = ctx.health_json()
    expected = ctx.health_payload(include_uptime=True)
    assert list(json.loads(text)) == list(expected)  # same keys, same order
    assert _without_uptime(json.loads(text)) == _without_uptime(expected)
    before = json.loads(text)["workflowsTotal"]
    gw.register("extra", wfs.deploy)
    assert json.loads(ctx.health_json())["workflowsTotal"] == before + 1


async def test_http_inline_answers_match_the_awaited_handlers(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS)
    async with running(gw), http(gw, OP_TOKEN) as c:
        r = await rpc(c, "health")
        assert r.status_code == 200
        frame = r.json()
        assert frame["ok"] is True and frame["type"] == "res" and frame["apiVersion"] == "v1"
        assert _without_uptime(frame["payload"]) == _without_uptime(
            gw.context.health_payload(include_uptime=True)
        )
        r = await c.post("/rpc", json={"id": "mine", "method": "listWorkflows", "params": {}})
        assert r.json()["id"] == "mine"
        assert r.json()["ok"] is True and len(r.json()["payload"]) >= 4
        missing = await rpc(c, "getRun", {"runId": "no-such-run"})
        assert missing.json()["ok"] is False and missing.status_code == 404
