"""``smithers`` builds its parser from the ``smithers_cli_commands`` hook: core's commands come
from the default plugin ``core.cli``, ``token`` from ``smithers_auth_token``, ``--jwt`` from the
``jwt`` mode's issuing capability; disabling a plugin removes what it contributes, and neither a
broken plugin nor a broken config takes the other commands down."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from smithers_core import hookimpl
from smithers_core.cli.main import build_parser, config_option, load_command_plugins
from smithers_core.contributions import CliCommand
from smithers_core.plugins import load_plugins
from tests.plugin_fixtures import write_distribution

HELLO_PLUGIN = """
from smithers_core import hookimpl
from smithers_core.contributions import CliCommand

def configure(parser):
    parser.add_argument("name")
    parser.add_argument("--shout", action="store_true")
    parser.set_defaults(handler=greet)

def greet(args):
    text = f"hello {args.name}"
    print(text.upper() if args.shout else text)
    return 7

@hookimpl
def smithers_cli_commands(host):
    modes = ", ".join(sorted(host.auth_modes()))
    return [CliCommand("hello", "say hello", configure, description=f"modes: {modes}")]
"""

FAILING_HOOK_PLUGIN = """
from smithers_core import hookimpl

@hookimpl
def smithers_cli_commands(host):
    raise RuntimeError("commands are broken today")
"""


def smithers(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "smithers_core", *args],
        cwd=cwd,
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def a_jwt() -> str:
    now = 1_700_000_000
    claims = {"iss": "i", "aud": "a", "sub": "bob", "iat": now, "exp": now + 60}
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def test_a_plugin_distribution_contributes_a_command_that_runs(tmp_path: Path) -> None:
    site = write_distribution(
        tmp_path / "site",
        "smithers-hello",
        {"smithers_hello": HELLO_PLUGIN},
        {"hello": "smithers_hello"},
    )
    env = {"PYTHONPATH": str(site)}
    done = smithers("hello", "world", "--shout", cwd=tmp_path, env=env)
    assert (done.returncode, done.stdout) == (7, "HELLO WORLD\n"), done.stderr
    helped = smithers("hello", "--help", cwd=tmp_path, env=env)
    assert "modes: jwt, none, token, trusted-proxy" in helped.stdout  # host.auth_modes()
    listed = smithers("--help", cwd=tmp_path, env=env)
    assert "say hello" in listed.stdout
    (tmp_path / "smithers.toml").write_text('[plugins]\ndisable = ["hello"]\n')
    disabled = smithers("hello", "world", cwd=tmp_path, env=env)
    assert disabled.returncode == 2 and "invalid choice: 'hello'" in disabled.stderr


def test_core_commands_come_from_the_core_cli_plugin(tmp_path: Path) -> None:
    done = smithers("plugins", "list", "--json", cwd=tmp_path)
    by = {row["name"]: row for row in json.loads(done.stdout)}
    assert by["core.cli"]["loaded"] and by["core.cli"]["hooks"] == ["smithers_cli_commands"]
    assert by["smithers_auth_token"]["hooks"] == ["smithers_auth_modes", "smithers_cli_commands"]
    assert by["smithers_auth_jwt"]["hooks"] == ["smithers_auth_modes"]  # a capability, no hook
    gone = smithers("up", "--help", cwd=tmp_path, env={"SMITHERS_DISABLE_PLUGINS": "core.cli"})
    assert gone.returncode == 2 and "invalid choice: 'up'" in gone.stderr


def test_without_the_token_plugin_there_is_no_token_command(tmp_path: Path) -> None:
    env = {"SMITHERS_DISABLE_PLUGINS": "smithers_auth_token"}
    done = smithers("token", "issue", "--scopes", "*", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "invalid choice: 'token'" in done.stderr
    assert "note:" not in done.stderr  # disabled is not broken
    (tmp_path / "other.toml").write_text('[plugins]\ndisable = ["smithers_auth_token"]\n')
    by_file = smithers("token", "issue", "--scopes", "*", "--config", "other.toml", cwd=tmp_path)
    assert by_file.returncode == 2 and "invalid choice: 'token'" in by_file.stderr


def test_without_the_jwt_plugin_there_is_no_jwt_flag(tmp_path: Path) -> None:
    env = {"SMITHERS_DISABLE_PLUGINS": "smithers_auth_jwt"}
    args = ["token", "issue", "--jwt", "--issuer", "i", "--audience", "a", "--scopes", "*"]
    done = smithers(*args, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "unrecognized arguments: --jwt" in done.stderr

    token = a_jwt()
    inspected = smithers("token", "inspect", token, "--json", cwd=tmp_path, env=env)
    assert inspected.returncode == 0, inspected.stderr
    report = json.loads(inspected.stdout)
    digest = report["digest"]
    assert report["kind"] == "opaque" and "jwt" not in report
    assert report["tokenId"] == digest[len("sha256:") : len("sha256:") + 16]
    assert report["verdict"] == "accepted"  # no config: auth is off
    with_plugin = json.loads(smithers("token", "inspect", token, "--json", cwd=tmp_path).stdout)
    assert with_plugin["kind"] == "jwt" and with_plugin["jwt"]["claims"]["sub"] == "bob"


def test_a_broken_config_or_plugin_leaves_other_commands_working(tmp_path: Path) -> None:
    site = write_distribution(
        tmp_path / "site",
        "smithers-failing",
        {"smithers_failing": FAILING_HOOK_PLUGIN},
        {"failing": "smithers_failing"},
    )
    write_distribution(
        site, "smithers-broken", {"smithers_broken": "import no_such_module_here\n"},
        {"broken": "smithers_broken"},
    )  # fmt: skip
    env = {"PYTHONPATH": str(site)}
    (tmp_path / "smithers.toml").write_text("[plugins\nthis is not toml\n")
    issued = smithers("token", "issue", "--scopes", "*", "--json", cwd=tmp_path, env=env)
    assert issued.returncode == 0, issued.stderr
    assert json.loads(issued.stdout)["kind"] == "opaque"
    listing = smithers("plugins", "list", cwd=tmp_path, env=env)
    assert listing.returncode == 2
    assert listing.stderr.startswith("error: CONFIG_INVALID: ")
    typo = smithers("tokn", cwd=tmp_path, env=env)
    assert typo.returncode == 2 and "invalid choice: 'tokn'" in typo.stderr
    assert "note: plugin 'broken' (smithers-broken 1.0.0) did not load" in typo.stderr
    assert "note: plugin 'failing'" in typo.stderr and "commands are broken today" in typo.stderr


def test_a_command_group_without_a_subcommand_prints_its_help(tmp_path: Path) -> None:
    for group in ("runs", "plugins", "token"):
        done = smithers(group, cwd=tmp_path)
        assert done.returncode == 2 and f"usage: smithers {group}" in done.stderr
    bare = smithers(cwd=tmp_path)
    assert bare.returncode == 2 and "usage: smithers [-h]" in bare.stderr


def test_config_option_is_found_anywhere() -> None:
    assert config_option(["token", "inspect", "t", "--config", "a.toml"]) == "a.toml"
    assert config_option(["--config=b.toml", "gateway"]) == "b.toml"
    assert config_option(["gateway", "--config", "a", "--config", "c"]) == "c"
    assert config_option(["runs", "signal", "r", "n", "--", "--config", "x"]) is None
    assert config_option(["plugins", "list", "--config"]) is None


def test_parser_honours_disables_but_not_requirements(tmp_path: Path) -> None:
    config = tmp_path / "smithers.toml"
    config.write_text('[plugins]\nenable = ["not_installed"]\ndisable = ["core.cli"]\n')
    host = load_command_plugins(["--config", str(config)], environ={})
    assert not host.infos["core.cli"].enabled
    assert "not_installed" not in host.infos  # required plugins are checked by the commands
    env_host = load_command_plugins([], environ={"SMITHERS_DISABLE_PLUGINS": "smithers_auth_jwt"})
    assert not env_host.infos["smithers_auth_jwt"].loaded


def test_build_parser_adds_every_contributed_command(capsys: pytest.CaptureFixture[str]) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--n", type=int, default=1)
        parser.set_defaults(handler=lambda args: args.n * 2)

    class Twice:
        @hookimpl
        def smithers_cli_commands(self) -> list[CliCommand]:  # ``host`` may be left out
            return [CliCommand("twice", "double it", configure)]

    parser = build_parser(load_plugins(extra=[("twice", Twice())], environ={}))
    args = parser.parse_args(["twice", "--n", "21"])
    assert args.handler(args) == 42
    group = parser.parse_args(["runs"])
    assert group.handler(group) == 2
    assert "usage: smithers runs" in capsys.readouterr().err
