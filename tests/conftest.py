from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests import stores
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

BOTH_STORES = {
    "test_engine_approvals",
    "test_engine_basic",
    "test_engine_cancel",
    "test_engine_cycles",
    "test_engine_failures",
    "test_engine_loops_timers",
    "test_engine_misc",
    "test_engine_processes",
    "test_engine_resume",
    "test_engine_signals",
    "test_engine_store_concurrency",
    "test_eventhub",
    "test_store",
    "test_store_queries",
    "test_run_service",
    "test_run_control",
    "test_rewind",
    "test_devtools",
    "test_gateway_bridge",
    "test_gateway_core_transports",
    "test_gateway_defaults",
    "test_gateway_error_codes",
    "test_gateway_extensions",
    "test_gateway_http",
    "test_gateway_lifecycle",
    "test_gateway_outputs",
    "test_gateway_plugins",
    "test_gateway_scopes",
    "test_gateway_streams",
    "test_gateway_unix",
    "test_gateway_ws",
    "test_gateway_ws_hardening",
    "test_cron",
    "test_webhooks",
    "test_rest_routes",
    "test_rest_stream",
    "test_server_api",
    "test_server_cli",
    "test_server_rules",
    "test_server_sse",
    "test_serve_app",
    "test_serve_abort",
    "test_replicas",
    "test_bad_input",
    "test_gateway_fuzz",
    "test_input_validation",
    "test_run_tool_limits",
    "test_signal_wait_models",
    "test_ws_protocol",
    "test_wire_compat",
    "test_http_rpc_inline",
    "test_openapi_server",
    "test_openapi_rest",
}
"""The engine, server and gateway suites: each of their tests runs on SQLite and on
PostgreSQL (``[sqlite]`` / ``[postgres]``), unless marked ``sqlite_only`` (a test of SQLite
files themselves)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: a test of SQLite files, not run on PostgreSQL")
    config.addinivalue_line("markers", "postgres_only: a test that needs PostgreSQL")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    definition = metafunc.definition
    if definition.get_closest_marker("postgres_only"):
        metafunc.parametrize("store_kind", ["postgres"], indirect=True)
    elif module in BOTH_STORES and not definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)


@pytest.fixture(autouse=True)
def store_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The store of this test (``tests.stores``): SQLite unless parametrized to PostgreSQL."""
    kind = getattr(request, "param", "sqlite")
    if kind != "postgres":
        monkeypatch.delenv("SMITHERS_DB", raising=False)
        yield kind
        return
    stores.require_postgres()
    stores.begin("postgres")
    monkeypatch.setenv("SMITHERS_DB", stores.url("smithers.db"))
    try:
        yield kind
    finally:
        stores.drop_schemas(stores.end())


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
