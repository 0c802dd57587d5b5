"""Plugin ``smithers_auth_proxy``: auth mode ``trusted-proxy`` (gateway reference 6.5).

A reverse proxy in front of the gateway authenticates users and forwards who they are in
headers (default ``x-user-id``, ``x-user-scopes``, ``x-user-role``). Those headers are believed
only when the request's **socket peer** (``AuthRequest.peer``) is in ``trusted_proxies``: a list
of addresses, CIDR networks and/or ``"unix"`` (a Unix-socket peer). Startup fails without it. A
request from any other peer is ``UNAUTHORIZED`` whatever headers it carries; ``X-Forwarded-For``
and friends are never consulted (hosts run uvicorn with ``proxy_headers=False``, D9).

* userId = the user header (absent or empty => None);
* role = the role header ?? ``default_role`` ?? ``"operator"``;
* scopes = the scopes header split on commas/whitespace; when the header is absent,
  ``default_scopes`` (default ``["*"]`` as the upstream API page says). ``default_scopes = []``
  makes an absent scopes header ``UNAUTHORIZED`` (upstream's fail-closed rule);
* tokenId = the ``x-smithers-token-id`` header, if any.

The mode also tells ``smithers token inspect`` that it does not use bearer credentials (the
``CredentialDescriber`` capability), so inspect asks it for no verdict.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from smithers_core.auth import AuthMode, AuthRequest, Identity, Peer
from smithers_core.auth.capabilities import CredentialDescription
from smithers_core.errors import SmithersError
from smithers_core.hookspecs import hookimpl

MODE = "trusted-proxy"
DEFAULT_HEADERS = ("x-user-id", "x-user-scopes", "x-user-role")
TOKEN_ID_HEADER = "x-smithers-token-id"
UNIX_PEER = "unix"

MSG_UNTRUSTED_PEER = "Request did not come from a trusted proxy"
MSG_MISSING_SCOPES = (
    "trusted-proxy request is missing the user scopes header and no defaultScopes is configured"
)
NOTE_NO_BEARER = (
    "trusted-proxy mode does not use bearer tokens: identity comes from headers set by a proxy "
    "in trusted_proxies"
)

_SPLIT_RE = re.compile(r"[\s,]+")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxyConfig(BaseModel):
    """Validated ``[auth]`` section for ``mode = "trusted-proxy"`` (camelCase accepted)."""

    model_config = ConfigDict(
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        frozen=True,
    )

    trusted_proxies: list[str] = Field(default_factory=list)
    """Peer addresses, CIDRs or ``"unix"`` allowed to assert identity headers. Required."""
    trusted_headers: list[str] | dict[str, str] = Field(
        default_factory=lambda: list(DEFAULT_HEADERS)
    )
    """``[user, scopes, role]`` header names, or a table ``{user=, scopes=, role=}``."""
    default_role: str | None = "operator"
    default_scopes: list[str] = Field(default_factory=lambda: ["*"])
    allowed_origins: list[str] = Field(default_factory=list)
    """Enforced by core's Origin gate, not by this plugin; accepted here for completeness."""

    @field_validator("trusted_headers")
    @classmethod
    def _three_headers(cls, value: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        if isinstance(value, dict):
            unknown = set(value) - {"user", "scopes", "role"}
            if unknown:
                raise ValueError(f"unknown trusted_headers keys {sorted(unknown)}")
            names = list(value.values())
        else:
            if len(value) != 3:
                raise ValueError("trusted_headers must list three names: [user, scopes, role]")
            names = value
        if any(not n.strip() for n in names):
            raise ValueError("trusted_headers entries must be non-empty header names")
        return value

    def header_names(self) -> tuple[str, str, str]:
        """``(user, scopes, role)``, lower-cased."""
        value = self.trusted_headers
        if isinstance(value, dict):
            keys = ("user", "scopes", "role")
            names = [value.get(k, d) for k, d in zip(keys, DEFAULT_HEADERS, strict=True)]
        else:
            names = list(value)
        user, scopes, role = (n.strip().lower() for n in names)
        return user, scopes, role


def parse_trusted_proxies(entries: Iterable[str]) -> tuple[bool, tuple[IpNetwork, ...]]:
    """``(unix_allowed, networks)``; a bare address becomes a /32 or /128 network."""
    unix = False
    networks: list[IpNetwork] = []
    for raw in entries:
        entry = raw.strip()
        if entry.lower() == UNIX_PEER:
            unix = True
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SmithersError(
                "CONFIG_INVALID",
                f"[auth] mode 'trusted-proxy': trusted_proxies entry {raw!r} is not an IP "
                'address, a CIDR network or "unix"',
            ) from None
    return unix, tuple(networks)


def peer_is_trusted(peer: Peer, unix: bool, networks: tuple[IpNetwork, ...]) -> bool:
    """Whether the socket peer is in the allow-list. Unknown peers are never trusted."""
    if peer is None:
        return False
    if peer == UNIX_PEER:
        return unix
    host = peer[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        mapped = address.ipv4_mapped
        if any(mapped in net for net in networks if net.version == 4):
            return True
    return any(address in net for net in networks if net.version == address.version)


class TrustedProxyProvider:
    """A configured ``trusted-proxy`` mode."""

    def __init__(self, config: TrustedProxyConfig) -> None:
        if not config.trusted_proxies:
            raise SmithersError(
                "CONFIG_INVALID",
                "[auth] mode 'trusted-proxy' requires trusted_proxies: the addresses, CIDR "
                'networks or "unix" of the reverse proxies allowed to assert identity headers '
                '(for example trusted_proxies = ["127.0.0.1", "10.0.0.0/8"])',
            )
        self.config = config
        self._unix, self._networks = parse_trusted_proxies(config.trusted_proxies)
        self._user_header, self._scopes_header, self._role_header = config.header_names()
        self._default_scopes = tuple(config.default_scopes)

    async def authenticate(self, req: AuthRequest) -> Identity:
        return self.identify(req.peer, req.headers)

    def identify(self, peer: Peer, headers: Mapping[str, str]) -> Identity:
        if not peer_is_trusted(peer, self._unix, self._networks):
            raise SmithersError("UNAUTHORIZED", MSG_UNTRUSTED_PEER)
        raw_scopes = headers.get(self._scopes_header)
        if raw_scopes is None:
            if not self._default_scopes:
                raise SmithersError("UNAUTHORIZED", MSG_MISSING_SCOPES)
            scopes = self._default_scopes
        else:
            scopes = tuple(s for s in _SPLIT_RE.split(raw_scopes.strip()) if s)
        role = headers.get(self._role_header) or self.config.default_role or "operator"
        return Identity(
            role=role,
            scopes=scopes,
            user_id=headers.get(self._user_header) or None,
            token_id=headers.get(TOKEN_ID_HEADER) or None,
        )


class TrustedProxyMode:
    """The ``trusted-proxy`` auth mode contributed through ``smithers_auth_modes``."""

    config_model: type[BaseModel] = TrustedProxyConfig

    def create(self, config: BaseModel) -> TrustedProxyProvider:
        if not isinstance(config, TrustedProxyConfig):
            data: dict[str, Any] = config.model_dump()
            config = TrustedProxyConfig.model_validate(data)
        return TrustedProxyProvider(config)

    def describe_credential(
        self, credential: str, *, configured: bool
    ) -> CredentialDescription | None:
        """When configured: no bearer credential is looked at (``smithers token inspect``)."""
        return (
            CredentialDescription(note=NOTE_NO_BEARER, uses_credentials=False)
            if configured
            else None
        )


@hookimpl
def smithers_auth_modes() -> dict[str, AuthMode]:
    return {MODE: TrustedProxyMode()}


__all__ = [
    "DEFAULT_HEADERS",
    "MODE",
    "MSG_MISSING_SCOPES",
    "MSG_UNTRUSTED_PEER",
    "NOTE_NO_BEARER",
    "TOKEN_ID_HEADER",
    "TrustedProxyConfig",
    "TrustedProxyMode",
    "TrustedProxyProvider",
    "parse_trusted_proxies",
    "peer_is_trusted",
]
