"""Plugin discovery, enable/disable, validation and the typed hook accessors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from smithers_core import hookimpl
from smithers_core.auth import AuthRequest, Identity
from smithers_core.config import PluginsSection
from smithers_core.contributions import HostContext, RouteSpec, UiMount
from smithers_core.errors import SmithersError
from smithers_core.plugins import ListingHost, load_plugins

pytestmark = pytest.mark.anyio


async def test_fixture_plugin_is_discovered_and_its_hook_called(fixture_plugins: Path) -> None:
    host = load_plugins(PluginsSection(), environ={})
    info = host.infos["fixture_good"]
    assert info.loaded and info.error is None
    assert info.distribution == "smithers-fixture-good"
    assert info.version == "1.0.0"
    assert info.hooks == ["smithers_auth_modes"]
    modes = host.auth_modes()
    assert set(modes) >= {"none", "fixture"}
    mode = modes["fixture"]
    provider = mode.create(mode.config_model.model_validate({"password": "pw"}))
    ident = await provider.authenticate(AuthRequest(transport="http", token="pw"))
    assert ident == Identity(role="viewer", scopes=("run:read",), user_id="fixture-user")
    with pytest.raises(SmithersError) as err:
        await provider.authenticate(AuthRequest(transport="http", token="nope"))
    assert err.value.code == "UNAUTHORIZED"


def test_plugin_disabled_by_config_is_not_imported(fixture_plugins: Path) -> None:
    host = load_plugins(PluginsSection(disable=["fixture_good"]), environ={})
    info = host.infos["fixture_good"]
    assert not info.enabled and not info.loaded
    assert "fixture" not in host.auth_modes()
    assert "fixture_good" not in sys.modules


def test_plugin_disabled_by_environment(fixture_plugins: Path) -> None:
    host = load_plugins(
        PluginsSection(), environ={"SMITHERS_DISABLE_PLUGINS": "fixture_good, core.auth_none"}
    )
    assert not host.infos["fixture_good"].enabled
    assert not host.infos["core.auth_none"].enabled
    assert not {"none", "fixture"} & set(host.auth_modes())


def test_unknown_hook_is_rejected_with_a_clear_error(fixture_plugins: Path) -> None:
    host = load_plugins(PluginsSection(), environ={})
    info = host.infos["fixture_unknown"]
    assert not info.loaded
    assert "smithers_no_such_hook" in (info.error or "")
    assert "unknown hook" in (info.error or "")
    assert host.infos["fixture_good"].loaded  # others unaffected


def test_unknown_hook_is_fatal_when_required(fixture_plugins: Path) -> None:
    with pytest.raises(SmithersError) as err:
        load_plugins(PluginsSection(enable=["fixture_unknown"]), environ={})
    assert err.value.code == "PLUGIN_REQUIRED"
    assert "fixture_unknown" in err.value.message
    assert "smithers_no_such_hook" in err.value.message


def test_broken_plugin_is_reported_by_name_and_not_fatal(
    fixture_plugins: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = load_plugins(PluginsSection(), environ={})
    info = host.infos["fixture_broken"]
    assert not info.loaded
    assert "module_that_does_not_exist_anywhere" in (info.error or "")
    assert any("fixture_broken" in r.getMessage() for r in caplog.records)
    assert "fixture" in host.auth_modes()


def test_broken_plugin_is_fatal_when_required_by_environment(fixture_plugins: Path) -> None:
    with pytest.raises(SmithersError) as err:
        load_plugins(PluginsSection(), environ={"SMITHERS_PLUGINS": "fixture_broken"})
    assert err.value.code == "PLUGIN_REQUIRED"
    assert err.value.details == {"plugins": ["fixture_broken"]}


def test_missing_required_plugin_fails_startup(fixture_plugins: Path) -> None:
    with pytest.raises(SmithersError) as err:
        load_plugins(PluginsSection(enable=["smithers_not_installed"]), environ={})
    assert "smithers_not_installed" in err.value.message
    assert "not installed" in err.value.message


def test_name_both_required_and_disabled_is_an_error(fixture_plugins: Path) -> None:
    with pytest.raises(SmithersError) as err:
        load_plugins(
            PluginsSection(enable=["fixture_good"]),
            environ={"SMITHERS_DISABLE_PLUGINS": "fixture_good"},
        )
    assert err.value.code == "CONFIG_INVALID"


def test_environment_lists_add_to_the_file(fixture_plugins: Path) -> None:
    host = load_plugins(
        PluginsSection(disable=["fixture_unknown"]),
        environ={"SMITHERS_DISABLE_PLUGINS": "fixture_broken"},
    )
    assert not host.infos["fixture_unknown"].enabled
    assert not host.infos["fixture_broken"].enabled
    assert host.failed_required() == []


def test_core_default_is_an_ordinary_replaceable_plugin(fixture_plugins: Path) -> None:
    class Replacement:
        @hookimpl
        def smithers_auth_modes(self) -> dict[str, object]:
            return {"none": "replaced"}

    host = load_plugins(
        PluginsSection(disable=["core.auth_none"]),
        environ={},
        extra=[("my.none", Replacement())],
    )
    assert host.auth_modes()["none"] == "replaced"
    assert host.infos["core.auth_none"].distribution == "smithers-core"


def test_same_auth_mode_from_two_plugins_is_a_conflict() -> None:
    class A:
        @hookimpl
        def smithers_auth_modes(self) -> dict[str, object]:
            return {"none": "a"}

    host = load_plugins(PluginsSection(), environ={}, extra=[("dup.none", A())])
    with pytest.raises(SmithersError) as err:
        host.auth_modes()
    assert err.value.code == "PLUGIN_CONFLICT"
    assert "dup.none" in err.value.message and "core.auth_none" in err.value.message


def test_hook_with_wrong_arguments_is_rejected() -> None:
    class Wrong:
        @hookimpl
        def smithers_transports(self, host: object, bogus: object) -> list[object]:
            return []

    host = load_plugins(PluginsSection(), environ={}, extra=[("wrong", Wrong())])
    assert not host.infos["wrong"].loaded
    assert "bogus" in (host.infos["wrong"].error or "")


# One test per hook (the hook-coverage test below insists on it) ----------------------------


def test_hook_smithers_auth_modes() -> None:
    host = load_plugins(PluginsSection(), environ={})
    assert "none" in host.auth_modes()


class _Transport:
    name = "fixture"

    def __init__(self) -> None:
        self.routes = [
            RouteSpec("/fixture/public", lambda r: None, auth="public"),
            RouteSpec("/fixture/private", lambda r: None),
        ]

    async def startup(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


class _TransportPlugin:
    @hookimpl
    def smithers_transports(self, host: HostContext) -> list[object]:
        return [_Transport()]


def test_hook_smithers_transports() -> None:
    host = load_plugins(PluginsSection(), environ={}, extra=[("fx.transport", _TransportPlugin())])
    transports = host.transports(ListingHost())
    assert sorted(t.name for t in transports) == [
        "core.gateway_rpc",
        "core.gateway_ws",
        "fixture",
        "smithers_rest",
    ]
    host.list_public_routes()
    assert host.infos["fx.transport"].public_routes == ["/fixture/public"]
    # core's WebSocket RPC authenticates in-band, so its upgrade route is listed as public
    assert host.infos["core.gateway_ws"].public_routes == ["/*"]
    assert host.infos["core.gateway_rpc"].public_routes == []
    assert host.infos["smithers_rest"].public_routes == ["/v1/api/openapi.json"]


def test_hook_smithers_schedulers() -> None:
    class Sched:
        name = "fx"
        options = frozenset({"schedule"})

        async def start(self, host: HostContext) -> None:
            return None

        async def stop(self) -> None:
            return None

    class Plugin:
        @hookimpl
        def smithers_schedulers(self, host: HostContext) -> list[object]:
            return [Sched()]

    host = load_plugins(PluginsSection(), environ={}, extra=[("fx.sched", Plugin())])
    scheds = host.schedulers(ListingHost())
    assert [s.options for s in scheds] == [frozenset({"schedule"})]


def test_hook_smithers_rpc_namespaces() -> None:
    class Plugin:
        @hookimpl
        def smithers_rpc_namespaces(self) -> dict[str, object]:
            return {"fx": {"resources": {"ping": {"handler": lambda p, c: "pong"}}}}

    host = load_plugins(PluginsSection(), environ={}, extra=[("fx.rpc", Plugin())])
    assert list(host.rpc_namespaces()) == ["fx"]


def test_hook_smithers_rpc_methods() -> None:
    from smithers_core.contributions import RpcMethod

    async def ping(call: object, params: object) -> str:
        return "pong"

    class Plugin:
        @hookimpl
        def smithers_rpc_methods(self, host: HostContext) -> list[RpcMethod]:
            return [RpcMethod("cronList", ping, "cron:read", aliases=("cron.list",))]

    host = load_plugins(PluginsSection(), environ={}, extra=[("fx.cron", Plugin())])
    contributed = host.rpc_methods(ListingHost())
    assert [(owner, m.names) for owner, m in contributed if owner == "fx.cron"] == [
        ("fx.cron", ("cronList", "cron.list"))
    ]
    # core's own methods come through the same hook, but only for a gateway's context
    assert all(owner != "core.rpc_methods" for owner, _ in contributed)


def test_hook_smithers_ui_mounts() -> None:
    class Plugin:
        @hookimpl
        def smithers_ui_mounts(self, host: HostContext) -> list[UiMount]:
            pages = [UiMount(f"/workflows/{key}", key) for key in host.registrations]
            return [UiMount(path="/ui", title=f"Console ({host.kind})"), *pages]

    host = load_plugins(PluginsSection(), environ={}, extra=[("fx.ui", Plugin())])
    assert [m.title for m in host.ui_mounts(ListingHost())] == ["Console (cli)"]


def test_hook_smithers_cli_commands() -> None:
    import argparse

    from smithers_core.contributions import CliCommand

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", default="world")
        parser.set_defaults(handler=lambda args: len(args.name))

    class Hello:
        @hookimpl
        def smithers_cli_commands(self, host: object) -> list[CliCommand]:
            assert callable(getattr(host, "auth_modes", None))
            return [CliCommand("hello", "say hello", configure)]

    host = load_plugins(extra=[("hello", Hello())], environ={})
    (command,) = [c for c in host.cli_commands() if c.name == "hello"]
    parser = argparse.ArgumentParser()
    command.configure(parser)
    args = parser.parse_args(["--name", "abc"])
    assert args.handler(args) == 3

    class Twin:
        @hookimpl
        def smithers_cli_commands(self, host: object) -> list[CliCommand]:
            return [CliCommand("hello", "again", configure)]

    clash = load_plugins(extra=[("hello", Hello()), ("twin", Twin())], environ={})
    with pytest.raises(SmithersError) as err:
        clash.cli_commands()
    assert err.value.code == "PLUGIN_CONFLICT"
    assert "'hello'" in err.value.message and "'twin'" in err.value.message

    class Broken:
        @hookimpl
        def smithers_cli_commands(self) -> list[CliCommand]:  # ``host`` may be left out
            raise RuntimeError("no commands today")

    survivors = load_plugins(extra=[("hello", Hello()), ("broken", Broken())], environ={})
    assert "hello" in [c.name for c in survivors.cli_commands()]
    assert "no commands today" in (survivors.infos["broken"].error or "")


def test_hook_smithers_event_observers() -> None:
    seen: list[tuple[str, int]] = []

    class Observer:
        def on_event(self, run_id: str, seq: int, event: object, encoded: bytes) -> None:
            seen.append((run_id, seq))

    class Plugin:
        @hookimpl
        def smithers_event_observers(self) -> list[object]:
            return [Observer()]

    host = load_plugins(PluginsSection(), environ={}, extra=[("fx.obs", Plugin())])
    for obs in host.event_observers():
        obs.on_event("r1", 0, {"type": "RunStarted"}, b"{}")
    assert seen == [("r1", 0)]


async def test_event_observers_see_every_committed_event_and_never_break_a_write(
    tmp_path: Path,
) -> None:
    """A runtime calls every observer after each commit, in seq order; one that raises is
    counted and logged while the run and the other observers carry on."""
    import json

    from smithers_core.runtime import Runtime
    from smithers_core.workflow.definition import workflow
    from smithers_core.workflow.nodes import Seq, Task
    from tests.engine_helpers import engine_options

    seen: list[tuple[str, int, str]] = []

    class Recorder:
        def on_event(self, run_id: str, seq: int, event: dict[str, object], encoded: bytes) -> None:
            assert json.loads(encoded) == event
            seen.append((run_id, seq, str(event["type"])))

    class Broken:
        def on_event(self, run_id: str, seq: int, event: object, encoded: bytes) -> None:
            raise RuntimeError("observer bug")

    class Plugin:
        @hookimpl
        def smithers_event_observers(self) -> list[object]:
            return [Broken(), Recorder()]

    @workflow("two")
    def two(ctx: object) -> object:
        return Seq(Task("a", lambda t: 1), Task("b", lambda t: 2))

    host = load_plugins(PluginsSection(), environ={}, extra=[("fx.obs", Plugin())])
    async with Runtime(
        f"sqlite:///{tmp_path / 'obs.db'}", plugins=host, options=engine_options()
    ) as rt:
        launched = await rt.service.launch(two, {}, run_id="obs-run")
        assert await rt.engine.wait_settled(launched["runId"]) == "finished"
        stored = rt.db.list_events("obs-run", -1, 1000)
    assert [(r, s) for r, s, _ in seen] == [("obs-run", e["seq"]) for e in stored]
    assert seen[0][2] == "RunStarted" and seen[-1][2] == "RunFinished"
