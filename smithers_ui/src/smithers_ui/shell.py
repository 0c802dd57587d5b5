"""The HTML shell every UI mount answers its pages with (reference 9.5).

The shell carries the title, the theme (``?theme=dark|light``, else the browser's preference,
applied before first paint), the boot config ``globalThis.__SMITHERS_GATEWAY_UI__ = {apiVersion,
kind, workflowKey, mountPath, rpcPath, wsPath, assetBasePath, props}`` and the module script
``<mount>/__smithers_ui/client.js``. Its one inline script runs under a per-response nonce; the
Content-Security-Policy allows nothing else inline, so no value can become script. Values are
JSON with ``<`` escaped inside the script and HTML-escaped everywhere else.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smithers_core import jsonutil

ASSET_DIR = "__smithers_ui"


@dataclass(frozen=True, slots=True)
class Boot:
    """The boot config of one mount (the fields of ``__SMITHERS_GATEWAY_UI__``)."""

    kind: str
    mount_path: str
    workflow_key: str | None = None
    props: Mapping[str, Any] | None = None

    @property
    def asset_base(self) -> str:
        return self.mount_path.rstrip("/") + f"/{ASSET_DIR}/"

    def config(self, props: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": self.kind,
            "workflowKey": self.workflow_key,
            "mountPath": self.mount_path,
            "rpcPath": "/v1/rpc",
            "wsPath": "/",
            "assetBasePath": self.asset_base,
            "props": dict(props if props is not None else self.props or {}),
        }


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` can end it."""
    text = jsonutil.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def boot_script(config: Mapping[str, Any]) -> str:
    """The inline script: the boot config and the theme, before first paint."""
    return (
        f"globalThis.__SMITHERS_GATEWAY_UI__ = {script_json(config)};"
        "(function(){var t=new URLSearchParams(location.search).get('theme');"
        "if(t!=='dark'&&t!=='light'){try{t=localStorage.getItem('smithers-theme')}catch(e){}}"
        "if(t!=='dark'&&t!=='light'){t=matchMedia('(prefers-color-scheme: dark)').matches"
        "?'dark':'light'}document.documentElement.dataset.theme=t;})();"
    )


def content_security_policy(nonce: str, host: str | None) -> str:
    """Scripts from the origin and the one nonce; WebSocket back to the same host only."""
    sockets = f" ws://{host} wss://{host}" if host and _safe_host(host) else ""
    return (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self';"
        f" img-src 'self' data:; connect-src 'self'{sockets}; font-src 'self';"
        " object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )


def _safe_host(host: str) -> bool:
    return all(c.isalnum() or c in ".-:[]" for c in host)


def render_shell(title: str, config: Mapping[str, Any], nonce: str) -> bytes:
    """The generated page of a mount."""
    base = str(config["assetBasePath"])
    attr = html.escape
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{attr(title)}</title>"
        f'<link rel="stylesheet" href="{attr(base)}theme.css">'
        f'<script nonce="{nonce}">{boot_script(config)}</script>'
        f'<script type="module" src="{attr(base)}client.js"></script>'
        '</head><body><div id="app"></div>'
        "<noscript>This page needs JavaScript.</noscript></body></html>\n"
    ).encode()


def inject_boot(page: bytes, config: Mapping[str, Any], nonce: str) -> bytes:
    """An HTML entry file with the boot script added at the top of its head."""
    tag = f'<script nonce="{nonce}">{boot_script(config)}</script>'.encode()
    lower = page.lower()
    at = lower.find(b"<head>")
    if at >= 0:
        at += len(b"<head>")
        return page[:at] + tag + page[at:]
    return tag + page


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


__all__ = [
    "ASSET_DIR",
    "Boot",
    "boot_script",
    "content_security_policy",
    "inject_boot",
    "new_nonce",
    "render_shell",
    "script_json",
]
