from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.plugin_fixtures import (
    BROKEN_PLUGIN,
    GOOD_PLUGIN,
    UNKNOWN_HOOK_PLUGIN,
    write_distribution,
)

settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fixture_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Three throwaway distributions on sys.path: good, unknown-hook and broken plugins."""
    root = tmp_path / "site"
    write_distribution(
        root,
        "smithers-fixture-good",
        {"fixture_good": GOOD_PLUGIN},
        {"fixture_good": "fixture_good"},
    )
    write_distribution(
        root,
        "smithers-fixture-unknown",
        {"fixture_unknown": UNKNOWN_HOOK_PLUGIN},
        {"fixture_unknown": "fixture_unknown"},
    )
    write_distribution(
        root,
        "smithers-fixture-broken",
        {"fixture_broken": BROKEN_PLUGIN},
        {"fixture_broken": "fixture_broken"},
    )
    monkeypatch.syspath_prepend(str(root))
    for var in ("SMITHERS_PLUGINS", "SMITHERS_DISABLE_PLUGINS", "SMITHERS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    yield root
    for mod in ("fixture_good", "fixture_unknown", "fixture_broken"):
        sys.modules.pop(mod, None)
