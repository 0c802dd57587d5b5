"""The ``smithers_auth_token`` plugin: grants, expiry, revocation, digests, token files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from smithers_auth_token import TokenAuthConfig, TokenMode
from smithers_auth_token import provider as token_provider
from smithers_core.auth import AuthRequest, Identity
from smithers_core.config import load_config
from smithers_core.errors import SmithersError
from tests.conftest import REPO_ROOT
from tests.gateway_helpers import http, make_gateway, rpc, running

pytestmark = pytest.mark.anyio


def _provider(**config: Any) -> Any:
    return TokenMode().create(TokenAuthConfig.model_validate(config))


async def _auth(provider: Any, token: str | None) -> Identity:
    identity: Identity = await provider.authenticate(AuthRequest(transport="http", token=token))
    return identity


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def test_grants_and_token_ids() -> None:
    provider = _provider(
        tokens={
            "op": {"role": "operator", "scopes": ["*"], "userId": "user:will"},
            "ci": {"role": "ci", "scopes": ["run:write"], "token_id": "ci-1", "issuedAtMs": 1},
        }
    )
    op = await _auth(provider, "op")
    assert op == Identity("operator", ("*",), "user:will", _sha("op")[:16])
    ci = await _auth(provider, "ci")
    assert ci.role == "ci" and ci.scopes == ("run:write",) and ci.token_id == "ci-1"
    assert ci.user_id is None


async def test_unauthorized_messages() -> None:
    now = int(time.time() * 1000)
    provider = _provider(
        tokens={
            "old": {"role": "operator", "scopes": ["*"], "expiresAtMs": now - 1},
            "gone": {
                "role": "operator",
                "scopes": ["*"],
                "revokedAtMs": now - 1,
                "expiresAtMs": now - 1,
            },
            "later": {"role": "operator", "scopes": ["*"], "expiresAtMs": now + 60_000},
            "soon-revoked": {"role": "operator", "scopes": ["*"], "revokedAtMs": now + 60_000},
        }
    )
    for token, message, details in (
        (None, "A bearer token is required", None),
        ("", "A bearer token is required", None),
        ("nope", "Invalid token", None),
        ("old", "Token expired; issue a refreshed token.", {"refresh": "smithers token issue"}),
        ("gone", "Token has been revoked", {"refresh": "smithers token issue"}),
    ):
        with pytest.raises(SmithersError) as info:
            await _auth(provider, token)
        assert info.value.code == "UNAUTHORIZED"
        assert info.value.message == message
        assert info.value.details == details
    assert (await _auth(provider, "later")).role == "operator"
    assert (await _auth(provider, "soon-revoked")).role == "operator"


async def test_digest_keys_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cret-operator-token"
    provider = _provider(
        tokens={
            f"sha256:{_sha(secret)}": {"role": "operator", "scopes": ["*"]},
            "plain": {"role": "viewer", "scopes": ["run:read"]},
        }
    )
    calls: list[tuple[bytes, bytes]] = []
    real = token_provider.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(token_provider.hmac, "compare_digest", spy)
    identity = await _auth(provider, secret)
    assert identity.role == "operator" and identity.token_id == _sha(secret)[:16]
    # Every configured grant is compared (no early exit), each as a 32-byte digest.
    assert len(calls) == 2 and all(len(a) == len(b) == 32 for a, b in calls)
    with pytest.raises(SmithersError):
        await _auth(provider, f"sha256:{_sha(secret)}")  # the digest itself is not a token
    with pytest.raises(SmithersError) as info:
        _provider(tokens={"sha256:abc": {"role": "x", "scopes": []}})
    assert info.value.code == "CONFIG_INVALID"


async def test_tokens_file_is_reloaded_for_revocation(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(f'[tokens."sha256:{_sha("t1")}"]\nrole = "operator"\nscopes = ["*"]\n')
    provider = _provider(tokens_file=str(path))
    assert (await _auth(provider, "t1")).role == "operator"
    revoked = int(time.time() * 1000) - 1
    path.write_text(
        f'[tokens."sha256:{_sha("t1")}"]\nrole = "operator"\nscopes = ["*"]\n'
        f"revoked_at_ms = {revoked}\n"
    )
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    with pytest.raises(SmithersError) as info:
        await _auth(provider, "t1")
    assert info.value.message == "Token has been revoked"


async def test_config_file_with_tokens_file(tmp_path: Path) -> None:
    (tmp_path / ".smithers").mkdir()
    (tmp_path / ".smithers" / "tokens.toml").write_text(
        '[tokens.abc]\nrole = "operator"\nscopes = ["run:read"]\nuser_id = "user:a"\n'
    )
    (tmp_path / "smithers.toml").write_text(
        '[auth]\nmode = "token"\ntokens_file = ".smithers/tokens.toml"\n'
    )
    config = load_config(tmp_path / "smithers.toml")
    gw = make_gateway(tmp_path, auth=config.auth)
    async with running(gw), http(gw, "abc") as c:
        r = await rpc(c, "health")
        assert r.status_code == 200
        r = await rpc(c, "launchRun", {"workflow": "deploy"})
        assert r.status_code == 403


async def test_over_the_wire_refresh_detail(tmp_path: Path) -> None:
    tokens = {"old": {"role": "operator", "scopes": ["*"], "expiresAtMs": 1}}
    async with running(make_gateway(tmp_path, tokens=tokens)) as gw, http(gw, "old") as c:
        r = await rpc(c, "health")
        assert r.status_code == 401
        assert r.json()["error"] == {
            "version": "v1",
            "code": "UNAUTHORIZED",
            "message": "Token expired; issue a refreshed token.",
            "refresh": "smithers token issue",
        }


def test_distribution_and_entry_point() -> None:
    eps = {ep.name: ep for ep in metadata.entry_points(group="smithers.plugins")}
    assert eps["smithers_auth_token"].value == "smithers_auth_token"
    assert eps["smithers_auth_token"].dist is not None
    assert eps["smithers_auth_token"].dist.metadata["Name"] == "smithers-auth-token"
    # Imported from the repo root, the installed src-layout package wins (D1).
    out = subprocess.run(
        [sys.executable, "-c", "import smithers_auth_token; print(smithers_auth_token.__file__)"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(out).parts[-3:] == ("src", "smithers_auth_token", "__init__.py")


def test_new_tokens_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token pasted on a command line must not read as an option (one in 64 would)."""
    from smithers_auth_token import grants

    drawn = iter(["-looks-like-an-option", "-again", "fine-token"])
    monkeypatch.setattr(grants.secrets, "token_urlsafe", lambda n: next(drawn))
    assert grants.new_token() == "fine-token"
