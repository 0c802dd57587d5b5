"""The browser session handoff (reference 9.5): ``GET /v1/auth/session?token=&next=`` turns a
bearer token into the ``smithers_session`` cookie and sends the browser on to ``next``;
``POST /v1/auth/logout`` clears it (beyond upstream, so a console can sign out).

- ``next`` must be a same-origin absolute path: it starts with ``/``, not ``//`` or ``/\\``,
  and holds no backslash (nor a control character); anything else becomes ``/``.
- With auth mode ``none`` the answer is the handoff page alone.
- Otherwise the credential (``token``, else the request's headers or cookie) is authenticated
  by core's gates and the auth mode; a failure answers the gateway's error frame with its
  status. Success sets ``smithers_session=<url-encoded token>; HttpOnly; Path=/;
  SameSite=Lax`` (and ``Secure`` over TLS or behind ``X-Forwarded-Proto: https``) when there
  is a token to keep, then answers the handoff page.
- The handoff page sends the browser on with ``location.replace`` (a script allowed by its
  nonce in the page's Content-Security-Policy), a meta refresh and a link.
"""

from __future__ import annotations

import html
import secrets
from typing import Any
from urllib.parse import quote

from smithers_core import jsonutil
from smithers_core.auth.tokens import SESSION_COOKIE
from smithers_core.contributions import RouteSpec
from smithers_core.errors import SmithersError
from smithers_core.gateway.authn import auth_request
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.wire import error_frame, request_id_of, status_for_code
from smithers_core.http.asgi import query as scope_query
from smithers_core.http.asgi import respond, scope_headers, scope_peer
from smithers_core.http.responses import GATEWAY, send_json

SESSION_PATH = "/v1/auth/session"
LOGOUT_PATH = "/v1/auth/logout"


def safe_next(value: str | None) -> str:
    """``next`` when it is a same-origin absolute path, else ``/``."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or value.startswith("/\\")
        or "\\" in value
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        return "/"
    return value


def is_secure(scope: dict[str, Any], headers: dict[str, str]) -> bool:
    """TLS, or a proxy in front that says the browser used HTTPS."""
    forwarded = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return scope.get("scheme") in ("https", "wss") or forwarded == "https"


def session_cookie(token: str, *, secure: bool, max_age: int | None = None) -> str:
    """The ``Set-Cookie`` value of a session (``max_age=0`` clears it)."""
    parts = [f"{SESSION_COOKIE}={quote(token, safe='')}", "HttpOnly", "Path=/", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def handoff_page(target: str) -> tuple[bytes, str]:
    """The page that sends the browser to ``target``, and its Content-Security-Policy."""
    nonce = secrets.token_urlsafe(16)
    # JSON in a script: "</" is escaped so no value can close the element
    literal = jsonutil.dumps(target).replace("</", "<\\/")
    attr = html.escape(target, quote=True)
    page = (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={attr}"><title>Signing in</title>'
        f'<script nonce="{nonce}">location.replace({literal});</script></head>'
        f'<body><p><a href="{attr}">Continue</a></p></body></html>\n'
    )
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; base-uri 'none';"
        " frame-ancestors 'none'; form-action 'none'"
    )
    return page.encode("utf-8"), csp


def session_routes(ctx: GatewayContext) -> list[RouteSpec]:
    """``GET /v1/auth/session`` and ``POST /v1/auth/logout`` (public: they authenticate, or
    need nothing, themselves)."""

    async def session(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = scope_headers(scope)
        query = scope_query(scope)
        target = safe_next(query.get("next"))
        cookie = None
        if ctx.auth.enabled:
            token = query.get("token") or None
            request = auth_request("http", headers, scope_peer(scope), SESSION_PATH, token)
            try:
                await ctx.authenticate(request)
            except SmithersError as exc:
                ctx.metrics.auth_events.labels("failure").inc()
                frame = error_frame(request_id_of(headers), exc)
                await send_json(send, status_for_code(exc.code), frame, GATEWAY)
                return
            if request.token:
                cookie = session_cookie(request.token, secure=is_secure(scope, headers))
        body, csp = handoff_page(target)
        extra = [(b"set-cookie", cookie.encode("latin-1"))] if cookie else []
        await respond(send, 200, body, _html_headers(csp) + extra)

    async def logout(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = scope_headers(scope)
        cookie = session_cookie("", secure=is_secure(scope, headers), max_age=0)
        await respond(
            send,
            200,
            b'{"ok":true}',
            [*GATEWAY, (b"set-cookie", cookie.encode("latin-1"))],
        )

    return [
        RouteSpec(SESSION_PATH, session, ("GET",), auth="public", asgi=True, name="session"),
        RouteSpec(LOGOUT_PATH, logout, ("POST",), auth="public", asgi=True, name="logout"),
    ]


def _html_headers(csp: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-smithers-api-version", b"v1"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", csp.encode("latin-1")),
    ]


__all__ = [
    "LOGOUT_PATH",
    "SESSION_PATH",
    "handoff_page",
    "is_secure",
    "safe_next",
    "session_cookie",
    "session_routes",
]
