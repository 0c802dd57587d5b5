"""``python3 dev.py bench``: installs the bench extra and wrk (or says how), then runs the bench."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dev(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("dev_under_test", REPO_ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    mod: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    calls: list[tuple[str, ...]] = []
    envs: list[dict[str, str] | None] = []

    def fake_run(*cmd: Any, check: bool = True, env: dict[str, str] | None = None) -> int:
        calls.append(tuple(str(c) for c in cmd))
        envs.append(env)
        return 0

    monkeypatch.setattr(mod, "run", fake_run)
    monkeypatch.setattr(mod, "setup", lambda: None)
    monkeypatch.setattr(mod, "postgres_bindir", lambda: None)  # no real cluster here
    monkeypatch.delenv("SMITHERS_TEST_POSTGRES_URL", raising=False)
    monkeypatch.delenv("SMITHERS_BENCH_POSTGRES_URL", raising=False)
    mod.envs = envs  # type: ignore[attr-defined]
    monkeypatch.setattr(mod, "VENV", tmp_path)
    mod.calls = calls  # type: ignore[attr-defined]
    return mod


def test_wrk_present_installs_nothing(dev: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert dev.ensure_wrk() is True
    assert dev.calls == []


def test_wrk_missing_without_root_installs_nothing(
    dev: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dev.shutil, "which", lambda name: None)
    monkeypatch.setattr(dev.os, "geteuid", lambda: 1000, raising=False)
    assert dev.ensure_wrk() is False
    assert dev.calls == []


def test_wrk_missing_as_root_updates_lists_when_install_fails(
    dev: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed: list[bool] = []
    calls: list[tuple[str, ...]] = dev.calls

    def which(name: str) -> str | None:
        if name == "apt-get":
            return "/usr/bin/apt-get"
        return "/usr/bin/wrk" if installed else None

    def fake_run(*cmd: Any, check: bool = True, env: Any = None) -> int:
        calls.append(tuple(str(c) for c in cmd))
        if cmd[1] == "update":
            installed.append(True)
            return 0
        return 0 if installed else 100  # no package lists on a fresh image

    monkeypatch.setattr(dev.shutil, "which", which)
    monkeypatch.setattr(dev.os, "geteuid", lambda: 0, raising=False)
    monkeypatch.setattr(dev, "run", fake_run)
    assert dev.ensure_wrk() is True
    install = ("install", "-y", "wrk")
    assert [c[1:] for c in calls] == [install, ("update",), install]


def test_bench_without_wrk_stops_before_http_with_instructions(
    dev: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(dev, "ensure_wrk", lambda: False)
    assert dev.bench(["--quick", "http"]) == 2
    assert "apt-get install -y wrk" in capsys.readouterr().err
    assert dev.bench(["--quick"]) == 2  # every scenario, so http too
    assert not [c for c in dev.calls if c[1:3] == ("-m", "bench")]


def test_bench_installs_extra_once_and_passes_arguments(
    dev: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dev, "ensure_wrk", lambda: False)  # ws needs no wrk
    assert dev.bench(["--quick", "ws"]) == 0
    assert dev.bench(["ws", "fanout"]) == 0
    installs = [c for c in dev.calls if ".[bench]" in c]
    assert len(installs) == 1
    runs = [c[3:] for c in dev.calls if c[1:3] == ("-m", "bench")]
    assert runs == [("--quick", "ws"), ("ws", "fanout")]


def test_tests_without_postgresql_say_skipped_and_fail_in_ci(
    dev: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert dev.test(["-x"]) == 0
    assert "the PostgreSQL test suites are SKIPPED" in capsys.readouterr().err
    pytest_env = dev.envs[-1]
    assert "SMITHERS_TEST_POSTGRES_URL" not in pytest_env
    monkeypatch.setenv("CI", "true")
    with pytest.raises(SystemExit) as stop:
        dev.test([])
    assert "CI never skips the PostgreSQL test suites" in str(stop.value.code)


def test_a_given_postgresql_url_is_used_as_is(dev: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("SMITHERS_TEST_POSTGRES_URL", "postgresql://u@127.0.0.1:1/db")
    assert dev.test([]) == 0
    assert dev.envs[-1]["SMITHERS_TEST_POSTGRES_URL"] == "postgresql://u@127.0.0.1:1/db"
