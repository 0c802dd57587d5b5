"""Auth mode ``trusted-proxy`` (plugin ``smithers_auth_proxy``): identity headers are believed
only from allow-listed socket peers (``AuthRequest.peer``), never from forwarded headers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from smithers_auth_proxy import (
    MSG_MISSING_SCOPES,
    MSG_UNTRUSTED_PEER,
    TrustedProxyConfig,
    TrustedProxyMode,
    TrustedProxyProvider,
)
from stevedore.extension import ExtensionManager

from smithers_core.auth import AuthRequest, Identity, Peer
from smithers_core.config import PluginsSection, load_config
from smithers_core.errors import SmithersError
from smithers_core.plugins import PLUGIN_GROUP, load_plugins

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parent.parent
HEADERS = {"x-user-id": "alice", "x-user-scopes": "run:read, run:write", "x-user-role": "admin"}


def provider(**config: Any) -> TrustedProxyProvider:
    config.setdefault("trusted_proxies", ["10.0.0.0/8"])
    return TrustedProxyMode().create(TrustedProxyConfig.model_validate(config))


async def auth(p: TrustedProxyProvider, peer: Peer, headers: Mapping[str, str]) -> Identity:
    return await p.authenticate(AuthRequest(transport="http", headers=headers, peer=peer))


async def refused(p: TrustedProxyProvider, peer: Peer, headers: Mapping[str, str]) -> str:
    with pytest.raises(SmithersError) as err:
        await auth(p, peer, headers)
    assert err.value.code == "UNAUTHORIZED"
    return err.value.message


async def test_headers_from_an_allowed_peer_are_accepted() -> None:
    ident = await auth(provider(), ("10.1.2.3", 41000), HEADERS)
    assert ident == Identity(
        role="admin", scopes=("run:read", "run:write"), user_id="alice", token_id=None
    )


async def test_the_same_headers_from_another_peer_are_rejected() -> None:
    p = provider()
    for peer in (("192.168.1.5", 41000), ("11.0.0.1", 1), ("::1", 2), None, ("testclient", 50)):
        assert await refused(p, peer, HEADERS) == MSG_UNTRUSTED_PEER


async def test_x_forwarded_for_is_ignored() -> None:
    spoofed = {**HEADERS, "x-forwarded-for": "10.1.2.3", "x-real-ip": "10.1.2.3",
               "forwarded": "for=10.1.2.3"}  # fmt: skip
    assert await refused(provider(), ("127.0.0.1", 50000), spoofed) == MSG_UNTRUSTED_PEER


async def test_a_peer_is_untrusted_even_without_identity_headers() -> None:
    assert await refused(provider(), ("172.16.0.1", 1), {}) == MSG_UNTRUSTED_PEER


async def test_missing_scopes_header_gets_default_scopes() -> None:
    headers = {"x-user-id": "bob"}
    assert (await auth(provider(), ("10.0.0.9", 1), headers)).scopes == ("*",)
    custom = provider(default_scopes=["run:read"])
    assert (await auth(custom, ("10.0.0.9", 1), headers)).scopes == ("run:read",)


async def test_empty_default_scopes_fail_closed() -> None:
    p = provider(default_scopes=[])
    assert await refused(p, ("10.0.0.9", 1), {"x-user-id": "bob"}) == MSG_MISSING_SCOPES
    # A present but empty header is an empty grant, never the default.
    ident = await auth(provider(), ("10.0.0.9", 1), {"x-user-scopes": " "})
    assert ident.scopes == ()


async def test_role_user_and_token_id_defaults() -> None:
    p = provider(default_role="viewer")
    ident = await auth(p, ("10.0.0.9", 1), {"x-user-scopes": "run:read"})
    assert ident == Identity(role="viewer", scopes=("run:read",), user_id=None, token_id=None)
    ident = await auth(provider(default_role=None), ("10.0.0.9", 1), {"x-user-role": ""})
    assert ident.role == "operator"
    ident = await auth(provider(), ("10.0.0.9", 1), {**HEADERS, "x-smithers-token-id": "tid-1"})
    assert ident.token_id == "tid-1"


async def test_scopes_header_is_split_on_commas_and_whitespace() -> None:
    headers = {"x-user-scopes": "run:read,run:write  approval:submit\tcron:read"}
    ident = await auth(provider(), ("10.0.0.9", 1), headers)
    assert ident.scopes == ("run:read", "run:write", "approval:submit", "cron:read")


@pytest.mark.parametrize(
    ("proxies", "peer", "trusted"),
    [
        (["10.0.0.0/8"], ("10.255.255.255", 1), True),
        (["10.0.0.0/8"], ("11.0.0.0", 1), False),
        (["192.168.1.10"], ("192.168.1.10", 1), True),
        (["192.168.1.10"], ("192.168.1.11", 1), False),
        (["192.168.1.10/24"], ("192.168.1.200", 1), True),  # host bits are tolerated
        (["fd00::/8"], ("fd12:3456::1", 1), True),
        (["fd00::/8"], ("fe80::1", 1), False),
        (["::1"], ("::1", 1), True),
        (["127.0.0.1"], ("::ffff:127.0.0.1", 1), True),  # IPv4-mapped IPv6 peer
        (["127.0.0.1"], ("::1", 1), False),
        (["unix"], "unix", True),
        (["unix"], ("127.0.0.1", 1), False),
        (["127.0.0.1"], "unix", False),
        (["UNIX", "10.0.0.0/8"], "unix", True),
        (["0.0.0.0/0"], None, False),  # an unknown peer is never trusted
    ],
)
async def test_cidr_address_and_unix_peers(proxies: list[str], peer: Peer, trusted: bool) -> None:
    p = provider(trusted_proxies=proxies)
    if trusted:
        assert (await auth(p, peer, HEADERS)).user_id == "alice"
    else:
        assert await refused(p, peer, HEADERS) == MSG_UNTRUSTED_PEER


def test_create_without_trusted_proxies_fails() -> None:
    mode = TrustedProxyMode()
    for data in ({}, {"trusted_proxies": []}, {"trustedProxies": []}):
        with pytest.raises(SmithersError, match="requires trusted_proxies") as err:
            mode.create(mode.config_model.model_validate(data))
        assert err.value.code == "CONFIG_INVALID"


def test_invalid_trusted_proxy_entry_fails() -> None:
    with pytest.raises(SmithersError, match=r"'proxy\.internal' is not an IP address"):
        provider(trusted_proxies=["10.0.0.1", "proxy.internal"])


async def test_custom_trusted_headers_list_table_and_camel_case() -> None:
    listed = provider(trusted_headers=["X-Auth-User", "X-Auth-Groups", "X-Auth-Role"])
    headers = {"x-auth-user": "u", "x-auth-groups": "run:read", "x-auth-role": "r", **HEADERS}
    ident = await auth(listed, ("10.0.0.1", 1), headers)
    assert (ident.user_id, ident.scopes, ident.role) == ("u", ("run:read",), "r")
    table = provider(trusted_headers={"user": "x-email"})
    ident = await auth(table, ("10.0.0.1", 1), {**HEADERS, "x-email": "e@example.com"})
    assert (ident.user_id, ident.role) == ("e@example.com", "admin")
    camel = TrustedProxyMode().create(
        TrustedProxyConfig.model_validate(
            {
                "trustedProxies": ["unix"],
                "trustedHeaders": ["a", "b", "c"],
                "defaultRole": "viewer",
                "defaultScopes": ["run:read"],
                "allowedOrigins": ["https://ui.example"],
            }
        )
    )
    ident = await auth(camel, "unix", {"a": "me"})
    assert ident == Identity(role="viewer", scopes=("run:read",), user_id="me")


def test_trusted_headers_validation() -> None:
    for bad in (["only-one"], ["a", "b", "c", "d"], ["a", "", "c"], {"group": "x"}):
        with pytest.raises(ValueError):
            TrustedProxyConfig.model_validate({"trusted_proxies": ["unix"], "trusted_headers": bad})


async def test_config_file_with_mode_trusted_proxy(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text(
        "[auth]\n"
        'mode = "trusted-proxy"\n'
        'trusted_proxies = ["127.0.0.1", "unix"]\n'
        'default_scopes = ["run:read"]\n'
        'tokens_file = "left-over-from-token-mode.toml"\n'
    )
    auth_section = load_config(tmp_path / "smithers.toml", environ={}).auth
    data = {k: v for k, v in auth_section.items() if k != "mode"}
    p = TrustedProxyMode().create(TrustedProxyConfig.model_validate(data))
    ident = await auth(p, ("127.0.0.1", 9), {"x-user-id": "carol"})
    assert ident == Identity(role="operator", scopes=("run:read",), user_id="carol")


@pytest.fixture
def fresh_entry_point_cache() -> Iterator[None]:
    """stevedore caches each group's entry points in a class attribute for the whole process;
    drop it around discovery so this test neither sees nor leaves another test's view."""
    ExtensionManager.ENTRY_POINT_CACHE.pop(PLUGIN_GROUP, None)
    yield
    ExtensionManager.ENTRY_POINT_CACHE.pop(PLUGIN_GROUP, None)


@pytest.mark.usefixtures("fresh_entry_point_cache")
async def test_plugin_is_discovered_through_its_entry_point() -> None:
    host = load_plugins(PluginsSection(enable=["smithers_auth_proxy"]), environ={})
    info = host.infos["smithers_auth_proxy"]
    assert info.loaded and info.distribution == "smithers-auth-proxy"
    assert info.hooks == ["smithers_auth_modes"]
    mode = host.auth_modes()["trusted-proxy"]
    created = mode.create(mode.config_model.model_validate({"trusted_proxies": ["10.0.0.0/8"]}))
    request = AuthRequest(transport="ws", headers=HEADERS, peer=("10.9.9.9", 1234))
    assert (await created.authenticate(request)).user_id == "alice"


def test_installed_package_is_not_shadowed_by_the_source_folder() -> None:
    code = "import smithers_auth_proxy; print(smithers_auth_proxy.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(out).parts[-3:] == ("src", "smithers_auth_proxy", "__init__.py")
