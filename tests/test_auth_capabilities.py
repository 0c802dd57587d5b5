"""The optional command-line capabilities of auth modes (``smithers_core.auth.capabilities``):
what each first-party mode implements, and that ``smithers token`` and ``smithers gateway`` find
them on any mode, named by nobody."""

from __future__ import annotations

import argparse
import json
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
from pydantic import BaseModel
from smithers_auth_proxy import TrustedProxyMode
from smithers_auth_token.operator import REMINDER_NOTE, SESSION_NOTE

from smithers_auth_jwt import JwtMode
from smithers_auth_token import TokenAuthConfig, TokenMode
from smithers_core import hookimpl
from smithers_core.auth import AuthMode, AuthRequest, Identity
from smithers_core.auth.capabilities import (
    CredentialDescriber,
    CredentialDescription,
    CredentialIssuer,
    CredentialRequest,
    IssuedCredential,
    OperatorAccess,
    OperatorAccessProvider,
)
from smithers_core.auth.tokens import token_id
from smithers_core.cli.gateway import access_banner, operator_access
from smithers_core.cli.main import build_parser
from smithers_core.config import SmithersConfig
from smithers_core.errors import SmithersError
from smithers_core.plugins import load_plugins

SECRET = "capability-secret-" + "x" * 30


def accepts(settings: Mapping[str, Any], token: str) -> Identity:
    data = {k: v for k, v in settings.items() if k != "mode"}
    provider = TokenMode().create(TokenAuthConfig.model_validate(data))
    request = AuthRequest(transport="http", token=token)
    identity: Identity = anyio.run(provider.authenticate, request)
    return identity


def test_token_id_is_the_first_16_hex_of_sha256() -> None:
    assert token_id("abc") == "ba7816bf8f01cfea"


def test_first_party_modes_declare_their_capabilities() -> None:
    token, jwt_mode, proxy = TokenMode(), JwtMode(), TrustedProxyMode()
    assert isinstance(token, OperatorAccessProvider)
    assert not isinstance(token, CredentialIssuer | CredentialDescriber)
    assert isinstance(jwt_mode, CredentialIssuer) and isinstance(jwt_mode, CredentialDescriber)
    assert not isinstance(jwt_mode, OperatorAccessProvider)
    assert isinstance(proxy, CredentialDescriber) and not isinstance(proxy, CredentialIssuer)


def test_token_mode_operator_access_first_run_then_session(tmp_path: Path) -> None:
    path = tmp_path / ".smithers" / "tokens.toml"
    settings = {"mode": "token", "tokens_file": str(path)}
    first = TokenMode().operator_access(settings, session=True)
    assert first.credential and first.note == (
        f"created an operator token (shown once; its digest is in {path})"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (path.parent / ".gitignore").read_text() == "*\n"
    stored = tomllib.loads(path.read_text())
    assert first.credential not in path.read_text()
    (grant,) = stored.values()
    assert grant == {
        "role": "operator",
        "scopes": ["*"],
        "userId": "operator",
        "tokenId": token_id(first.credential),
    }
    assert accepts(first.settings, first.credential).scopes == ("*",)

    later = TokenMode().operator_access(settings, session=False)
    assert later == OperatorAccess(settings, REMINDER_NOTE)

    text = {**settings, "tokens": path.read_text()}  # what the config loader hands over
    session = TokenMode().operator_access(text, session=True)
    assert session.note == SESSION_NOTE and session.credential
    assert accepts(session.settings, session.credential).user_id == "operator"
    assert accepts(session.settings, first.credential).role == "operator"
    assert session.credential not in path.read_text()  # never written to disk


def test_gateway_asks_whatever_mode_is_configured() -> None:
    class Keyring:
        config_model: type[BaseModel] = BaseModel

        def create(self, config: BaseModel) -> Any:
            raise AssertionError("not needed")

        def operator_access(self, settings: Mapping[str, Any], *, session: bool) -> OperatorAccess:
            return OperatorAccess({**settings, "seen": session}, "keyring credential", "kr-1")

    class Plugin:
        @hookimpl
        def smithers_auth_modes(self) -> dict[str, AuthMode]:
            return {"keyring": Keyring()}

    plugins = load_plugins(extra=[("keyring", Plugin())], environ={})
    config = SmithersConfig(auth={"mode": "keyring"})
    access = operator_access(plugins, config, session=True)
    assert access is not None and access.settings == {"mode": "keyring", "seen": True}
    assert access_banner(access) == "  keyring credential:\n\n    kr-1\n"
    assert operator_access(plugins, SmithersConfig(), session=True) is None  # mode none
    assert access_banner(OperatorAccess({}, "just a note")) == "  just a note"
    assert access_banner(OperatorAccess({})) is None


def _issue_args(**extra: Any) -> argparse.Namespace:
    values = {
        "issuer": None,
        "audience": None,
        "secret_file": None,
        "secret_env": None,
        "algorithm": None,
        "allow_weak_secret": False,
    }
    return argparse.Namespace(**{**values, **extra})


def test_jwt_mode_issues_and_describes_through_its_capabilities() -> None:
    mode = JwtMode(now=lambda: 1_700_000_000)
    settings = {"mode": "jwt", "issuer": "https://id", "audience": "smithers", "secret": SECRET}
    request = CredentialRequest(role="viewer", scopes=("run:read",), user_id="ann")
    issued = mode.issue(request, _issue_args(), settings)
    token = issued.report["token"]
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], audience="smithers", options={"verify_exp": False}
    )
    assert claims["exp"] - claims["iat"] == 3600 and claims["iat"] == 1_700_000_000
    assert (claims["role"], claims["scope"], claims["sub"]) == ("viewer", "run:read", "ann")
    assert issued.report["tokenId"] == token_id(token)
    assert issued.text.startswith("New JWT (HS256, expires 2023-11-14T23:13:20Z):")
    with pytest.raises(SmithersError, match="--ttl never"):
        mode.issue(CredentialRequest("r", ("*",), expires=False), _issue_args(), settings)

    described = mode.describe_credential(token, configured=False)
    assert described is not None and described.kind == "jwt"
    assert described.facts["claims"]["sub"] == "ann" and described.uses_credentials
    assert "  exp: 2023-11-14T23:13:20Z (in the future)" in described.text
    assert mode.describe_credential("opaque-token", configured=True) is None


def test_trusted_proxy_mode_says_it_uses_no_bearer_credentials() -> None:
    mode = TrustedProxyMode()
    described = mode.describe_credential("anything", configured=True)
    assert described is not None and not described.uses_credentials
    assert described.note and "does not use bearer tokens" in described.note
    assert mode.describe_credential("anything", configured=False) is None


class Stamp:
    """A mode named by no command: it issues ``stamp-<user>`` and recognises those."""

    config_model: type[BaseModel] = BaseModel
    issue_help = "issue a stamp instead"

    def create(self, config: BaseModel) -> Any:
        raise AssertionError("not needed")

    def add_issue_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--ink", default="blue")

    def issue(
        self, request: CredentialRequest, args: argparse.Namespace, settings: Mapping[str, Any]
    ) -> IssuedCredential:
        stamp = f"stamp-{request.user_id}-{args.ink}-{settings.get('colour', 'none')}"
        return IssuedCredential({"kind": "stamp", "token": stamp}, f"Stamp: {stamp}")

    def describe_credential(
        self, credential: str, *, configured: bool
    ) -> CredentialDescription | None:
        if not credential.startswith("stamp-"):
            return None
        return CredentialDescription("stamp", {"user": credential.split("-")[1]}, "A stamp.")


class StampPlugin:
    @hookimpl
    def smithers_auth_modes(self) -> dict[str, AuthMode]:
        return {"stamp": Stamp()}


def test_token_command_finds_any_mode_with_capabilities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parser = build_parser(load_plugins(extra=[("stamp", StampPlugin())], environ={}))
    args = parser.parse_args(["token", "issue", "--stamp", "--ink", "red", "--scopes", "*",
                              "--user", "zoe", "--json"])  # fmt: skip
    assert args.handler(args) == 0
    assert json.loads(capsys.readouterr().out) == {"kind": "stamp", "token": "stamp-zoe-red-none"}

    (tmp_path / "smithers.toml").write_text('[auth]\nmode = "stamp"\ncolour = "gold"\n')
    args = parser.parse_args(["token", "issue", "--stamp", "--scopes", "*", "--user", "zoe"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == "Stamp: stamp-zoe-blue-gold\n"  # [auth] of its own mode

    (tmp_path / "smithers.toml").unlink()
    args = parser.parse_args(["token", "inspect", "stamp-zoe-red", "--json"])
    assert args.handler(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "stamp" and report["stamp"] == {"user": "zoe"}
    args = parser.parse_args(["token", "inspect", "stamp-zoe-red"])
    args.handler(args)
    assert "Token kind: stamp" in capsys.readouterr().out
