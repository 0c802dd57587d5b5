"""The ``smithers_webhooks`` plugin: signature schemes (upstream's HMAC, GitHub, Stripe,
Standard Webhooks), rotated secrets, replay protection across gateways, the documented 4xx
answers with nothing started, signals by correlation id and by run id, run launch with
``input_path``, no gateway token needed, and the webhook metrics."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import smithers_webhooks
from pydantic import BaseModel

from smithers_core.errors import SmithersError
from smithers_core.gateway import Gateway
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Seq, WaitSignal
from tests.engine_helpers import wait_for
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import TOKENS, http, make_gateway, plugin_host, rpc, running

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SECRET = "It's a Secret to Everybody"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-key").decode()


class PrInput(BaseModel):
    pr: str = "0"


class Review(BaseModel):
    state: str


@workflow("review", input=PrInput)
def review(ctx):  # type: ignore[no-untyped-def]
    """Wait for the review of one pull request (correlated by its number)."""
    return Seq(WaitSignal("review", "pr_review", output=Review, correlation_id=ctx.input.pr))


def hub_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_gateway(tmp_path: Path, **options: Any) -> Gateway:
    host = plugin_host()
    host.register(smithers_webhooks, "smithers_webhooks")
    options.setdefault("max_body_bytes", 4096)
    gw = make_gateway(tmp_path, tokens=TOKENS, plugins=host, **options)
    gw.register("deploy", wfs.deploy, webhook={"secret": SECRET, "run": {"input_path": "inputs"}})
    gw.register(
        "review",
        review,
        webhook={
            "secret": SECRET,
            "signal": {
                "name": "pr_review",
                "correlation_id_path": "pull_request.number",
                "run_id_path": "run",
                "payload_path": "review",
            },
            "run": {"enabled": False},
        },
    )
    gw.register(
        "gh",
        wfs.deploy,
        webhook={"secret": SECRET, "scheme": "github", "secrets": ["old-secret"]},
    )
    gw.register(
        "std",
        wfs.deploy,
        webhook={
            "secret": STANDARD_SECRET,
            "scheme": "standard",
            "timestamp_tolerance_s": 60,
            "run": {"input_path": "data"},
        },
    )
    gw.register(
        "stripe",
        wfs.deploy,
        webhook={
            "secret": "whsec_stripe",
            "scheme": "stripe",
            "run": {"input_path": "data.object"},
        },
    )
    return gw


async def post(
    gw: Gateway, key: str, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url or "", timeout=10) as c:
        return await c.post(f"/webhooks/{key}", content=body, headers=headers or {})


async def signed(gw: Gateway, key: str, payload: Any, **headers: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await post(gw, key, body, {"x-hub-signature-256": hub_signature(body), **headers})


async def runs(gw: Gateway) -> list[dict[str, Any]]:
    async with http(gw, "op-token") as c:
        payload: list[dict[str, Any]] = (await rpc(c, "listRuns", {"limit": 100})).json()["payload"]
        return payload


async def test_a_signed_delivery_starts_a_run_without_a_gateway_token(tmp_path: Path) -> None:
    gw = webhook_gateway(tmp_path)
    async with running(gw):
        r = await signed(
            gw, "deploy", {"inputs": {"sha": "f00"}}, authorization="Bearer not-a-token"
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ok"] is True and body["verified"] is True and body["workflow"] == "deploy"
        assert body["delivered"] == [] and body["matchedRunIds"] == []
        started = body["started"]
        assert started["workflow"] == "deploy" and started["system"] is False
        async with http(gw, "op-token") as c:
            run = (await rpc(c, "getRun", {"runId": started["runId"]})).json()["payload"]
        config = json.loads(run["configJson"])
        assert config["auth"]["triggeredBy"] == "webhook:deploy"
        assert config["auth"]["role"] == "system" and config["auth"]["scopes"] == ["*"]
        async with http(gw, "op-token") as c:

            async def shipped() -> Any:
                res = await rpc(c, "getNodeOutput", {"runId": started["runId"], "nodeId": "ship"})
                out = res.json().get("payload") or {}
                return out.get("row") if out.get("status") == "produced" else None

            row = await wait_for(shipped)
        assert row["sha"] == "f00"  # the value at input_path
        r = await signed(gw, "deploy", {"sha": "x"})  # no input_path value: {}
        assert r.status_code == 200 and r.json()["started"]["runId"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_signature"),
        ({"x-hub-signature-256": "sha1=abc"}, "wrong_prefix"),
        ({"x-hub-signature-256": "sha256=" + "0" * 64}, "mismatch"),
        ({"x-hub-signature-256": "sha256="}, "mismatch"),
    ],
)
async def test_bad_signatures_are_401_and_start_nothing(
    tmp_path: Path, headers: dict[str, str], reason: str
) -> None:
    gw = webhook_gateway(tmp_path)
    async with running(gw):
        r = await post(gw, "deploy", b'{"inputs": {}}', headers)
        assert r.status_code == 401
        assert r.json() == {
            "ok": False,
            "error": {
                "code": "UNAUTHORIZED",
                "message": "Webhook signature verification failed",
                "reason": reason,
            },
        }
        assert await runs(gw) == []


async def test_the_documented_4xx_answers(tmp_path: Path) -> None:
    gw = webhook_gateway(tmp_path)
    gw.register("plain", wfs.deploy)
    gw.register("nothing", wfs.deploy, webhook={"secret": SECRET, "run": {"enabled": False}})
    async with running(gw):
        r = await signed(gw, "nope", {})
        assert r.status_code == 404 and r.json()["error"]["message"] == "Unknown workflow: nope"
        r = await signed(gw, "plain", {})
        assert r.status_code == 404
        assert r.json()["error"]["message"] == "Webhook not configured for workflow: plain"
        r = await signed(gw, "nothing", {})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        big = b'{"x": "' + b"a" * 5000 + b'"}'
        r = await post(gw, "deploy", big, {"x-hub-signature-256": hub_signature(big)})
        assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        edge = b'{"x": "' + b"a" * (4096 - 9) + b'"}'
        assert len(edge) == 4096
        r = await post(gw, "deploy", edge, {"x-hub-signature-256": hub_signature(edge)})
        assert r.status_code == 200  # exactly at the limit
        over = edge[:-2] + b'a"}'
        r = await post(gw, "deploy", over, {"x-hub-signature-256": hub_signature(over)})
        assert r.status_code == 413  # one byte over
        bad = b'{"inputs": '
        r = await post(gw, "deploy", bad, {"x-hub-signature-256": hub_signature(bad)})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_INPUT"
        r = await signed(gw, "deploy", {"inputs": [1, 2]})  # a non-object becomes {payload}
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_INPUT"
        assert len(await runs(gw)) == 1


async def test_signals_by_correlation_id_and_by_run_id(tmp_path: Path) -> None:
    gw = webhook_gateway(tmp_path)
    async with running(gw), http(gw, "op-token") as c:
        ids = {}
        for pr in ("1", "2", "3"):
            res = await rpc(c, "launchRun", {"workflow": "review", "input": {"pr": pr}})
            ids[pr] = res.json()["payload"]["runId"]

        async def status(run_id: str) -> str:
            return str((await rpc(c, "getRun", {"runId": run_id})).json()["payload"]["status"])

        for run_id in ids.values():
            await wait_for(lambda rid=run_id: _is(status(rid), "waiting-event"))
        r = await signed(
            gw, "review", {"pull_request": {"number": 2}, "review": {"state": "approved"}}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["matchedRunIds"] == [ids["2"]] and body["started"] is None
        assert [(d["runId"], d["signalName"], d["correlationId"]) for d in body["delivered"]] == [
            (ids["2"], "pr_review", "2")
        ]
        await wait_for(lambda: _is(status(ids["2"]), "finished"))
        assert await status(ids["1"]) == "waiting-event"
        # by run id: only that run, and only if it waits for this correlation id
        r = await signed(
            gw, "review", {"run": ids["1"], "pull_request": {"number": 3}, "review": {"state": "x"}}
        )
        assert r.json()["delivered"] == [] and r.json()["matchedRunIds"] == []
        r = await signed(
            gw,
            "review",
            {"run": ids["3"], "pull_request": {"number": 3}, "review": {"state": "ok"}},
        )
        assert r.json()["matchedRunIds"] == [ids["3"]]
        await wait_for(lambda: _is(status(ids["3"]), "finished"))
        # nothing waits: 200, nothing delivered, nothing started (run creation is off)
        r = await signed(gw, "review", {"pull_request": {"number": 9}, "review": {"state": "x"}})
        assert r.status_code == 200
        assert r.json()["delivered"] == [] and r.json()["started"] is None
        # a payload the wait's model refuses: 400, nothing stored
        r = await signed(gw, "review", {"pull_request": {"number": 1}, "review": {"nope": 1}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_INPUT"
        assert await status(ids["1"]) == "waiting-event"


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def test_duplicate_deliveries_do_nothing_across_gateways(tmp_path: Path) -> None:
    a, b = webhook_gateway(tmp_path), webhook_gateway(tmp_path)
    async with running(a), running(b):
        headers = {"x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
        first = await signed(a, "gh", {"sha": "abc123"}, **headers)
        assert first.status_code == 200 and first.json()["duplicate"] is False
        again = await signed(a, "gh", {"sha": "abc123"}, **headers)
        other = await signed(b, "gh", {"sha": "abc123"}, **headers)
        for r in (again, other):
            assert r.status_code == 200
            assert r.json()["duplicate"] is True and r.json()["started"] is None
        assert len(await runs(a)) == 1
        ping = await signed(a, "gh", {"zen": "Keep it simple."}, **{"x-github-event": "ping"})
        assert ping.status_code == 200 and ping.json()["ping"] is True
        assert ping.json()["started"] is None
        r = await signed(a, "gh", {})  # GitHub always names the delivery
        assert r.status_code == 400 and "x-github-delivery" in r.json()["error"]["message"]
        # a delivery whose handling failed is forgotten, so the retry is handled
        r = await signed(a, "gh", {"sha": 5}, **{"x-github-delivery": "d2"})
        assert r.status_code == 400
        r = await signed(a, "gh", {"sha": "ok"}, **{"x-github-delivery": "d2"})
        assert r.status_code == 200 and r.json()["duplicate"] is False


async def test_rotated_secrets(tmp_path: Path) -> None:
    gw = webhook_gateway(tmp_path)
    async with running(gw):
        body = b"{}"
        for secret, n in ((SECRET, "1"), ("old-secret", "2")):
            headers = {"x-hub-signature-256": hub_signature(body, secret), "x-github-delivery": n}
            assert (await post(gw, "gh", body, headers)).status_code == 200
        headers = {"x-hub-signature-256": hub_signature(body, "retired"), "x-github-delivery": "3"}
        assert (await post(gw, "gh", body, headers)).status_code == 401


def standard_headers(
    body: bytes, msg_id: str, ts: int, secret: str = STANDARD_SECRET
) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1,bm90IGl0 v1," + base64.b64encode(mac).decode(),
    }


async def test_standard_webhooks_and_their_timestamps(tmp_path: Path) -> None:
    gw = webhook_gateway(tmp_path)
    async with running(gw):
        body = b'{"type": "deploy", "data": {"sha": "s1"}}'
        now = int(time.time())
        r = await post(gw, "std", body, standard_headers(body, "msg_1", now))
        assert r.status_code == 200 and r.json()["started"]
        r = await post(gw, "std", body, standard_headers(body, "msg_1", now))
        assert r.json()["duplicate"] is True
        for ts, reason in ((now - 120, "stale_timestamp"), (now + 120, "future_timestamp")):
            r = await post(gw, "std", body, standard_headers(body, f"msg_{ts}", ts))
            assert r.status_code == 401 and r.json()["error"]["reason"] == reason
        tampered = standard_headers(body, "msg_2", now)
        r = await post(gw, "std", b'{"type": "other", "data": {}}', tampered)
        assert r.status_code == 401 and r.json()["error"]["reason"] == "mismatch"


async def test_stripe_signatures(tmp_path: Path) -> None:
    gw = webhook_gateway(tmp_path)
    async with running(gw):
        body = b'{"id": "evt_1", "type": "charge.succeeded", "data": {"object": {"sha": "ch_1"}}}'

        def header(ts: int) -> dict[str, str]:
            mac = hmac.new(b"whsec_stripe", f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
            return {"stripe-signature": f"t={ts},v1={mac},v0=deadbeef"}

        now = int(time.time())
        assert (await post(gw, "stripe", body, header(now))).status_code == 200
        again = await post(gw, "stripe", body, header(now + 1))  # a replay inside the window
        assert again.status_code == 200 and again.json()["duplicate"] is True
        r = await post(gw, "stripe", body, header(now - 3600))  # stale before it is a repeat
        assert r.status_code == 401 and r.json()["error"]["reason"] == "stale_timestamp"
        no_id = b'{"type": "charge.succeeded", "data": {"object": {}}}'
        mac = hmac.new(b"whsec_stripe", f"{now}.".encode() + no_id, hashlib.sha256).hexdigest()
        r = await post(gw, "stripe", no_id, {"stripe-signature": f"t={now},v1={mac}"})
        assert r.status_code == 400 and "delivery id field id" in r.json()["error"]["message"]


async def test_webhook_metrics(tmp_path: Path) -> None:
    gw = webhook_gateway(tmp_path)
    async with running(gw), http(gw, "op-token") as c:
        await signed(gw, "deploy", {})
        await post(gw, "deploy", b"{}", {"x-hub-signature-256": "sha256=00"})
        await signed(gw, "nope", {})
        text = (await c.get("/metrics")).text
        assert "smithers_gateway_webhooks_received_total 3.0" in text
        assert "smithers_gateway_webhooks_verified_total 1.0" in text
        assert 'smithers_gateway_webhooks_rejected_total{reason="invalid_signature"} 1.0' in text
        assert 'smithers_gateway_webhooks_rejected_total{reason="workflow_not_found"} 1.0' in text
        await signed(gw, "deploy", {"inputs": {"sha": 5}})  # the input model refuses it
        text = (await c.get("/metrics")).text
        assert 'smithers_gateway_webhooks_rejected_total{reason="invalid_payload"} 1.0' in text
        assert "server_error" not in text


def test_secrets_from_the_environment_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = webhook_gateway(tmp_path)
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    gw.register("env", wfs.deploy, webhook={"secret_env": "HOOK_SECRET"})
    assert gw.workflows["env"].webhook.all_secrets() == ["from-env"]  # type: ignore[union-attr]
    (tmp_path / "secret.txt").write_text("from-file\n")
    gw.register("file", wfs.deploy, webhook={"secret_file": str(tmp_path / "secret.txt")})
    assert gw.workflows["file"].webhook.all_secrets() == ["from-file"]  # type: ignore[union-attr]
    monkeypatch.delenv("HOOK_SECRET")
    with pytest.raises(SmithersError) as info:
        gw.register("env2", wfs.deploy, webhook={"secret_env": "HOOK_SECRET"})
    assert info.value.code == "INVALID_INPUT" and "HOOK_SECRET is not set" in info.value.message
    with pytest.raises(SmithersError):
        gw.register("none", wfs.deploy, webhook={"signature_header": "x-sig"})
    with pytest.raises(SmithersError) as info:  # the error names fields, never their values
        gw.register("leak", wfs.deploy, webhook={"secrets": ["hunter2"], "secret_file": "/no/such"})
    assert "hunter2" not in info.value.message and "/no/such" not in info.value.message
    assert "cannot read secret_file" in info.value.message
