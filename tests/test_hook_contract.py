"""Every hook is documented with its exact signature and has a test (as datasette does)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from smithers_core import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("smithers_"))


def _signature(name: str) -> str:
    fn = getattr(hookspecs, name)
    return f"{name}{inspect.signature(fn)}".replace("'", "")


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_signature(hook: str) -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert _signature(hook) in docs, f"docs/plugins.md must show `{_signature(hook)}`"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    tests = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py"))
    assert f"def test_hook_{hook}(" in tests


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_spec_has_a_docstring(hook: str) -> None:
    doc = getattr(hookspecs, hook).__doc__ or ""
    assert "Called" in doc and "Returns" in doc


def _plugin_distributions() -> list[Path]:
    named = [ROOT / n for n in ("smithers_auth_token", "smithers_auth_jwt", "smithers_ui")]
    more = sorted(p for p in (ROOT / "plugins").glob("*") if p.is_dir())
    return [p for p in named + more if (p / "pyproject.toml").is_file()]


@pytest.mark.parametrize("dist", _plugin_distributions(), ids=lambda p: p.name)
def test_plugin_imports_from_repo_root_without_shadowing(dist: Path) -> None:
    package = next(p.name for p in (dist / "src").iterdir() if (p / "__init__.py").is_file())
    code = f"import {package}, sys; print({package}.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(out).resolve().is_relative_to((dist / "src").resolve()), out
