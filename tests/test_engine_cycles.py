"""A cycle that only mounts pending nodes schedules in the same transaction (issue 14): the
events keep their order, and any other tree change still commits alone first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Seq, Task
from tests.engine_helpers import Harness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


@workflow("cyc-one")
def cyc_one(ctx: Any) -> Any:
    return Task("t", lambda t: {"v": 1})


@workflow("cyc-skip")
def cyc_skip(ctx: Any) -> Any:
    return Seq(Task("s", lambda t: 1, skip_if=True), Task("t", lambda t: {"v": 2}))


async def test_mount_and_start_commit_together_in_order(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        rid, status = await h.start(cyc_one)
        assert status == "finished"
        events = h.events(rid)
        types = [e["type"] for e in events]
        assert types[:4] == ["RunStarted", "NodePending", "FrameCommitted", "NodeStarted"]
        # one transaction: the mount and the start share the commit's timestamp
        assert len({e["timestampMs"] for e in events[1:4]}) == 1
        assert h.output(rid, "t") == {"v": 1}


async def test_skipped_mount_commits_alone_first(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        rid, status = await h.start(cyc_skip)
        assert status == "finished"
        types = h.types(rid)
        assert types.index("NodeSkipped") < types.index("FrameCommitted")
        assert types.index("FrameCommitted") < types.index("NodeStarted")
        assert h.output(rid, "t") == {"v": 2}
