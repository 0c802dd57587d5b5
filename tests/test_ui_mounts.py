"""The UI mounts of plugin ``smithers_ui`` and core's browser session handoff (reference 9.5),
over HTTP: the ``next`` rules and cookie flags of ``/v1/auth/session``, sign-out, the console's
auth (sign-in redirect for browsers, JSON errors for the rest, the read scope), the shell and
its boot config, assets, headers, the longest mount, workflow pages and their redirect, custom
gateway UIs (a folder or an HTML file) and ``GET /``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import smithers_cron

import smithers_ui
from smithers_core.errors import SmithersError
from smithers_core.gateway import Gateway
from smithers_core.gateway.session import safe_next
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import TOKENS, http, make_gateway, plugin_host, running

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

UI_TOKENS: dict[str, Any] = {
    **TOKENS,
    "reader": {"role": "viewer", "scopes": ["run:read"], "userId": "user:rita"},
    "crons-only": {"role": "viewer", "scopes": ["cron:read"]},
}
HTML = {"accept": "text/html,application/xhtml+xml"}


def ui_gateway(tmp_path: Path, *, auth: bool = True, **options: Any) -> Gateway:
    host = plugin_host()
    host.register(smithers_ui, "smithers_ui")
    return make_gateway(tmp_path, tokens=UI_TOKENS if auth else None, plugins=host, **options)


def boot_of(page: str) -> dict[str, Any]:
    found = re.search(r"globalThis\.__SMITHERS_GATEWAY_UI__ = (\{.*?\});\(function", page)
    assert found, page[:500]
    value: dict[str, Any] = json.loads(found.group(1))
    return value


def nonce_of(response: httpx.Response) -> str:
    csp = response.headers["content-security-policy"]
    found = re.search(r"'nonce-([^']+)'", csp)
    assert found, csp
    return found.group(1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/console/runs?x=1", "/console/runs?x=1"),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("/a\\b", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("relative/path", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_next_must_be_a_same_origin_path(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


async def test_session_handoff_sets_the_cookie(tmp_path: Path) -> None:
    async with running(ui_gateway(tmp_path)) as gw, http(gw) as client:
        r = await client.get("/v1/auth/session", params={"token": "op-token", "next": "/console/"})
        assert r.status_code == 200
        assert r.headers["set-cookie"] == (
            "smithers_session=op-token; HttpOnly; Path=/; SameSite=Lax"
        )
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["referrer-policy"] == "no-referrer"
        nonce = nonce_of(r)
        assert f'<script nonce="{nonce}">location.replace("/console/");</script>' in r.text
        assert 'content="0;url=/console/"' in r.text

        # Secure behind a TLS-terminating proxy
        r = await client.get(
            "/v1/auth/session?token=op-token&next=/console/",
            headers={"x-forwarded-proto": "https"},
        )
        assert r.headers["set-cookie"].endswith("; Secure")

        # an unsafe next goes to /, and a token with odd characters is URL-encoded
        r = await client.get("/v1/auth/session?token=op-token&next=//evil.example")
        assert 'location.replace("/")' in r.text

        # a bad token is the gateway's JSON error, and no cookie
        r = await client.get("/v1/auth/session?token=nope&next=/console/")
        assert r.status_code == 401 and "set-cookie" not in r.headers
        assert r.json()["error"]["code"] == "UNAUTHORIZED"
        client.cookies.clear()  # the jar kept the cookie of the first answer
        r = await client.get("/v1/auth/session?next=/console/")
        assert r.status_code == 401

        # the cookie now authenticates the console and the API
        async with http(gw, headers={"cookie": "smithers_session=op-token"}) as signed:
            assert (await signed.get("/console/")).status_code == 200
            assert (await signed.post("/v1/rpc/listRuns", json={})).status_code == 200

        r = await client.post("/v1/auth/logout")
        assert r.status_code == 200 and r.json() == {"ok": True}
        assert r.headers["set-cookie"] == (
            "smithers_session=; HttpOnly; Path=/; SameSite=Lax; Max-Age=0"
        )


async def test_session_with_auth_mode_none(tmp_path: Path) -> None:
    async with running(ui_gateway(tmp_path, auth=False)) as gw, http(gw) as client:
        r = await client.get("/v1/auth/session?next=/console/runs")
        assert r.status_code == 200 and "set-cookie" not in r.headers
        assert 'location.replace("/console/runs")' in r.text
        assert (await client.get("/console/")).status_code == 200  # no auth: open


async def test_the_console_requires_auth(tmp_path: Path) -> None:
    async with running(ui_gateway(tmp_path)) as gw, http(gw) as anonymous:
        # a browser is sent to the sign-in page, the page it asked for kept
        r = await anonymous.get("/console/runs/abc?status=failed", headers=HTML)
        assert r.status_code == 302
        assert r.headers["location"] == "/console/signin?next=/console/runs/abc%3Fstatus%3Dfailed"
        # an API client gets the JSON error with its status
        r = await anonymous.get("/console/")
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        # the sign-in page itself is public: a form posting to the session handoff
        r = await anonymous.get("/console/signin?next=/console/runs")
        assert r.status_code == 200
        boot = boot_of(r.text)
        assert boot["props"] == {"signIn": True, "consolePath": "/console"}
        assert (await anonymous.get("/console/signin/__smithers_ui/client.js")).status_code == 200
        async with http(gw, "crons-only") as no_read:
            r = await no_read.get("/console/", headers=HTML)
            assert r.status_code == 403
            assert r.json()["error"]["requiredScope"] == "run:read"


async def test_the_shell_and_its_boot_config(tmp_path: Path) -> None:
    async with (
        running(ui_gateway(tmp_path)) as gw,
        http(gw, "reader") as reader,
        http(gw, "op-token") as operator,
    ):
        for path in ("/console", "/console/", "/console/runs/x/y"):
            r = await reader.get(path)
            assert r.status_code == 200, path
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self' 'nonce-" in csp and "object-src 'none'" in csp
        assert "unsafe-inline" not in csp
        nonce = nonce_of(r)
        # exactly one inline script, carrying the nonce; the app is a module from the mount
        assert r.text.count("<script") == 2
        assert f'<script nonce="{nonce}">' in r.text
        assert '<script type="module" src="/console/__smithers_ui/client.js">' in r.text
        boot = boot_of(r.text)
        assert boot == {
            "apiVersion": "v1",
            "kind": "operator",
            "workflowKey": None,
            "mountPath": "/console",
            "rpcPath": "/v1/rpc",
            "wsPath": "/",
            "assetBasePath": "/console/__smithers_ui/",
            "props": boot["props"],
        }
        assert boot["props"]["identity"] == {
            "role": "viewer",
            "userId": "user:rita",
            "scopes": ["run:read"],
        }
        assert boot["props"]["can"]["listRuns"] is True
        assert boot["props"]["can"]["launchRun"] is False
        assert boot["props"]["can"]["submitApproval"] is False
        op_boot = boot_of((await operator.get("/console/")).text)
        assert all(op_boot["props"]["can"].values())
        # a fresh nonce per response
        assert nonce_of(await reader.get("/console/")) != nonce

        js = await reader.get("/console/__smithers_ui/client.js")
        assert js.status_code == 200
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        assert js.headers["cache-control"] == "no-store"
        css = await reader.get("/console/__smithers_ui/theme.css")
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        for unknown in ("nope.js", "%2e%2e/mounts.py", ".hidden", "a/%2e%2e/%2e%2e/app.py", ""):
            r = await reader.get("/console/__smithers_ui/" + unknown)
            assert r.status_code == 404, unknown
            assert r.text == "Not Found"
            assert r.headers["x-content-type-options"] == "nosniff"


async def test_values_in_the_boot_config_cannot_close_the_script(tmp_path: Path) -> None:
    hostile = {"title": "</script><script>alert(1)</script>", "note": "<!--"}
    gw = ui_gateway(tmp_path, operator_ui={"path": "/ops", "title": "A & B", "props": hostile})
    async with running(gw), http(gw, "op-token") as client:
        r = await client.get("/ops/")
        assert r.status_code == 200
        assert "<script>alert(1)" not in r.text
        assert "<title>A &amp; B</title>" in r.text
        assert boot_of(r.text)["props"]["title"] == hostile["title"]
        assert (await client.get("/console/")).status_code == 404  # moved to /ops


async def test_get_root_and_the_index(tmp_path: Path) -> None:
    async with running(ui_gateway(tmp_path)) as gw, http(gw) as client:
        r = await client.get("/")
        assert r.status_code == 302 and r.headers["location"] == "/console/"
    no_console = ui_gateway(tmp_path / "b", operator_ui=False)
    async with running(no_console) as gw, http(gw) as client:
        r = await client.get("/")
        assert r.status_code == 200 and "/health" in r.text
        assert (await client.get("/console/")).status_code == 404
    at_root = ui_gateway(tmp_path / "c", ui=True)
    async with running(at_root) as gw, http(gw, "op-token") as client:
        r = await client.get("/")
        assert r.status_code == 200 and boot_of(r.text)["mountPath"] == "/"
        assert boot_of((await client.get("/runs/x")).text)["kind"] == "operator"
        assert (await client.get("/console/")).status_code == 200
        assert (await client.get("/health")).json()["ok"] is True  # earlier routes still win


async def test_workflow_pages(tmp_path: Path) -> None:
    ui_dir = tmp_path / "deploy-ui"
    ui_dir.mkdir()
    (ui_dir / "client.js").write_text("export {};\n")
    (ui_dir / "style.css").write_text("body{}\n")
    gw = ui_gateway(tmp_path / "gw")
    gw.register("gated", wfs.gated, ui=True)
    gw.register(
        "deploy",
        wfs.deploy,
        ui={"entry": str(ui_dir), "path": "/apps/deploy", "title": "Deploy", "props": {"a": 1}},
    )
    async with running(gw), http(gw) as anonymous:
        # public pages (their API calls are what needs auth)
        r = await anonymous.get("/workflows/gated")
        assert r.status_code == 200
        assert boot_of(r.text)["kind"] == "workflow"
        assert boot_of(r.text)["workflowKey"] == "gated"
        r = await anonymous.get("/apps/deploy/history")
        boot = boot_of(r.text)
        assert (boot["kind"], boot["workflowKey"], boot["props"]) == (
            "workflow",
            "deploy",
            {"a": 1, "consolePath": "/console", "signInPath": "/console/signin"},
        )
        assert boot["assetBasePath"] == "/apps/deploy/__smithers_ui/"
        assert "<title>Deploy</title>" in r.text
        assert (await anonymous.get("/apps/deploy/__smithers_ui/style.css")).text == "body{}\n"
        # the shared theme is there too; the folder's own files win
        assert (await anonymous.get("/apps/deploy/__smithers_ui/theme.css")).status_code == 200
        assert (await anonymous.get("/apps/deploy/__smithers_ui/missing.js")).status_code == 404
        # mounted elsewhere: /workflows/<key> redirects there, the query kept
        for path in ("/workflows/deploy", "/workflows/deploy/?tab=runs"):
            r = await anonymous.get(path)
            assert r.status_code == 302
        assert r.headers["location"] == "/apps/deploy?tab=runs"
        assert (await anonymous.get("/workflows/nope")).status_code == 404
        listed = await anonymous.get("/workflows")
        by_key = {w["key"]: w for w in listed.json()["workflows"]}
        assert by_key["deploy"]["uiPath"] == "/apps/deploy" and by_key["deploy"]["hasUi"]


async def test_gateway_ui_from_an_html_file_and_the_longest_mount(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        "<!doctype html><html><head><title>Mine</title></head><body>hi</body></html>"
    )
    (site / "app.js").write_text("console.log(1);\n")
    gw = ui_gateway(tmp_path / "gw", ui={"entry": str(site / "index.html"), "props": {"x": 2}})
    gw.register("gated", wfs.gated, ui=True)
    async with running(gw), http(gw) as anonymous:
        r = await anonymous.get("/anything/here")
        assert r.status_code == 200 and "<body>hi</body>" in r.text
        boot = boot_of(r.text)
        assert (boot["kind"], boot["mountPath"], boot["props"]) == ("gateway", "/", {"x": 2})
        nonce = nonce_of(r)
        assert r.text.startswith(f'<!doctype html><html><head><script nonce="{nonce}">')
        assert (await anonymous.get("/__smithers_ui/app.js")).text == "console.log(1);\n"
        # longer mounts and the gateway's own routes still win over the UI at /
        assert boot_of((await anonymous.get("/workflows/gated/x")).text)["kind"] == "workflow"
        assert (await anonymous.get("/health")).json()["ok"] is True
        assert (await anonymous.get("/console/")).status_code == 401
        assert (await anonymous.post("/v1/rpc/health")).status_code == 401


def test_a_bad_entry_fails_listen(tmp_path: Path) -> None:
    import anyio

    async def main() -> None:
        gw = ui_gateway(tmp_path, ui={"entry": str(tmp_path / "missing")})
        with pytest.raises(SmithersError) as caught:
            await gw.listen(port=0)
        assert caught.value.code == "INVALID_INPUT"
        await gw.close()

    anyio.run(main)


async def test_config_entries_resolve_against_the_config_folder(tmp_path: Path) -> None:
    from smithers_core.cli.gateway import build_gateway
    from smithers_core.config import load_config

    repo_examples = Path(__file__).resolve().parent.parent / "examples"
    config = load_config(repo_examples / "smithers.toml")
    config.gateway["db"] = f"sqlite:///{tmp_path / 'gw.db'}"
    config.auth = {"mode": "token", "tokens": UI_TOKENS}  # never the examples' tokens file
    host = plugin_host()
    host.register(smithers_ui, "smithers_ui")
    host.register(smithers_cron, "smithers_cron")
    gateway, _ = build_gateway(config, host)
    hello = gateway.workflows["hello"].ui
    assert not isinstance(hello, bool) and hello is not None
    assert hello.entry == str(repo_examples / "ui" / "hello")
    async with running(gateway) as gw, http(gw) as anonymous:
        page = await anonymous.get("/workflows/hello")
        assert boot_of(page.text)["workflowKey"] == "hello" and "<title>Hello</title>" in page.text
        script = await anonymous.get("/workflows/hello/__smithers_ui/client.js")
        assert script.status_code == 200 and "launchRun" in script.text
