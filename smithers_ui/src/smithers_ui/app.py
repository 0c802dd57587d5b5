"""The ASGI app of one UI mount (reference 9.5): every page under the mount is its HTML shell
(or its HTML entry file, with the boot config added); ``__smithers_ui/<name>`` serves the
mount's assets; an unknown asset is 404 ``Not Found``. Every answer carries ``Cache-Control:
no-store`` and ``X-Content-Type-Options: nosniff``; pages carry a Content-Security-Policy.

Core has already routed the request (the app sees its path below the mount) and, for the
operator console, authenticated it: the caller is ``scope["state"]["identity"]``.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from smithers_core.auth import Identity
from smithers_core.http.asgi import respond
from smithers_ui.shell import (
    ASSET_DIR,
    Boot,
    content_security_policy,
    inject_boot,
    new_nonce,
    render_shell,
)

PropsFor = Callable[[Identity | None], Mapping[str, Any]]
MAX_ASSET_BYTES = 16 * 1024 * 1024
BASE_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
PAGE_HEADERS = [
    *BASE_HEADERS,
    (b"content-type", b"text/html; charset=utf-8"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


def asset_file(folders: Sequence[Path], name: str) -> Path | None:
    """The file ``name`` names in the first folder that has it, or None: no dot segments,
    hidden files, backslashes or anything outside the folder."""
    parts = name.split("/")
    if not name or "\\" in name or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    for folder in folders:
        root = folder.resolve()
        candidate = (root / name).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return candidate
    return None


def content_type(path: Path) -> str:
    known = TYPES.get(path.suffix.lower())
    if known is None:
        known = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if known.startswith("text/") or known.endswith(("javascript", "json", "svg+xml")):
        return known + "; charset=utf-8"
    return known


class UiApp:
    """One mount: its boot config, its asset folders (searched in order) and its page."""

    def __init__(
        self,
        boot: Boot,
        title: str,
        assets: Sequence[Path],
        *,
        page: Path | None = None,
        props_for: PropsFor | None = None,
    ) -> None:
        self.boot = boot
        self.title = title
        self.assets = list(assets)
        self.page = page
        self.props_for = props_for

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = str(scope.get("path") or "/")
        prefix = f"/{ASSET_DIR}/"
        if path.startswith(prefix) or path == prefix.rstrip("/"):
            await self._asset(path[len(prefix) :], send)
            return
        await self._page(scope, send)

    async def _asset(self, name: str, send: Any) -> None:
        found = asset_file(self.assets, name)
        if found is None or found.stat().st_size > MAX_ASSET_BYTES:
            headers = [*BASE_HEADERS, (b"content-type", b"text/plain; charset=utf-8")]
            await respond(send, 404, b"Not Found", headers)
            return
        body = await anyio.Path(found).read_bytes()
        headers = [*BASE_HEADERS, (b"content-type", content_type(found).encode())]
        await respond(send, 200, body, headers)

    async def _page(self, scope: dict[str, Any], send: Any) -> None:
        state = scope.get("state") or {}
        identity = state.get("identity")
        props = self.props_for(identity) if self.props_for is not None else None
        config = self.boot.config(props)
        nonce = new_nonce()
        if self.page is not None:
            body = inject_boot(await anyio.Path(self.page).read_bytes(), config, nonce)
        else:
            body = render_shell(self.title, config, nonce)
        host = _host(scope)
        csp = content_security_policy(nonce, host).encode("latin-1")
        await respond(send, 200, body, [*PAGE_HEADERS, (b"content-security-policy", csp)])


class RedirectApp:
    """``/workflows/<key>[/]`` of a workflow whose UI is mounted elsewhere: 302 there, the
    query kept."""

    def __init__(self, target: str) -> None:
        self.target = target

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        location = self.target
        query = scope.get("query_string") or b""
        if query:
            location += "?" + query.decode("latin-1")
        headers = [*BASE_HEADERS, (b"location", location.encode("latin-1"))]
        await respond(send, 302, b"", headers)


def _host(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"host":
            return bytes(value).decode("latin-1")
    return None


__all__ = ["RedirectApp", "UiApp", "asset_file", "content_type"]
