"""The operator console in a real browser: Playwright (async API) driving Debian's Chromium
against a real gateway on 127.0.0.1 (ephemeral port, SQLite in tmp_path).

Nothing sleeps: every wait is one of Playwright's auto-waiting ``expect`` assertions, bounded
by its timeout. Screenshots of the main pages go to ``tests/artifacts/`` (git-ignored);
``docs/console.png`` is written when missing or when ``SMITHERS_UPDATE_DOCS_SHOT=1``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Seq, Task
from tests.gateway_helpers import db_events, http, rpc, running
from tests.ui_browser_helpers import (
    ARTIFACTS,
    DESKTOP,
    DOCS_SHOT,
    HOLD,
    PHONE,
    UI_TOKENS,
    PageErrors,
    browser_skip_reason,
    chromium,
    ui_gateway,
)
from tests.ui_browser_helpers import form as form_workflow

SKIP = browser_skip_reason()
pytestmark = [pytest.mark.anyio, pytest.mark.skipif(SKIP is not None, reason=SKIP or "")]

if SKIP is None:
    from playwright.async_api import expect

    expect.set_options(timeout=10_000)

WAIT = 10_000  # ms, the bound of every wait


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as b:
        yield b


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(WAIT)
    p = await context.new_page()
    errors = PageErrors(p)
    p.errors = errors
    try:
        yield p
    finally:
        await context.close()
    errors.check()  # no uncaught exception, no Content-Security-Policy refusal


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Any]:
    HOLD.clear()
    async with running(ui_gateway(tmp_path)) as g:
        yield g


def shot(name: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTIFACTS / f"{name}.png")


async def sign_in(page: Any, gw: Any, token: str = "op-token", path: str = "/console/") -> None:
    """Through the sign-in form, as a person would."""
    await page.goto(gw.url + path)
    await expect(page).to_have_url(re.compile(r"/console/signin\?next="))
    await page.get_by_label("Access token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(gw.url + path)


async def launch(client: Any, workflow: str, run_input: Any = None) -> str:
    res = await rpc(client, "launchRun", {"workflow": workflow, "input": run_input or {}})
    assert res.status_code == 200, res.text
    return str(res.json()["payload"]["runId"])


async def decide(client: Any, run_id: str, node: str, **extra: Any) -> None:
    params = {"runId": run_id, "nodeId": node, "iteration": 0, "approved": True, **extra}
    res = await rpc(client, "submitApproval", params)
    assert res.status_code == 200, res.text


def run_row(page: Any, run_id: str) -> Any:
    return page.locator(f'tr[data-run-id="{run_id}"]')


def log_entry(page: Any, event: str) -> Any:
    return page.locator(f'.log li[data-event="{event}"]')


# -- sign in, sign out, scopes --------------------------------------------------------------
async def test_sign_in_through_the_form_and_sign_out(gw: Any, page: Any) -> None:
    await page.goto(gw.url + "/console/runs")
    await expect(page).to_have_url(gw.url + "/console/signin?next=/console/runs")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.screenshot(path=shot("signin"))
    # a wrong token is reported on the page (the form is not sent)
    await page.get_by_label("Access token").fill("not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("UNAUTHORIZED")
    await expect(page).to_have_url(re.compile(r"/console/signin"))
    # the right one: the session cookie is set (HttpOnly) and the browser goes on to `next`
    await page.get_by_label("Access token").fill("op-token")
    await page.get_by_label("Access token").press("Enter")
    await expect(page).to_have_url(gw.url + "/console/runs")
    await expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    await expect(page.locator(".who")).to_contain_text("user:will")
    cookies = await page.context.cookies()
    session = [c for c in cookies if c["name"] == "smithers_session"]
    assert session and session[0]["httpOnly"], cookies
    assert "smithers_session" not in await page.evaluate("document.cookie")
    # sign out: the cookie is gone and the console sends the browser to sign in again
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/console/signin\?next="))
    assert not [c for c in await page.context.cookies() if c["name"] == "smithers_session"]
    await page.goto(gw.url + "/console/")
    await expect(page).to_have_url(re.compile(r"/console/signin\?next=/console/"))


async def test_read_only_token_sees_no_actions_and_the_server_refuses(gw: Any, page: Any) -> None:
    async with http(gw, "op-token") as client:
        gated = await launch(client, "gated")
        done = await launch(client, "deploy", {"sha": "r1"})
    await sign_in(page, gw, "reader")
    await expect(run_row(page, gated)).to_have_attribute("data-status", "waiting-approval")
    await expect(run_row(page, done)).to_have_attribute("data-status", "finished")
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Runs")).to_be_visible()
    await expect(nav.get_by_role("link", name="Launch")).to_have_count(0)
    await expect(nav.get_by_role("link", name="Schedules")).to_have_count(0)
    main = page.locator("main")
    await expect(main.get_by_role("button")).to_have_count(2)  # pager only
    await expect(main.get_by_role("button", name=re.compile("Cancel|Rerun|Resume"))).to_have_count(
        0
    )
    # the run page: no action, no signal form, no decision buttons
    await run_row(page, gated).get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Waiting for a decision")).to_be_visible()
    await expect(page.get_by_text("You may not decide approvals")).to_be_visible()
    await expect(log_entry(page, "approval.requested")).to_have_count(1)
    await expect(main.get_by_role("button")).to_have_count(0)
    await expect(page.get_by_role("heading", name="Send a signal")).to_have_count(0)
    # and the server refuses the action anyway
    answer = await page.evaluate(
        """async (runId) => {
            const r = await fetch("/v1/rpc/cancelRun", {
                method: "POST", credentials: "same-origin",
                headers: {"content-type": "application/json"},
                body: JSON.stringify({runId}),
            });
            return {status: r.status, body: await r.json()};
        }""",
        gated,
    )
    assert answer["status"] == 403, answer
    assert answer["body"]["error"]["code"] == "FORBIDDEN"


async def test_a_token_without_read_scope_is_refused(gw: Any, page: Any) -> None:
    await page.goto(gw.url + "/console/")
    await page.get_by_label("Access token").fill("no-read")
    async with page.expect_response(lambda r: r.url == gw.url + "/console/") as answer:
        await page.get_by_role("button", name="Sign in").click()
    response = await answer.value
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "FORBIDDEN"


# -- runs -----------------------------------------------------------------------------------
async def test_launch_from_the_generated_form_and_watch_it_finish_live(gw: Any, page: Any) -> None:
    HOLD["form"] = anyio.Event()
    await sign_in(page, gw)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Launch").click()
    await page.get_by_label("Workflow").select_option("form")
    form = page.get_by_role("form", name="Launch form")
    # fields generated from the input model, with its defaults
    await expect(form.get_by_label("Count")).to_have_value("2")
    await expect(form.get_by_label("Ratio")).to_have_value("0.5")
    await expect(form.get_by_label("Dry Run")).not_to_be_checked()
    await expect(form.get_by_label("Color")).to_have_value("green")
    await expect(form.get_by_label("Target")).to_have_attribute("required", "")
    await expect(form.get_by_label("Region")).to_have_value("eu")  # an enum model ($ref)
    await expect(form.get_by_label("Note")).to_have_value("")  # optional: null when empty
    limits = form.get_by_label("Limits")  # a nested model: JSON with its defaults
    assert json.loads(await limits.input_value()) == {"cpu": 2, "memory": "1Gi"}
    await form.get_by_label("Target").fill("staging")
    await form.get_by_label("Region").select_option("us")
    await limits.fill('{"cpu": 4, "memory": "2Gi"}')
    await form.get_by_label("Count").fill("3")
    await form.get_by_label("Dry Run").check()
    await form.get_by_label("Color").select_option(label="blue")
    await form.get_by_label("Tags").fill('["a", "b"')
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=shot("launch"), full_page=True)
    await form.get_by_role("button", name="Launch form").click()
    # invalid JSON is caught here: nothing is sent
    await expect(form.locator(".field-error:not([hidden])")).to_contain_text("invalid JSON")
    await expect(form.get_by_label("Tags")).to_have_attribute("aria-invalid", "true")
    await form.get_by_label("Tags").fill('["a", "b"]')
    await form.get_by_role("button", name="Launch form").click()
    await expect(page).to_have_url(re.compile(r"/console/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator('.timeline li[data-node="hold"]')).to_have_attribute(
        "data-state", "in-progress"
    )
    # the list, reached in the page (no reload), follows the run until it finishes
    await page.evaluate("window.__noReload = true")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Runs").click()
    await expect(run_row(page, run_id)).to_have_attribute("data-status", "running")
    HOLD["form"].set()
    await expect(run_row(page, run_id)).to_have_attribute("data-status", "finished")
    await expect(run_row(page, run_id).locator(".badge")).to_have_text("finished")
    assert await page.evaluate("window.__noReload === true")
    async with http(gw, "op-token") as client:
        out = await rpc(client, "getNodeOutput", {"runId": run_id, "nodeId": "prepare"})
    row = out.json()["payload"]["row"]
    assert row == {
        "target": "staging",
        "count": 3,
        "color": "blue",
        "tags": ["a", "b"],
        "region": "us",
        "cpu": 4,
    }


async def test_filters_and_pages(gw: Any, page: Any) -> None:
    async with http(gw, "op-token") as client:
        deploys = [await launch(client, "deploy", {"sha": f"s{i}"}) for i in range(12)]
        gated = await launch(client, "gated")
    await sign_in(page, gw)
    await page.get_by_label("Per page").select_option("10")
    rows = page.locator("table.runs tbody tr")
    await expect(rows).to_have_count(10)
    await expect(page.locator(".range")).to_have_text("Runs 1\u201310")
    await expect(page.get_by_role("button", name="← Previous")).to_be_disabled()
    await page.get_by_role("button", name="Next →").click()
    await expect(rows).to_have_count(3)
    await expect(page.locator(".range")).to_have_text("Runs 11\u201313")
    await expect(page.get_by_role("button", name="Next →")).to_be_disabled()
    assert "offset=10" in page.url
    await page.get_by_role("button", name="← Previous").click()
    await expect(rows).to_have_count(10)
    await page.get_by_label("Status").select_option("waiting-approval")
    await expect(rows).to_have_count(1)
    await expect(run_row(page, gated)).to_be_visible()
    await page.get_by_label("Status").select_option("")
    await page.get_by_label("Workflow").select_option("deploy")
    await page.get_by_label("Per page").select_option("20")
    await expect(rows).to_have_count(12)
    await expect(run_row(page, deploys[0])).to_have_attribute("data-status", "finished")


async def test_cancel_and_rerun_from_the_run_page(gw: Any, page: Any) -> None:
    async with http(gw, "op-token") as client:
        run_id = await launch(client, "gated")
    await sign_in(page, gw, path=f"/console/runs/{run_id}")
    await expect(page.locator(".run-status .badge")).to_have_text("waiting-approval")
    cancel = page.get_by_role("button", name=re.compile("^Cancel run"))
    await cancel.click()
    await expect(cancel).to_have_text("Confirm cancel")
    await cancel.click()
    await expect(page.locator(".run-status .badge")).to_have_text("cancelled")
    await expect(log_entry(page, "run.completed")).to_contain_text("cancelled")
    await page.get_by_role("button", name=re.compile("^Rerun run")).click()
    status = page.get_by_role("status").filter(has_text="Rerun of")
    await status.get_by_role("link").click()
    await expect(page).not_to_have_url(re.compile(run_id))
    await expect(page.locator(".run-status .badge")).to_have_text("waiting-approval")


# -- pause, retry, rewind (issue 19) ------------------------------------------------------------
STEP_GATE: dict[str, anyio.Event] = {}


class Step(BaseModel):
    ok: bool = True


async def _first_step(t: Any) -> Step:
    await STEP_GATE["first"].wait()
    return Step()


@workflow("steps")
def steps(ctx):  # type: ignore[no-untyped-def]
    """Two tasks; the first waits for ``STEP_GATE["first"]`` (set by the test)."""
    return Seq(
        Task("first", _first_step, output=Step), Task("second", lambda t: Step(), output=Step)
    )


def run_actions(page: Any) -> Any:
    return page.locator(".run-actions")


async def test_pause_from_the_run_page_then_retry_a_node(tmp_path: Path, page: Any) -> None:
    STEP_GATE["first"] = anyio.Event()
    gateway = ui_gateway(tmp_path)
    gateway.register("steps", steps)
    async with running(gateway) as gw, http(gw, "op-token") as client:
        # the server: pauseRun answers 200 on a running run, 409 RUN_NOT_ACTIVE on a finished one
        slow = await launch(client, "slow")
        paused = await rpc(client, "pauseRun", {"runId": slow})
        assert paused.status_code == 200, paused.text
        assert paused.json()["payload"] == {"runId": slow, "status": "pausing"}
        await rpc(client, "cancelRun", {"runId": slow})
        done = await launch(client, "deploy", {"sha": "p1"})
        run_id = await launch(client, "steps")
        await sign_in(page, gw, path=f"/console/runs/{done}")
        await expect(page.locator(".run-status .badge")).to_have_text("finished")
        await expect(run_actions(page).get_by_role("button", name="Pause")).to_have_count(0)
        refused = await rpc(client, "pauseRun", {"runId": done})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "RUN_NOT_ACTIVE"
        # the console: Pause for the running run; it parks once its running task finishes
        await page.goto(f"{gw.url}/console/runs/{run_id}")
        first = page.locator('.timeline li[data-node="first"]')
        await expect(first).to_have_attribute("data-state", "in-progress")
        await expect(first.get_by_role("button", name="Retry node first")).to_be_hidden()
        await page.get_by_role("button", name=re.compile("^Pause run")).click()
        await expect(page.get_by_role("status").filter(has_text="pausing")).to_be_visible()
        STEP_GATE["first"].set()
        await expect(page.locator(".run-status .badge")).to_have_text("paused")
        await expect(page.locator('.timeline li[data-node="second"]')).to_have_attribute(
            "data-state", "pending"
        )
        await expect(run_actions(page).get_by_role("button", name="Pause")).to_have_count(0)
        resume = run_actions(page).get_by_role("button", name=re.compile("^Resume run"))
        await expect(resume).to_be_visible()
        # a paused run does not execute: each node may be retried, dependents reset by default
        reset = first.get_by_label("reset dependents")
        await expect(reset).to_be_checked()
        await reset.uncheck()
        retry = first.get_by_role("button", name="Retry node first")
        async with page.expect_request(re.compile(r"/v1/rpc/retryTask$")) as sent:
            await retry.click()
        body = json.loads((await sent.value).post_data or "{}")
        assert body == {
            "runId": run_id,
            "nodeId": "first",
            "iteration": 0,
            "resetDependents": False,
        }
        await expect(page.get_by_role("status").filter(has_text="Retry of first")).to_be_visible()
        await expect(log_entry(page, "retry.task_started")).to_have_count(1)
        await expect(page.locator(".run-status .badge")).to_have_text("finished")
        await expect(log_entry(page, "run.completed")).to_contain_text("finished")


async def test_retry_a_node_of_a_finished_run(gw: Any, page: Any) -> None:
    async with http(gw, "op-token") as client:
        run_id = await launch(client, "deploy", {"sha": "r2"})
        await sign_in(page, gw, path=f"/console/runs/{run_id}")
        await expect(log_entry(page, "run.completed")).to_have_count(1)
        await expect(page.locator(".log-panel")).to_have_attribute("data-stream", "ended")
        ship = page.locator('.timeline li[data-node="ship"]')
        await ship.get_by_role("button", name="Retry node ship").click()
        notice = page.get_by_role("status").filter(has_text="Retry of ship requested")
        await expect(notice).to_contain_text("reset: ship")
        # the log, ended with the run, listens on and shows the node running again
        await expect(log_entry(page, "retry.task_started")).to_have_count(1)
        await expect(log_entry(page, "run.completed")).to_have_count(2)
        await expect(page.locator(".run-status .badge")).to_have_text("finished")
        await expect(page.locator("table.attempts tbody tr")).to_have_count(2)  # a new attempt
        attempts = await rpc(client, "attempts.list", {"runId": run_id})
        assert sorted(a["attempt"] for a in attempts.json()["payload"]) == [1, 2], attempts.text
        # the server refuses a retry while the run executes (the page shows no button then)
        slow = await launch(client, "slow")
        active = await rpc(client, "retryTask", {"runId": slow, "nodeId": "wait"})
        assert active.status_code == 409, active.text
        assert active.json()["error"]["code"] == "RUN_ACTIVE"
        await rpc(client, "cancelRun", {"runId": slow})


async def test_rewind_from_the_run_page(gw: Any, page: Any, browser: Any) -> None:
    async with http(gw, "op-token") as client:
        run_id = await launch(client, "deploy", {"sha": "t1"})
    await sign_in(page, gw, path=f"/console/runs/{run_id}")
    await expect(page.locator(".run-status .badge")).to_have_text("finished")
    await expect(log_entry(page, "run.completed")).to_have_count(1)
    await expect(page.locator(".log-panel")).to_have_attribute("data-stream", "ended")
    frames = page.locator(".frames > li")
    await expect(frames.first).to_be_visible()
    target = min(
        int(n) for n in await frames.evaluate_all("els => els.map(e => e.dataset.frameNo)")
    )
    rewind = page.get_by_role("button", name=f"Rewind to frame {target}")
    await rewind.click()
    await expect(rewind).to_have_text(f"Confirm rewind to frame {target}")
    await rewind.click()
    await expect(
        page.get_by_role("status").filter(has_text=f"Rewound to frame {target}")
    ).to_be_visible()
    jumped = log_entry(page, "run.time_travel_jumped")
    await expect(jumped).to_contain_text(f"to frame {target} by user:will")
    await expect(log_entry(page, "run.completed")).to_have_count(2)
    await expect(page.locator(".run-status .badge")).to_have_text("finished")
    await expect(page.locator(".log-panel")).to_have_attribute("data-stream", "ended")
    events = await page.locator(".log li[data-event]").evaluate_all(
        "els => els.map(e => e.dataset.event)"
    )
    after = events[events.index("run.time_travel_jumped") :]
    # the jump, then the re-run node's events, then the run's end
    assert {"node.started", "node.finished"} <= set(after), events
    assert after[-1] == "run.completed", events
    # a read-only token sees the frames but no rewind, pause or retry button
    context = await browser.new_context(viewport=DESKTOP)
    try:
        reader = await context.new_page()
        errors = PageErrors(reader)
        await sign_in(reader, gw, "reader", path=f"/console/runs/{run_id}")
        await expect(reader.locator(".run-status .badge")).to_have_text("finished")
        await expect(reader.locator(".frames > li").first).to_be_visible()
        await expect(reader.locator('.timeline li[data-node="ship"]')).to_be_visible()
        main = reader.locator("main")
        await expect(main.get_by_role("button")).to_have_count(0)
        await expect(main.get_by_role("checkbox")).to_have_count(0)
        errors.check()
    finally:
        await context.close()


async def test_only_the_owner_or_an_admin_may_rewind(tmp_path: Path, page: Any) -> None:
    tokens = {**UI_TOKENS, "sam-token": {"role": "operator", "scopes": ["*"], "userId": "user:sam"}}
    gateway = ui_gateway(tmp_path, auth={"mode": "token", "tokens": tokens})
    async with running(gateway) as gw:
        async with http(gw, "sam-token") as client:
            run_id = await launch(client, "deploy", {"sha": "o1"})
        await sign_in(page, gw, path=f"/console/runs/{run_id}")
        await expect(page.locator(".run-status .badge")).to_have_text("finished")
        rewind = page.get_by_role("button", name=re.compile("^Rewind to frame")).first
        await rewind.click()
        await rewind.click()
        alert = page.locator(".messages").get_by_role("alert")
        await expect(alert).to_contain_text("Rewind refused: Unauthorized")
        await expect(alert).to_contain_text("Only the run owner or an admin may rewind this run.")
        await expect(page.get_by_text("Your session has ended")).to_have_count(0)
        await expect(log_entry(page, "run.time_travel_jumped")).to_have_count(0)


# -- approvals and signals --------------------------------------------------------------------
async def test_an_approval_decided_in_the_inbox_resumes_its_run(gw: Any, page: Any) -> None:
    async with http(gw, "op-token") as client:
        await launch(client, "gated")
        await launch(client, "pick")
        await launch(client, "order")
    await sign_in(page, gw)
    await expect(page.get_by_role("link", name="Approvals (3 pending)")).to_be_visible()
    await page.get_by_role("link", name="Approvals (3 pending)").click()
    card = page.get_by_role("article", name="Ship it?")
    await expect(card).to_be_visible()
    await expect(page.locator("article.approval")).to_have_count(3)
    await page.screenshot(path=shot("approvals"))
    await card.get_by_label("Note (optional)").fill("looks good")
    await card.get_by_role("button", name="Approve: Ship it?").click()
    await expect(card).to_have_count(0)
    decided = page.locator(".decided li").first
    await expect(decided).to_contain_text("approved by user:will")
    await expect(decided).to_contain_text("looks good")
    await expect(page.get_by_role("link", name="Approvals (2 pending)")).to_be_visible()
    # the run went on to its signal
    await decided.get_by_role("link").click()
    await expect(page.locator(".run-status .badge")).to_have_text("waiting-event")
    decision = log_entry(page, "approval.decided")
    await expect(decision).to_contain_text("ApprovalGranted")
    await expect(decision).to_contain_text("by user:will")
    await expect(decision).to_contain_text("looks good")


async def test_select_and_rank_approvals(gw: Any, page: Any) -> None:
    async with http(gw, "op-token") as client:
        picked = await launch(client, "pick")
        ranked = await launch(client, "order")
        await sign_in(page, gw, path="/console/approvals")
        select = page.get_by_role("article", name="Pick a region")
        await select.get_by_role("button", name="Approve selection: Pick a region").click()
        await expect(select.get_by_role("alert")).to_have_text("Choose an option before approving.")
        await select.get_by_label("United States").check()
        await select.get_by_role("button", name="Approve selection: Pick a region").click()
        await expect(select).to_have_count(0)
        rank = page.get_by_role("article", name="Order the waves")
        ranking = rank.get_by_role("list", name="Ranking, best first")
        await expect(ranking.locator(".rank-label strong")).to_have_text(["Alpha", "Beta", "Gamma"])
        # by keyboard: Gamma up twice, then Alpha down once
        await rank.get_by_role("button", name="Move Gamma up").focus()
        await page.keyboard.press("Enter")
        await expect(rank.get_by_role("button", name="Move Gamma up")).to_be_focused()
        await page.keyboard.press("Enter")
        await rank.get_by_role("button", name="Move Alpha down").click()
        await expect(ranking.locator(".rank-label strong")).to_have_text(["Gamma", "Beta", "Alpha"])
        await rank.get_by_label("Note (optional)").fill("gamma first")
        await rank.get_by_role("button", name="Approve ranking: Order the waves").click()
        await expect(rank).to_have_count(0)
        await expect(page.locator(".decided li")).to_have_count(2)
        await expect(page.locator(".decided")).to_contain_text("selected us")
        await expect(page.locator(".decided")).to_contain_text("ranked gamma > beta > alpha")
        # the runs finished with the decisions as the nodes' outputs
        await page.goto(f"{gw.url}/console/runs/{picked}")
        await expect(page.locator(".run-status .badge")).to_have_text("finished")
        await page.locator('.timeline li[data-node="region"] summary').click()
        await expect(page.locator('.timeline li[data-node="region"] pre').first).to_contain_text(
            '"selected": "us"'
        )
        out = await rpc(client, "getNodeOutput", {"runId": ranked, "nodeId": "waves"})
        assert out.json()["payload"]["row"]["ranked"] == ["gamma", "beta", "alpha"]
        assert out.json()["payload"]["row"]["notes"] == "gamma first"


async def test_a_signal_sent_from_the_run_page_completes_a_waiting_run(gw: Any, page: Any) -> None:
    async with http(gw, "op-token") as client:
        run_id = await launch(client, "gated")
        await decide(client, run_id, "gate")
    await sign_in(page, gw, path=f"/console/runs/{run_id}")
    await expect(page.locator(".run-status .badge")).to_have_text("waiting-event")
    form = page.get_by_role("form", name="Send a signal")
    await expect(form.get_by_label("Signal name")).to_have_value("go")
    # invalid JSON never leaves the page
    await form.get_by_label("Payload (JSON)").fill('{"msg": ')
    await form.get_by_role("button", name="Send signal").click()
    await expect(form.locator(".field-error:not([hidden])")).to_contain_text(
        "Payload is not valid JSON"
    )
    # the server's refusal is shown with its code and issues
    await form.get_by_label("Payload (JSON)").fill('{"msg": 1}')
    await form.get_by_role("button", name="Send signal").click()
    alert = form.get_by_role("alert")
    await expect(alert).to_contain_text("INVALID_INPUT")
    await expect(alert).to_contain_text("msg: Input should be a valid string")
    await page.screenshot(path=shot("run"), full_page=True)
    await form.get_by_label("Payload (JSON)").fill('{"msg": "ship it"}')
    await form.get_by_role("button", name="Send signal").click()
    await expect(form.get_by_role("status")).to_contain_text("Signal go delivered")
    await expect(page.locator(".run-status .badge")).to_have_text("finished")
    await expect(log_entry(page, "signal.received")).to_contain_text("go")
    await expect(log_entry(page, "run.completed")).to_contain_text("finished")
    await expect(page.locator(".log-panel")).to_have_attribute("data-stream", "ended")
    # attempts, outputs and frames of the finished run
    await expect(page.locator("table.attempts tbody tr")).to_have_count(3)
    await page.locator('.timeline li[data-node="go"] summary').click()
    await expect(page.locator('.timeline li[data-node="go"] pre').first).to_contain_text(
        '"msg": "ship it"'
    )
    await page.locator(".frames details").first.locator("summary").click()
    await expect(page.locator(".frames .tree").first).to_contain_text("smithers:workflow")


async def test_a_dropped_websocket_resumes_without_gap_or_duplicate(
    gw: Any, page: Any, tmp_path: Path
) -> None:
    async with http(gw, "op-token") as client:
        run_id = await launch(client, "gated")
        await sign_in(page, gw, path=f"/console/runs/{run_id}")
        panel = page.locator(".log-panel")
        await expect(log_entry(page, "run.status_changed")).to_have_count(1)
        await expect(panel).to_have_attribute("data-stream", "live")
        # the server drops every socket; the run moves on while the console is away
        gw.context.sockets.close_all(1012, "test")
        await decide(client, run_id, "gate", note="while away")
        sent = await rpc(
            client, "submitSignal", {"runId": run_id, "signalName": "go", "payload": {}}
        )
        assert sent.status_code == 200, sent.text
        await expect(log_entry(page, "run.completed")).to_have_count(1)
    await expect(panel).to_have_attribute("data-stream", "ended")
    assert int(await panel.get_attribute("data-reconnects") or 0) >= 1
    seqs = [
        int(s)
        for s in await page.locator(".log li[data-seq]").evaluate_all(
            "els => els.map(e => e.dataset.seq)"
        )
    ]
    persisted = len(db_events(tmp_path / "gw.db", run_id))
    assert seqs == list(range(1, persisted + 1)), seqs
    decision = log_entry(page, "approval.decided")
    await expect(decision.locator(".ev-name")).to_have_text("ApprovalGranted")
    await expect(decision.locator(".ev-text")).to_have_text("gate by user:will “while away”")


# -- schedules, theme, screenshots --------------------------------------------------------------
async def test_add_trigger_and_remove_a_cron_schedule(gw: Any, page: Any) -> None:
    await sign_in(page, gw, path="/console/crons")
    form = page.get_by_role("form", name="Add a schedule")
    await form.get_by_label("Workflow").select_option("deploy")
    await form.get_by_label("Cron pattern").fill("not a pattern")
    await form.get_by_role("button", name="Add schedule").click()
    await expect(page.get_by_role("alert")).to_contain_text("INVALID_INPUT")
    await form.get_by_label("Cron pattern").fill("*/10 * * * *")
    await form.get_by_label("Schedule id (optional)").fill("nightly")
    await form.get_by_role("button", name="Add schedule").click()
    row = page.locator('tr[data-cron-id="nightly"]')
    await expect(row).to_contain_text("*/10 * * * *")
    await expect(row).to_contain_text("deploy")
    await page.screenshot(path=shot("crons"))
    await row.get_by_role("button", name="Run nightly now").click()
    triggered = page.get_by_role("status").filter(has_text="Schedule nightly triggered")
    await expect(triggered.get_by_role("link")).to_be_visible()
    remove = row.get_by_role("button", name="Remove nightly")
    await remove.click()
    await expect(remove).to_have_text("Confirm remove")
    await remove.click()
    await expect(row).to_have_count(0)
    await expect(page.get_by_text("No schedules yet.")).to_be_visible()


async def test_theme_switch_and_keyboard(gw: Any, page: Any) -> None:
    await sign_in(page, gw)
    html = page.locator("html")
    await page.goto(gw.url + "/console/?theme=dark")
    await expect(html).to_have_attribute("data-theme", "dark")
    toggle = page.get_by_role("button", name="Switch to light theme")
    await toggle.click()
    await expect(html).to_have_attribute("data-theme", "light")
    assert await page.evaluate("localStorage.getItem('smithers-theme')") == "light"
    await page.goto(gw.url + "/console/")
    await expect(html).to_have_attribute("data-theme", "light")
    await page.get_by_role("button", name="Switch to dark theme").click()
    await page.reload()
    await expect(html).to_have_attribute("data-theme", "dark")
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(14, 17, 22)", background
    # keyboard: the skip link comes first, then the navigation, with a visible focus ring
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    focused = page.get_by_role("navigation", name="Main").get_by_role("link", name="Runs")
    await expect(focused).to_be_focused()
    outline = await focused.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline == "solid", outline
    await (
        page.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Launch")
        .press("Enter")
    )
    await expect(page.get_by_role("heading", name="Launch a run")).to_be_focused()


async def test_screenshots_of_the_runs_list(gw: Any, page: Any) -> None:
    """A list with runs in several states, light and dark, desktop and phone."""
    async with http(gw, "op-token") as client:
        for sha in ("4f2c9e1", "b71d0aa"):
            await launch(client, "deploy", {"sha": sha})
        await launch(client, "broken")
        slow = await launch(client, "slow")
        await launch(client, "pick")
        await launch(client, "gated")
        cancelled = await launch(client, "gated")
        await rpc(client, "cancelRun", {"runId": cancelled})
        await launch(client, "deploy", {"sha": "9e0b3c4"})
        await sign_in(page, gw, path="/console/?theme=light")
        await expect(page.locator("table.runs tbody tr")).to_have_count(8)
        await expect(run_row(page, cancelled)).to_have_attribute("data-status", "cancelled")
        await expect(page.locator(".live")).to_have_text("Live")
        await page.screenshot(path=shot("runs-light"))
        if os.environ.get("SMITHERS_UPDATE_DOCS_SHOT") or not DOCS_SHOT.exists():
            await page.screenshot(path=str(DOCS_SHOT))
        await page.goto(gw.url + "/console/?theme=dark")
        await expect(page.locator("table.runs tbody tr")).to_have_count(8)
        await page.screenshot(path=shot("runs-dark"))
        await page.set_viewport_size(PHONE)
        await page.goto(gw.url + "/console/?theme=light")
        await expect(page.locator("table.runs tbody tr")).to_have_count(8)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width  # nothing wider than the phone
        await page.screenshot(path=shot("runs-phone"), full_page=True)
        await rpc(client, "cancelRun", {"runId": slow})


async def test_a_workflow_page_launches_and_lists_its_runs(tmp_path: Path, page: Any) -> None:
    HOLD.clear()
    HOLD["form"] = anyio.Event()
    HOLD["form"].set()
    gateway = ui_gateway(tmp_path)
    gateway.register("form", form_workflow, ui=True)
    async with running(gateway) as gw:
        await page.goto(gw.url + "/workflows/form")
        sign = page.get_by_role("alert").get_by_role("link", name="Sign in")
        await expect(sign).to_have_attribute("href", "/console/signin?next=%2Fworkflows%2Fform")
        await sign.click()
        await page.get_by_label("Access token").fill("op-token")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(gw.url + "/workflows/form")
        form = page.get_by_role("form", name="Launch form")
        await form.get_by_label("Target").fill("prod")
        await form.get_by_role("button", name="Launch form").click()
        await expect(form.get_by_role("status")).to_contain_text("Run started")
        rows = page.locator("table.runs tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-status", "finished")
