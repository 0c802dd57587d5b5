"""``smithers`` command line: --version, --help, and ``plugins list``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smithers_core import __version__


def smithers(*args: str, env_extra: dict[str, str] | None = None, cwd: Path | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "smithers_core", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def test_version() -> None:
    out = smithers("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"smithers {__version__}"


@pytest.mark.parametrize("command", [[], ["plugins"], ["plugins", "list"]])
def test_help_on_every_command(command: list[str]) -> None:
    out = smithers(*command, "--help")
    assert out.returncode == 0
    assert "usage: smithers" in out.stdout


def test_plugins_list_json(fixture_plugins: Path, tmp_path: Path) -> None:
    out = smithers(
        "plugins", "list", "--json", env_extra={"PYTHONPATH": str(fixture_plugins)}, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    names = [r["name"] for r in rows]
    assert names == sorted(names)
    by = {r["name"]: r for r in rows}
    assert by["core.auth_none"] == {
        "name": "core.auth_none",
        "distribution": "smithers-core",
        "version": __version__,
        "enabled": True,
        "required": False,
        "loaded": True,
        "error": None,
        "hooks": ["smithers_auth_modes"],
        "publicRoutes": [],
    }
    for name, public in (("core.gateway_rpc", []), ("core.gateway_ws", ["/*"])):
        assert by[name]["distribution"] == "smithers-core" and by[name]["loaded"] is True
        assert by[name]["hooks"] == ["smithers_transports"]
        assert by[name]["publicRoutes"] == public
    assert by["fixture_good"]["loaded"] and by["fixture_good"]["version"] == "1.0.0"
    assert by["fixture_broken"]["loaded"] is False
    assert "module_that_does_not_exist_anywhere" in by["fixture_broken"]["error"]
    assert "smithers_no_such_hook" in by["fixture_unknown"]["error"]


def test_plugins_list_exit_1_when_a_required_plugin_fails(
    fixture_plugins: Path, tmp_path: Path
) -> None:
    out = smithers(
        "plugins",
        "list",
        "--json",
        env_extra={"PYTHONPATH": str(fixture_plugins), "SMITHERS_PLUGINS": "fixture_broken"},
        cwd=tmp_path,
    )
    assert out.returncode == 1
    by = {r["name"]: r for r in json.loads(out.stdout)}
    assert by["fixture_broken"]["required"] is True


def test_plugins_list_reads_disable_from_config_file(fixture_plugins: Path, tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text('[plugins]\ndisable = ["fixture_good"]\n')
    out = smithers(
        "plugins", "list", "--json", env_extra={"PYTHONPATH": str(fixture_plugins)}, cwd=tmp_path
    )
    by = {r["name"]: r for r in json.loads(out.stdout)}
    assert by["fixture_good"]["enabled"] is False and by["fixture_good"]["loaded"] is False


def test_plugins_list_table(fixture_plugins: Path, tmp_path: Path) -> None:
    out = smithers("plugins", "list", env_extra={"PYTHONPATH": str(fixture_plugins)}, cwd=tmp_path)
    assert out.returncode == 0
    assert "core.auth_none" in out.stdout and "smithers-core" in out.stdout
    assert "fixture_broken:" in out.stderr
