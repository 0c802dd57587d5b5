"""Helpers of the browser tests of the operator console (tests/test_ui_browser.py): a gateway
with the UI, REST and cron plugins, tokens of several scopes, workflows made for the console,
and Playwright's Chromium (Debian's binary; never a downloaded one)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import anyio
import smithers_cron
import smithers_rest
from pydantic import BaseModel, Field

import smithers_ui
from smithers_core.gateway import Gateway
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Approval, Seq, Task
from tests.gateway_helpers import TOKENS, make_gateway, plugin_host

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DOCS_SHOT = Path(__file__).resolve().parent.parent / "docs" / "console.png"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

UI_TOKENS: dict[str, Any] = {
    **TOKENS,
    "reader": {"role": "viewer", "scopes": ["run:read"], "userId": "user:rita"},
    "no-read": {"role": "bot", "scopes": ["signal:submit"], "userId": "user:bot"},
}


def chromium_path() -> str | None:
    """Debian's Chromium (``apt-get install chromium``), if installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None. Under CI a missing browser is a
    failure, not a skip (``.ci/run`` installs it)."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            return None  # let the test fail on the import
        return "playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None and not os.environ.get("CI"):
        return "no chromium binary (apt-get install chromium); CI installs it"
    return None


# -- workflows made for the console ---------------------------------------------------------
HOLD: dict[str, anyio.Event] = {}
"""Tasks of ``form`` wait on ``HOLD["form"]`` (set by the test) before they finish."""


class Region(StrEnum):
    eu = "eu"
    us = "us"


class Limits(BaseModel):
    cpu: int = 2
    memory: str = "1Gi"


class LaunchInput(BaseModel):
    target: str = Field(description="Where to ship")
    count: int = 2
    ratio: float = 0.5
    dry_run: bool = False
    color: Literal["red", "green", "blue"] = "green"
    tags: list[str] = Field(default_factory=list)
    note: str | None = None
    region: Region = Region.eu
    limits: Limits = Field(default_factory=Limits)


class Prepared(BaseModel):
    target: str
    count: int
    color: str
    tags: list[str]
    region: str
    cpu: int


class Held(BaseModel):
    released: bool


def _prepare(t: Any) -> Prepared:
    i = t.input
    return Prepared(
        target=i.target,
        count=i.count,
        color=i.color,
        tags=i.tags,
        region=i.region.value,
        cpu=i.limits.cpu,
    )


async def _hold(t: Any) -> Held:
    gate = HOLD.get("form")
    if gate is None:
        gate = HOLD["form"] = anyio.Event()
    await gate.wait()
    return Held(released=True)


@workflow("form", input=LaunchInput)
def form(ctx):  # type: ignore[no-untyped-def]
    """Prepare a release from a form, then hold until released."""
    return Seq(Task("prepare", _prepare, output=Prepared), Task("hold", _hold, output=Held))


class Done(BaseModel):
    ok: bool = True


@workflow("pick")
def pick(ctx):  # type: ignore[no-untyped-def]
    """Choose one region (select mode)."""
    return Seq(
        Approval(
            "region",
            title="Pick a region",
            summary="Where should the canary go?",
            mode="select",
            options=[
                {"key": "eu", "label": "Europe", "summary": "Frankfurt"},
                {"key": "us", "label": "United States", "summary": "Virginia"},
                {"key": "ap", "label": "Asia Pacific"},
            ],
        ),
        Task("after", lambda t: Done(), output=Done),
    )


@workflow("order")
def order(ctx):  # type: ignore[no-untyped-def]
    """Rank the rollout waves (rank mode)."""
    return Seq(
        Approval(
            "waves",
            title="Order the waves",
            mode="rank",
            options=[
                {"key": "alpha", "label": "Alpha"},
                {"key": "beta", "label": "Beta"},
                {"key": "gamma", "label": "Gamma"},
            ],
        ),
        Task("after", lambda t: Done(), output=Done),
    )


def _explode(t: Any) -> Done:
    raise RuntimeError("the build broke")


@workflow("broken")
def broken(ctx):  # type: ignore[no-untyped-def]
    """Always fails."""
    return Seq(Task("build", _explode, output=Done))


def ui_gateway(tmp_path: Path, **options: Any) -> Gateway:
    """A gateway with core's defaults, tokens, the REST, cron and UI plugins, the fixture
    workflows and the console's own."""
    host = plugin_host()
    host.register(smithers_rest, "smithers_rest")
    host.register(smithers_cron, "smithers_cron")
    host.register(smithers_ui, "smithers_ui")
    gw = make_gateway(tmp_path, tokens=UI_TOKENS, plugins=host, **options)
    for wf in (form, pick, order, broken):
        gw.register(wf.name, wf)
    return gw


# -- the browser ----------------------------------------------------------------------------
@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Playwright's Chromium on Debian's binary, headless."""
    from playwright.async_api import async_playwright

    path = chromium_path()
    if path is None:
        raise AssertionError("chromium is required (apt-get install chromium)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=path,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            await browser.close()


class PageErrors:
    """What went wrong in a page: uncaught exceptions and CSP violations (console errors)."""

    def __init__(self, page: Any) -> None:
        self.items: list[str] = []
        page.on("pageerror", lambda exc: self.items.append(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        text = msg.text
        # failed requests the tests provoke (401/403 answers) are fine; CSP refusals are not
        if "Failed to load resource" in text:
            return
        self.items.append(f"console: {text}")

    def check(self) -> None:
        assert not self.items, self.items
