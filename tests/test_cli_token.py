"""``smithers token issue|inspect`` through the real command line (subprocesses)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from smithers_auth_token.grants import find_grant
from smithers_auth_token.issuing import parse_ttl, split_scopes

from smithers_core.errors import SmithersError

SECRET = "jwt-secret-for-tests-" + "z" * 24  # 45 bytes


def smithers(
    cwd: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "smithers_core", "token", *args],
        cwd=cwd,
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def issue_json(cwd: Path, *args: str) -> dict[str, Any]:
    done = smithers(cwd, "issue", "--json", *args)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def write_jwt_config(root: Path, secret: str = SECRET) -> Path:
    (root / "jwt.secret").write_text(secret + "\n")
    config = root / "smithers.toml"
    config.write_text(
        '[auth]\nmode = "jwt"\nissuer = "https://id.example"\naudience = "smithers"\n'
        'secret_file = "jwt.secret"\nscopes_claim = "perms"\n'
    )
    return config


# -- unit helpers ------------------------------------------------------------------------------
def test_parse_ttl() -> None:
    assert parse_ttl("90") == 90
    assert parse_ttl("45s") == 45
    assert parse_ttl("30m") == 1800
    assert parse_ttl("1h") == 3600
    assert parse_ttl("1h30m") == 5400
    assert parse_ttl("7d") == 7 * 86400
    assert parse_ttl("2w") == 14 * 86400
    assert parse_ttl("never") is None
    for bad in ("", "h", "1x", "1h 2m", "-5"):
        with pytest.raises(SmithersError):
            parse_ttl(bad)


def test_split_scopes_and_find_grant() -> None:
    assert split_scopes(["run:read, run:write", "cron:read run:read"]) == [
        "run:read",
        "run:write",
        "cron:read",
    ]
    digest = hashlib.sha256(b"tok").hexdigest()
    grants: dict[str, Any] = {f"sha256:{digest.upper()}": {"role": "a"}, "plain": {"role": "b"}}
    assert find_grant("tok", grants) == ("digest", {"role": "a"})
    assert find_grant("plain", grants) == ("plain", {"role": "b"})
    assert find_grant("other", grants) is None


# -- issue (opaque) ----------------------------------------------------------------------------
def test_issue_opaque_json(tmp_path: Path) -> None:
    data = issue_json(tmp_path, "--role", "viewer", "--scopes", "run:read,approval:submit",
                      "--user", "alice", "--ttl", "1h")  # fmt: skip
    token = data["token"]
    assert len(token) >= 43
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert data["digest"] == f"sha256:{digest}"
    grant = data["grant"]
    assert grant["role"] == "viewer"
    assert grant["scopes"] == ["run:read", "approval:submit"]
    assert grant["userId"] == "alice"
    assert grant["tokenId"] == digest[:16]
    assert grant["expiresAtMs"] - grant["issuedAtMs"] == 3_600_000


def test_issue_opaque_prints_a_toml_grant_keyed_by_digest(tmp_path: Path) -> None:
    done = smithers(tmp_path, "issue", "--scopes", "*")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    token = lines[2].strip()
    start = next(i for i, line in enumerate(lines) if line.startswith('["sha256:'))
    end = lines.index("", start)
    grant_file = tomllib.loads("\n".join(lines[start:end]))
    digest = "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    assert grant_file == {
        digest: {
            "role": "operator",
            "scopes": ["*"],
            "tokenId": digest[7:23],
            "issuedAtMs": grant_file[digest]["issuedAtMs"],
        }
    }
    inline_start = next(i for i, line in enumerate(lines) if line.startswith("[auth.tokens."))
    inline = tomllib.loads("\n".join(lines[inline_start : lines.index("", inline_start)]))
    assert inline["auth"]["tokens"] == grant_file
    assert token not in "\n".join(lines[3:])  # only the digest goes into the config


def test_issue_appends_to_a_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / ".smithers" / "tokens.toml"
    first = issue_json(tmp_path, "--scopes", "run:read", "--tokens-file", str(path))
    second = issue_json(tmp_path, "--scopes", "run:write", "--tokens-file", str(path))
    grants = tomllib.loads(path.read_text())
    assert set(grants) == {first["digest"], second["digest"]}
    assert grants[second["digest"]]["scopes"] == ["run:write"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_issue_usage_errors(tmp_path: Path) -> None:
    assert smithers(tmp_path, "issue").returncode == 2  # --scopes is required
    bad = smithers(tmp_path, "issue", "--scopes", "*", "--ttl", "soon")
    assert bad.returncode == 2 and "Invalid --ttl" in bad.stderr


# -- inspect (token mode) ----------------------------------------------------------------------
def test_inspect_opaque_token_against_token_grants(tmp_path: Path) -> None:
    tokens = tmp_path / ".smithers" / "tokens.toml"
    good = issue_json(tmp_path, "--scopes", "run:read", "--user", "u1", "--tokens-file",
                      str(tokens))  # fmt: skip
    (tmp_path / "smithers.toml").write_text(
        '[auth]\nmode = "token"\ntokens_file = ".smithers/tokens.toml"\n'
    )
    done = smithers(tmp_path, "inspect", good["token"], "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["kind"] == "opaque" and report["mode"] == "token"
    assert report["grant"]["matchedBy"] == "digest"
    assert report["grant"]["scopes"] == ["run:read"]
    assert report["verdict"].startswith("accepted")
    assert good["token"] not in done.stdout

    unknown = smithers(tmp_path, "inspect", "not-a-known-token")
    assert unknown.returncode == 1
    assert "No grant in the configured tokens matches" in unknown.stdout
    assert "rejected" in unknown.stdout


def test_inspect_expired_grant_is_rejected(tmp_path: Path) -> None:
    token = "expired-token-value"
    digest = hashlib.sha256(token.encode()).hexdigest()
    (tmp_path / "smithers.toml").write_text(
        f'[auth]\nmode = "token"\n[auth.tokens."sha256:{digest}"]\nrole = "operator"\n'
        'scopes = ["*"]\nexpiresAtMs = 1000\n'
    )
    done = smithers(tmp_path, "inspect", "-", stdin=token + "\n")
    assert done.returncode == 1
    assert "Token expired; issue a refreshed token." in done.stdout
    assert "expiresAtMs: 1000 (1970-01-01T00:00:01Z)" in done.stdout


# -- JWT ---------------------------------------------------------------------------------------
def test_issue_jwt_with_flags_and_inspect_it_under_jwt_mode(tmp_path: Path) -> None:
    config = write_jwt_config(tmp_path)
    (tmp_path / "other.secret").write_text(SECRET + "\n")
    (tmp_path / "empty.toml").write_text("")  # flags only: no [auth] defaults
    data = issue_json(tmp_path, "--jwt", "--issuer", "https://id.example", "--audience",
                      "smithers", "--secret-file", str(tmp_path / "other.secret"), "--scopes",
                      "run:read", "--role", "viewer", "--user", "bob", "--ttl", "10m",
                      "--config", str(tmp_path / "empty.toml"))  # fmt: skip
    claims = data["claims"]
    assert claims["iss"] == "https://id.example" and claims["aud"] == "smithers"
    assert claims["exp"] - claims["iat"] == 600
    assert (claims["scope"], claims["role"], claims["sub"]) == ("run:read", "viewer", "bob")
    # Under the configured mode the scopes claim is named "perms", so scopes fall back to [].
    done = smithers(tmp_path, "inspect", data["token"], "--config", str(config), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["kind"] == "jwt" and report["verdict"] == "accepted"
    assert report["jwt"]["claims"]["sub"] == "bob"
    token_id = hashlib.sha256(data["token"].encode()).hexdigest()[:16]
    assert report["identity"] == {"role": "viewer", "scopes": [], "userId": "bob",
                                  "tokenId": token_id}  # fmt: skip
    assert SECRET not in done.stdout + done.stderr


def test_issue_jwt_from_config_defaults_and_wrong_secret_is_reported(tmp_path: Path) -> None:
    write_jwt_config(tmp_path)
    data = issue_json(tmp_path, "--jwt", "--scopes", "run:read run:write")
    assert data["claims"]["perms"] == "run:read run:write"  # the configured claim name
    ok = smithers(tmp_path, "inspect", data["token"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Verdict: accepted" in ok.stdout and '"run:read", "run:write"' in ok.stdout
    assert SECRET not in ok.stdout + ok.stderr

    other = tmp_path / "elsewhere"
    other.mkdir()
    write_jwt_config(other, secret="another-secret-" + "q" * 30)
    bad = smithers(other, "inspect", data["token"])
    assert bad.returncode == 1
    assert "Verdict: rejected: JWT signature verification failed" in bad.stdout
    assert "another-secret" not in bad.stdout + bad.stderr


def test_issue_jwt_refuses_a_short_secret(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("too-short\n")
    args = ["issue", "--jwt", "--issuer", "i", "--audience", "a", "--scopes", "*"]
    done = smithers(tmp_path, *args, "--secret-file", str(tmp_path / "short"))
    assert done.returncode == 2 and "shorter than 32 bytes" in done.stderr
    weak = smithers(tmp_path, *args, "--secret-file", str(tmp_path / "short"),
                    "--allow-weak-secret", "--json")  # fmt: skip
    assert weak.returncode == 0, weak.stderr
    missing = smithers(tmp_path, *args)
    assert missing.returncode == 2 and "needs the HMAC secret" in missing.stderr


def test_issue_jwt_without_pyjwt_names_the_plugin(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "jwt.py").write_text("raise ImportError('PyJWT is not installed')\n")
    (tmp_path / "s").write_text(SECRET)
    done = smithers(tmp_path, "issue", "--jwt", "--issuer", "i", "--audience", "a", "--scopes",
                    "*", "--secret-file", str(tmp_path / "s"),
                    env={"PYTHONPATH": str(blocker)})  # fmt: skip
    assert done.returncode == 2
    assert "smithers-auth-jwt" in done.stderr


# -- inspect in other modes --------------------------------------------------------------------
def test_inspect_without_config_and_in_trusted_proxy_mode(tmp_path: Path) -> None:
    done = smithers(tmp_path, "inspect", "whatever")
    assert done.returncode == 0
    assert "Configured auth mode: none (no config file)" in done.stdout
    assert "auth is off" in done.stdout
    (tmp_path / "smithers.toml").write_text(
        '[auth]\nmode = "trusted-proxy"\ntrusted_proxies = ["unix"]\n'
    )
    proxy = smithers(tmp_path, "inspect", "whatever", "--json")
    report = json.loads(proxy.stdout)
    assert report["mode"] == "trusted-proxy" and "does not use bearer tokens" in report["note"]
    assert "verdict" not in report


def test_inspect_with_a_mode_nobody_provides(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text('[auth]\nmode = "kerberos"\n')
    done = smithers(tmp_path, "inspect", "tok")
    assert done.returncode == 1
    assert "no installed plugin provides auth mode 'kerberos'" in done.stdout


def test_inspect_finds_grants_inline_and_in_a_tokens_file_under_tokens(tmp_path: Path) -> None:
    inline_digest = hashlib.sha256(b"inline-token").hexdigest()
    file_digest = hashlib.sha256(b"file-token").hexdigest()
    (tmp_path / "grants.toml").write_text(
        f'[tokens."sha256:{file_digest}"]\nrole = "viewer"\nscopes = ["run:read"]\n'
    )
    (tmp_path / "smithers.toml").write_text(
        '[auth]\nmode = "token"\ntokens_file = "grants.toml"\n'
        f'[auth.tokens."sha256:{inline_digest}"]\nrole = "admin"\nscopes = ["*"]\n'
    )
    for token, role in (("inline-token", "admin"), ("file-token", "viewer")):
        report = json.loads(smithers(tmp_path, "inspect", token, "--json").stdout)
        assert report["grant"]["matchedBy"] == "digest"
        assert report["grant"]["role"] == role


def test_issue_jwt_uses_the_configured_hmac_algorithm(tmp_path: Path) -> None:
    (tmp_path / "jwt.secret").write_text("k" * 64)
    (tmp_path / "smithers.toml").write_text(
        '[auth]\nmode = "jwt"\nissuer = "i"\naudience = ["a", "b"]\nsecret_file = "jwt.secret"\n'
        'algorithms = ["HS512"]\n'
    )
    data = issue_json(tmp_path, "--jwt", "--scopes", "*")
    header = json.loads(base64.urlsafe_b64decode(data["token"].split(".")[0] + "=="))
    assert header["alg"] == "HS512"
    assert data["claims"]["aud"] == ["a", "b"]
    done = smithers(tmp_path, "inspect", data["token"], "--json")
    assert json.loads(done.stdout)["verdict"] == "accepted", done.stdout + done.stderr
