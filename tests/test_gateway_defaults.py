"""``defaults`` (reference 1.1): fallbacks for the bridge options left unset at the top level;
the option wins, then ``defaults``, then the environment override, then upstream's default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from smithers_core.errors import SmithersError
from smithers_core.gateway.options import parse_options
from tests import stores
from tests.engine_helpers import Harness, wait_for
from tests.fixtures.gateway import workflows as wfs
from tests.gateway_helpers import TOKENS, make_gateway, running, ws_client

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def _bridge(raw: dict[str, Any]) -> tuple[Any, Any]:
    opts = parse_options(raw)
    return opts.out_of_process_event_bridge, opts.out_of_process_event_bridge_poll_ms


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMITHERS_GATEWAY_BRIDGE_POLL_MS", raising=False)
    assert _bridge({}) == (True, 1000)
    off = {"outOfProcessEventBridge": False, "outOfProcessEventBridgePollMs": 50}
    assert _bridge({"defaults": off}) == (False, 50)
    assert _bridge({"defaults": {"out_of_process_event_bridge_poll_ms": 70}}) == (True, 70)
    # the top-level option wins over defaults, False included
    assert _bridge(
        {"defaults": off, "out_of_process_event_bridge": True, "outOfProcessEventBridgePollMs": 9}
    ) == (True, 9)
    assert (
        _bridge({"defaults": {"outOfProcessEventBridge": True}, "outOfProcessEventBridge": False})[
            0
        ]
        is False
    )
    # defaults win over the environment override, which wins over the built-in value
    monkeypatch.setenv("SMITHERS_GATEWAY_BRIDGE_POLL_MS", "40")
    assert _bridge({}) == (True, 40)
    assert _bridge({"defaults": off}) == (False, 50)
    tools = parse_options({"defaults": {"cliAgentTools": "explicit-only"}}).defaults
    assert tools is not None and tools.cli_agent_tools == "explicit-only"


@pytest.mark.parametrize(
    ("defaults", "field"),
    [
        ({"cliAgentTools": "some"}, "defaults.cliAgentTools"),
        ({"outOfProcessEventBridgePollMs": 0}, "defaults.outOfProcessEventBridgePollMs"),
        ({"outOfProcessEventBridgePollMs": float("nan")}, "defaults.outOfProcessEventBridgePollMs"),
        ({"unknown": 1}, "defaults.unknown"),
    ],
)
def test_invalid_defaults_are_invalid_input(defaults: dict[str, Any], field: str) -> None:
    with pytest.raises(SmithersError) as info:
        parse_options({"defaults": defaults})
    assert info.value.code == "INVALID_INPUT"
    assert info.value.message.startswith(f"Gateway option {field} ")
    assert parse_options({"defaults": {"outOfProcessEventBridgePollMs": 1}}).defaults is not None


async def test_defaults_turn_the_bridge_off(tmp_path: Path) -> None:
    """With only ``defaults`` saying so, runs of other processes are not broadcast raw, and
    the store poller runs at the ``defaults`` interval."""
    gw = make_gateway(
        tmp_path,
        tokens=TOKENS,
        defaults={"outOfProcessEventBridge": False, "outOfProcessEventBridgePollMs": 30},
    )
    async with running(gw), ws_client(gw) as watcher:
        hub = gw.runtime.hub
        assert hub.poll_ms == 30
        assert gw.context.options["out_of_process_event_bridge"] is False
        await watcher.recv()
        await watcher.connect()
        other = stores.open_store(tmp_path, "gw.db")
        try:
            async with Harness(tmp_path, wfs.deploy, store=other) as h:
                run_id, status = await h.start(wfs.deploy, {"sha": "off"})
                assert status == "finished"
        finally:
            other.close()
        await wait_for(lambda: hub.windows.first_seq(run_id) is not None, 5, "the poller")
        assert (await watcher.request("health"))["ok"] is True
        assert not [f for f in watcher.frames if f.get("payload", {}).get("runId") == run_id]
