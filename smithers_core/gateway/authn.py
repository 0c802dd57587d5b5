"""Choosing and running the auth provider of a gateway (D3, D11).

The ``[auth]`` section (or the ``auth`` option) names a ``mode``; the plugin that provides the
mode validates the rest of the section with its ``config_model``. ``allowed_origins`` is
handled by core's gates, never by the mode. No table of plugin names lives here: the install
hint for a missing mode follows the ``smithers-auth-<mode>`` naming convention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from smithers_core.auth import AuthProvider, AuthRequest, Identity, Peer
from smithers_core.auth.gates import check_gates
from smithers_core.auth.tokens import bearer_token, parse_cookies
from smithers_core.errors import SmithersError
from smithers_core.plugins import PluginHost

_CORE_KEYS = {"mode", "allowed_origins", "allowedOrigins"}


def install_hint(mode: str) -> str:
    dist = "smithers-auth-" + mode.replace("_", "-").lower()
    folder = "./" + dist.replace("-", "_")
    return (
        f"Install the plugin that provides it, for example `pip install {dist}` "
        f"(from a checkout: `pip install -e {folder}`), then enable it."
    )


@dataclass
class AuthSetup:
    """A configured auth mode: its provider plus the settings core's gates need."""

    mode: str
    provider: AuthProvider
    allowed_origins: list[str] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


def build_auth(
    auth: Mapping[str, Any] | None, plugins: PluginHost, allowed_origins: list[str] | None = None
) -> AuthSetup:
    """Resolve the mode through the ``smithers_auth_modes`` hook; fail startup on errors."""
    section = dict(auth or {})
    mode = str(section.get("mode") or "none")
    origins = list(
        section.get("allowed_origins") or section.get("allowedOrigins") or allowed_origins or []
    )
    modes = plugins.auth_modes()
    impl = modes.get(mode)
    if impl is None:
        installed = ", ".join(sorted(modes)) or "(none)"
        raise SmithersError(
            "AUTH_MODE_UNAVAILABLE",
            f"No installed plugin provides auth mode '{mode}'. Installed modes: {installed}. "
            + install_hint(mode),
            {"mode": mode, "installedModes": sorted(modes)},
        )
    config_data = {k: v for k, v in section.items() if k not in _CORE_KEYS}
    try:
        config = impl.config_model.model_validate(config_data)
    except ValidationError as exc:
        raise SmithersError(
            "CONFIG_INVALID",
            f"Invalid [auth] settings for mode '{mode}': {exc}",
            {"mode": mode},
        ) from exc
    return AuthSetup(mode, impl.create(config), origins)


def auth_request(
    transport: Literal["http", "ws"],
    headers: Mapping[str, str],
    peer: Peer,
    path: str,
    token: str | None = None,
) -> AuthRequest:
    """The :class:`AuthRequest` of a request: its cookies parsed, and its credential ``token``
    (the WebSocket ``connect`` frame's when given, else extracted as in reference 6.1)."""
    cookies = parse_cookies(headers.get("cookie"))
    credential = token if token is not None else bearer_token(headers, cookies)
    return AuthRequest(transport, headers, cookies, peer, credential, path)


async def authenticate(setup: AuthSetup, request: AuthRequest, *, insecure: bool) -> Identity:
    """Gates, then the mode's provider. Raises ``SmithersError("UNAUTHORIZED", ...)``."""
    failure = check_gates(
        request.headers,
        request.cookies,
        auth_enabled=setup.enabled,
        allowed_origins=setup.allowed_origins,
        insecure=insecure,
    )
    if failure is not None:
        raise SmithersError("UNAUTHORIZED", failure)
    return await setup.provider.authenticate(request)


__all__ = ["AuthSetup", "auth_request", "authenticate", "build_auth", "install_hint"]
