"""DevTools (issue 19, reference gateway 5.4): trees built from frames, deltas and their
application (property-tested), and the gateway methods over a real socket."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from smithers_core.devtools import (
    EMPTY_ROOT,
    InvalidDelta,
    StreamState,
    apply_ops,
    build_tree,
    diff_trees,
    next_event,
)
from smithers_core.devtools.tree import states_by_key, task_nodes
from smithers_core.gateway.methods.devtools import DevStream, DevToolsStreams
from smithers_core.workflow.definition import workflow
from smithers_core.workflow.nodes import Approval, Loop, Seq, Task
from tests.engine_helpers import wait_for
from tests.gateway_helpers import (
    OP_TOKEN,
    TOKENS,
    WsClient,
    http,
    make_gateway,
    rpc,
    running,
    ws_client,
)

# -- pure: trees ------------------------------------------------------------------------------


def _el(tag: str, props: dict[str, str] | None = None, *kids: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "element", "tag": tag, "props": props or {}, "children": list(kids)}


def _frame(*kids: dict[str, Any]) -> dict[str, Any]:
    return _el("smithers:workflow", {"name": "wf"}, _el("smithers:sequence", {}, *kids))


def _task(node_id: str, iteration: int = 0, **props: str) -> dict[str, Any]:
    return _el("smithers:task", {"id": node_id, "iteration": str(iteration), **props})


def test_build_tree_shape_and_task_info() -> None:
    frame = _frame(
        _task("a", kind="compute", label="A", output="Out"),
        _el("smithers:task", {"id": "gate", "needsApproval": "true", "iteration": "0"}),
        _el("smithers:ralph", {"id": "loop"}, _task("b", 2)),
        {"kind": "text", "text": "hello"},
    )
    states = states_by_key(
        [
            {"nodeId": "a", "iteration": 0, "state": "finished", "lastAttempt": 2},
            {"nodeId": "b", "iteration": 2, "state": "in-progress", "lastAttempt": 1},
        ]
    )
    root = build_tree(frame, states)
    assert (root["type"], root["name"], root["depth"]) == ("workflow", "Workflow", 0)
    assert root["props"] == {"name": "wf"}
    seq = root["children"][0]
    assert seq["type"] == "sequence" and seq["depth"] == 1
    a, gate, loop, text = seq["children"]
    assert a["task"] == {
        "nodeId": "a",
        "kind": "compute",
        "iteration": 0,
        "state": "finished",
        "lastAttempt": 2,
        "attempt": 2,
        "label": "A",
        "output": "Out",
    }
    assert gate["type"] == "approval" and gate["task"]["kind"] == "approval"
    assert gate["task"]["state"] == "pending" and gate["task"]["lastAttempt"] is None
    assert loop["type"] == "loop" and loop["children"][0]["task"]["state"] == "in-progress"
    assert text["type"] == "text" and text["props"] == {"text": "hello"}
    assert [n["task"]["nodeId"] for n in task_nodes(root)] == ["a", "gate", "b"]
    ids = [n["id"] for n in (root, seq, a, gate, loop, text)]
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) and 0 < i < 2**53 for i in ids)


def test_ids_are_stable_across_frames() -> None:
    one = build_tree(_frame(_el("smithers:ralph", {"id": "loop"}, _task("b", 0))))
    two = build_tree(_frame(_task("z"), _el("smithers:ralph", {"id": "loop"}, _task("b", 1))))
    b1 = one["children"][0]["children"][0]["children"][0]
    b2 = two["children"][0]["children"][1]["children"][0]
    assert b1["id"] == b2["id"] and b1["props"]["iteration"] != b2["props"]["iteration"]
    # repeated keys among siblings get distinct ids
    dup = build_tree(_frame(_el("smithers:sequence"), _el("smithers:sequence")))
    kids = dup["children"][0]["children"]
    assert kids[0]["id"] != kids[1]["id"]


def test_empty_root() -> None:
    root = build_tree(None)
    assert root == EMPTY_ROOT and root is not EMPTY_ROOT


def test_apply_rejects_bad_ops() -> None:
    root = build_tree(_frame(_task("a")))
    for ops in (
        [{"op": "removeNode", "id": 12345}],
        [{"op": "removeNode", "id": root["id"]}],
        [{"op": "updateProps", "id": 1, "props": {}}],
        [{"op": "addNode", "parentId": root["id"], "index": 9, "node": EMPTY_ROOT}],
        [{"op": "nope"}],
    ):
        with pytest.raises(InvalidDelta):
            apply_ops(root, ops)


# -- property: a client applying the stream's events always holds the snapshot ----------------

TAGS = ["smithers:sequence", "smithers:parallel", "smithers:ralph"]
IDS = ["a", "b", "c", "d", "e"]
STATES = ["pending", "in-progress", "finished", "failed"]


@st.composite
def _elements(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    if depth >= 3 or draw(st.booleans()):
        kind = draw(st.sampled_from(["task", "task", "wait", "approval", "text"]))
        if kind == "text":
            return {"kind": "text", "text": draw(st.sampled_from(["x", "y"]))}
        props = {"id": draw(st.sampled_from(IDS)), "iteration": str(draw(st.integers(0, 2)))}
        if draw(st.booleans()):
            props["label"] = draw(st.sampled_from(["L1", "L2"]))
        if kind == "approval":
            props["needsApproval"] = "true"
        tag = "smithers:wait-for-event" if kind == "wait" else "smithers:task"
        return _el(tag, props)
    tag = draw(st.sampled_from(TAGS))
    props = {"id": draw(st.sampled_from(IDS))} if draw(st.booleans()) else {}
    kids = draw(st.lists(_elements(depth + 1), max_size=4))
    return _el(tag, props, *kids)


_states = st.dictionaries(
    st.tuples(st.sampled_from(IDS), st.integers(0, 2)),
    st.fixed_dictionaries(
        {"state": st.sampled_from(STATES), "lastAttempt": st.none() | st.integers(1, 3)}
    ),
    max_size=6,
)

# one stream step: a frame (or the same frame with new node states), maybe a rewind
_steps = st.lists(
    st.tuples(
        st.none() | st.lists(_elements(1), max_size=4),
        _states,
        st.sampled_from(["next", "next", "next", "same", "back", "jump"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_steps, st.integers(1, 6))
def test_client_applying_events_holds_the_snapshot(steps: list[Any], max_deltas: int) -> None:
    state = StreamState()
    client: dict[str, Any] | None = None
    frame_no = 0
    frames: dict[int, Any] = {}
    snapshots_seen = 0
    deltas_since = 0
    for seq, (kids, node_states, move) in enumerate(steps, start=1):
        if move == "back" and frame_no > 1:
            frame_no -= 1
        elif move != "same" or frame_no == 0:
            frame_no += 1
        if kids is not None:
            frames[frame_no] = _el("smithers:workflow", {"name": "wf"}, *kids)
        frame = frames.get(frame_no)
        expected = build_tree(frame, node_states)
        before = copy.deepcopy(expected)
        prev_frame = state.frame_no
        event = next_event(
            state, expected, frame_no, seq, rebaseline=move == "jump", max_deltas=max_deltas
        )
        assert expected == before  # nothing mutates the tree handed over
        if event is None:
            assert client == expected and frame_no == prev_frame
            continue
        assert event["version"] == 1 and event["frameNo"] == frame_no and event["seq"] == seq
        if event["kind"] == "snapshot":
            snapshots_seen += 1
            deltas_since = 0
            client = copy.deepcopy(event["root"])
        else:
            assert client is not None
            assert move not in ("jump",) and frame_no >= prev_frame
            assert event["baseFrameNo"] == prev_frame
            deltas_since += 1
            assert deltas_since <= max_deltas
            client = apply_ops(client, event["ops"])
        assert client == expected
        # diffing is also exact on its own, from any earlier tree
        assert apply_ops(EMPTY_ROOT, diff_trees(EMPTY_ROOT, expected)) == expected
    assert snapshots_seen >= 1


@settings(max_examples=150, deadline=None)
@given(_elements(), _elements(), _states, _states)
def test_diff_then_apply_is_exact(a: Any, b: Any, sa: Any, sb: Any) -> None:
    old = build_tree(_el("smithers:workflow", {}, a), sa)
    new = build_tree(_el("smithers:workflow", {}, b), sb)
    ops = diff_trees(old, new)
    assert apply_ops(old, ops) == new
    assert diff_trees(new, new) == []


# -- the gateway methods ----------------------------------------------------------------------


class Num(BaseModel):
    n: int


def _flaky(t: Any) -> Num:
    if t.attempt == 1:
        raise RuntimeError("first attempt breaks")
    return Num(n=t.attempt)


@workflow("loopy")
def loopy(ctx: Any) -> Any:
    """A gate, then a loop whose iterations commit one frame each."""
    return Seq(
        Approval("gate", title="Go?"),
        Task("flaky", _flaky, output=Num, retries=1),
        Loop("l", body=Task("s", lambda t: Num(n=t.iteration), output=Num), max_iterations=3),
    )


@workflow("quick")
def quick(ctx: Any) -> Any:
    return Loop("l", body=Task("s", lambda t: Num(n=t.iteration), output=Num), max_iterations=3)


def _gateway(tmp_path: Path, **options: Any) -> Any:
    tokens = {
        **TOKENS,
        "reader": {"role": "viewer", "scopes": ["run:read"], "userId": "user:r"},
    }
    gw = make_gateway(tmp_path, tokens=tokens, **options)
    gw.register("loopy", loopy)
    gw.register("quick", quick)
    return gw


async def _launch(c: Any, workflow_key: str, status: str, **params: Any) -> str:
    res = await rpc(c, "launchRun", {"workflow": workflow_key, **params})
    run_id = str(res.json()["payload"]["runId"])

    async def reached() -> bool:
        run = (await rpc(c, "getRun", {"runId": run_id})).json()["payload"]
        return bool(run["status"] == status)

    await wait_for(reached, 10, f"{run_id} to be {status}")
    return run_id


def _err(res: Any) -> dict[str, Any]:
    body: dict[str, Any] = res.json()["error"]
    return body


async def _snapshot(c: Any, run_id: str, **params: Any) -> dict[str, Any]:
    res = await rpc(c, "getDevToolsSnapshot", {"runId": run_id, **params})
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()["payload"]
    return body


@pytest.mark.anyio
async def test_snapshot_method(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "quick", "finished")
        frames = (await rpc(c, "frames.list", {"runId": run_id})).json()["payload"]
        latest = frames[0]["frameNo"]
        assert latest >= 3
        snap = await _snapshot(c, run_id)
        assert set(snap) == {"version", "runId", "frameNo", "seq", "root"}
        assert (snap["version"], snap["runId"], snap["frameNo"]) == (1, run_id, latest)
        commits = [
            e for e in gw.runtime.db.list_events(run_id, -1, 1000) if e["type"] == "FrameCommitted"
        ]
        by_frame = {json.loads(e["payloadJson"])["frameNo"]: e["seq"] + 1 for e in commits}
        assert snap["seq"] == by_frame[latest]
        assert snap["root"] == build_tree(
            json.loads(frames[0]["xmlJson"]),
            states_by_key(gw.runtime.db.list_node_states(run_id)),
        )
        (task,) = task_nodes(snap["root"])
        assert task["task"]["nodeId"] == "s" and task["task"]["state"] == "finished"
        assert task["task"]["iteration"] == 2 and task["task"]["lastAttempt"] == 1
        first = await _snapshot(c, run_id, frameNo=1)
        assert (first["frameNo"], first["seq"]) == (1, by_frame[1])
        assert task_nodes(first["root"])[0]["task"]["iteration"] == 0
        assert task_nodes(first["root"])[0]["id"] == task["id"]  # stable across frames
        zero = await _snapshot(c, run_id, frameNo=0)
        assert (zero["frameNo"], zero["seq"], zero["root"]) == (0, 0, EMPTY_ROOT)
        for params, status, code in (
            ({"runId": run_id, "frameNo": latest + 1}, 400, "FrameOutOfRange"),
            ({"runId": run_id, "frameNo": -1}, 400, "FrameOutOfRange"),
            ({"runId": run_id, "frameNo": "1"}, 400, "FrameOutOfRange"),
            ({"runId": "a b"}, 400, "InvalidRunId"),
            ({}, 400, "InvalidRunId"),
            ({"runId": "ghost"}, 404, "RunNotFound"),
        ):
            res = await rpc(c, "getDevToolsSnapshot", params)
            assert (res.status_code, _err(res)["code"]) == (status, code), res.text
        async with http(gw, "reader") as r:
            res = await rpc(r, "getDevToolsSnapshot", {"runId": run_id})
            assert res.status_code == 403
            assert _err(res)["requiredScope"] == "observability:read"


async def _devtools_events(ws: WsClient, stream_id: str, timeout: float = 10.0) -> Any:
    while True:
        frame = await ws.wait_for(
            lambda f: f.get("event") in ("devtools.event", "devtools.error"), timeout
        )
        assert frame["payload"]["streamId"] == stream_id
        assert frame["event"] == "devtools.event", frame
        yield frame["payload"]["event"]


async def _follow_until(
    ws: WsClient, stream_id: str, client: Any, done: Any, limit: int = 200
) -> tuple[Any, list[dict[str, Any]]]:
    """Apply stream events to ``client`` until ``done(client)``; returns it and the events."""
    seen: list[dict[str, Any]] = []
    events = _devtools_events(ws, stream_id)
    for _ in range(limit):
        if client is not None and await done(client):
            return client, seen
        event = await events.__anext__()
        seen.append(event)
        if event["kind"] == "snapshot":
            client = event["root"]
        else:
            assert client is not None
            client = apply_ops(client, event["ops"])
    raise AssertionError("stream did not converge")


@pytest.mark.anyio
async def test_stream_follows_a_live_run(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "loopy", "waiting-approval")
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect(OP_TOKEN, subscribe=[run_id])
            res = await ws.request("streamDevTools", {"runId": run_id})
            assert res["ok"], res
            stream_id = res["payload"]["streamId"]
            assert res["payload"] == {
                "streamId": stream_id,
                "runId": run_id,
                "fromSeq": None,
                "afterSeq": None,
            }
            first = await _devtools_events(ws, stream_id).__anext__()
            assert first["kind"] == "snapshot" and first["version"] == 1
            assert first == {
                "version": 1,
                "kind": "snapshot",
                **{k: v for k, v in (await _snapshot(c, run_id)).items() if k != "runId"},
            }
            r = await rpc(
                c, "submitApproval", {"runId": run_id, "nodeId": "gate", "approved": True}
            )
            assert r.status_code == 200, r.text

            async def run_finished() -> bool:
                run = (await rpc(c, "getRun", {"runId": run_id})).json()["payload"]
                return bool(run["status"] == "finished")

            # the run ends first; its frames' events are then all on their way (the socket
            # keeps them in order), so the client converges without waiting on a race
            await wait_for(run_finished, timeout=10)
            final = (await _snapshot(c, run_id))["root"]

            async def finished(tree: Any) -> bool:
                return bool(tree == final)

            client, seen = await _follow_until(ws, stream_id, first["root"], finished)
            deltas = [e for e in seen if e["kind"] == "delta"]
            assert deltas and all(e["version"] == 1 for e in seen)
            latest = (await _snapshot(c, run_id))["frameNo"]
            # one delta per committed frame after the first snapshot, in order
            frame_nos = [e["frameNo"] for e in seen]
            assert frame_nos == sorted(frame_nos) and frame_nos[-1] == latest
            assert set(range(first["frameNo"] + 1, latest + 1)) <= set(frame_nos)
            seqs = [e["seq"] for e in seen]
            assert seqs == sorted(seqs)
            kinds = {op["op"] for e in deltas for op in e["ops"]}
            assert {"updateTask", "updateProps"} <= kinds
            assert task_nodes(client)[-1]["task"]["iteration"] == 2


@pytest.mark.anyio
async def test_stream_replays_from_a_frame_and_refuses_bad_cursors(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "quick", "finished")
        latest = (await _snapshot(c, run_id))["frameNo"]
        res = await rpc(c, "streamDevTools", {"runId": run_id})
        assert res.status_code == 400 and _err(res)["code"] == "INVALID_REQUEST"
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect(OP_TOKEN, subscribe=["other-run"])
            for method in ("streamDevTools", "getDevToolsSnapshot"):
                res = await ws.request(method, {"runId": run_id})
                assert res["error"]["code"] == "Unauthorized", res
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect(OP_TOKEN)
            for params, code in (
                ({"runId": run_id, "fromSeq": latest + 1}, "SeqOutOfRange"),
                ({"runId": run_id, "afterSeq": -1}, "SeqOutOfRange"),
                ({"runId": run_id, "fromSeq": 1, "afterSeq": 2}, "INVALID_REQUEST"),
                ({"runId": "ghost"}, "RunNotFound"),
                ({"runId": "a b"}, "InvalidRunId"),
            ):
                res = await ws.request("streamDevTools", params)
                assert res["error"]["code"] == code, (params, res)
            for start in (1, 0):
                res = await ws.request("streamDevTools", {"runId": run_id, "fromSeq": start})
                assert res["ok"], res
                stream_id = res["payload"]["streamId"]
                assert res["payload"]["fromSeq"] == start
                events = _devtools_events(ws, stream_id)
                snap = await events.__anext__()
                assert (snap["kind"], snap["frameNo"]) == ("snapshot", start)
                want = await _snapshot(c, run_id, frameNo=start)
                assert (snap["root"], snap["seq"]) == (want["root"], want["seq"])
                client = snap["root"]
                for frame_no in range(start + 1, latest + 1):
                    delta = await events.__anext__()
                    assert delta["frameNo"] == frame_no
                    if delta["kind"] == "snapshot":  # from the empty root, a replaceRoot
                        assert start == 0 and frame_no == 1  # would be larger: re-baselined
                        client = delta["root"]
                    else:
                        assert delta["baseFrameNo"] == frame_no - 1
                        client = apply_ops(client, delta["ops"])
                    want = await _snapshot(c, run_id, frameNo=frame_no)
                    assert client == want["root"] and delta["seq"] == want["seq"]


@pytest.mark.anyio
async def test_stream_rebaselines_after_time_travel(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "loopy", "waiting-approval")
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect(OP_TOKEN)
            res = await ws.request("streamDevTools", {"runId": run_id})
            stream_id = res["payload"]["streamId"]
            events = _devtools_events(ws, stream_id)
            first = await events.__anext__()
            assert first["kind"] == "snapshot"

            def jump(tx: Any) -> None:
                tx.emit(run_id, "TimeTravelJumped", fromFrameNo=first["frameNo"], toFrameNo=1)

            await gw.runtime.store.write(jump)
            again = await events.__anext__()
            assert again["kind"] == "snapshot" and again["root"] == first["root"]
            assert again["seq"] == gw.runtime.db.last_seq(run_id) + 1


@pytest.mark.anyio
async def test_backpressure_and_paced_replay() -> None:
    pushed: list[tuple[str, dict[str, Any], Any]] = []

    class Conn:
        closed = False

        def push_event(self, name: str, text: str, version: int, after: Any = None) -> bool:
            pushed.append((name, json.loads(text), after))
            return True

    metrics = SimpleNamespace(backpressure_disconnects=SimpleNamespace(inc=lambda: None))
    ctx = SimpleNamespace(
        settings=SimpleNamespace(run_stream_queue_limit=4),
        sockets=SimpleNamespace(state_version=7),
        metrics=metrics,
    )
    streams = DevToolsStreams(ctx)  # type: ignore[arg-type]
    stream = DevStream("s1", "r1", Conn())  # type: ignore[arg-type]
    streams.streams["s1"] = stream
    event = {"version": 1, "kind": "snapshot", "frameNo": 0, "seq": 0, "root": EMPTY_ROOT}
    for _ in range(4):  # a replay waits for the socket instead of failing
        await streams.send(stream, event, live=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(streams.send, stream, event, False)
        await wait_for(lambda: stream.drained is not None, 5, "the replay to wait")
        for _, _, after in pushed[:2]:
            after()  # the socket took two frames: half the queue
    assert stream.pending == 3 and len(pushed) == 5
    await streams.send(stream, event, live=True)
    assert stream.pending == 4 and stream.open
    await streams.send(stream, event, live=True)  # a live event and a full queue
    name, payload, _ = pushed[-1]
    assert name == "devtools.error" and not stream.open and "s1" not in streams.streams
    assert payload == {
        "streamId": "s1",
        "runId": "r1",
        "error": {
            "code": "BackpressureDisconnect",
            "message": "DevTools stream outbound queue exceeded 4 frames;"
            " disconnecting slow consumer.",
        },
    }


@pytest.mark.anyio
async def test_runs_diff(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        a = await _launch(c, "deploy", "finished", input={"sha": "one"})
        b = await _launch(c, "deploy", "finished", input={"sha": "two"})
        q = await _launch(c, "quick", "finished")
        res = await rpc(c, "runs.diff", {"leftRunId": a, "rightRunId": b})
        assert res.status_code == 200, res.text
        diff = res.json()["payload"]
        assert diff["left"]["runId"] == a and diff["right"]["status"] == "finished"
        assert diff["sameStructure"] is True
        (ship,) = diff["nodes"]
        assert ship["change"] == "changed" and ship["nodeId"] == "ship"
        assert ship["left"] == {"state": "finished", "output": {"sha": "one"}}
        assert ship["right"]["output"] == {"sha": "two"}
        same = (await rpc(c, "runs.diff", {"leftRunId": a, "rightRunId": a})).json()["payload"]
        assert same["summary"] == {"added": 0, "removed": 0, "changed": 0, "unchanged": 1}
        other = (await rpc(c, "runs.diff", {"leftRunId": a, "rightRunId": q})).json()["payload"]
        assert other["sameStructure"] is False
        assert other["summary"] == {"added": 3, "removed": 1, "changed": 0, "unchanged": 0}
        for params, status, code, message in (
            ({"leftRunId": a}, 400, "INVALID_REQUEST", None),
            ({"leftRunId": a, "rightRunId": "ghost"}, 404, "NOT_FOUND", "Both runs must exist"),
        ):
            res = await rpc(c, "runs.diff", params)
            assert (res.status_code, _err(res)["code"]) == (status, code)
            assert message is None or _err(res)["message"] == message


@pytest.mark.anyio
async def test_what_happened(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "loopy", "waiting-approval")
        r = await rpc(
            c,
            "submitApproval",
            {"runId": run_id, "nodeId": "gate", "approved": True, "note": "ship it"},
        )
        assert r.status_code == 200, r.text
        await wait_for(
            lambda: gw.runtime.db.run_status(run_id) == "finished", 10, "the run to finish"
        )
        res = await rpc(c, "whatHappened", {"runId": run_id})
        assert res.status_code == 200, res.text
        body = res.json()["payload"]
        summary = body.pop("summary")
        assert isinstance(body.pop("generatedAtMs"), int)
        assert body == {
            "runId": run_id,
            "nodeId": None,
            "iteration": None,
            "scope": "run",
            "agentId": None,
            "source": "facts",
            "cached": False,
        }
        assert f"Run {run_id} (workflow loopy) is finished." in summary
        assert 'Approval gate was approved by user:will ("ship it").' in summary
        assert "Node flaky (iteration 0) is finished after 2 attempts." in summary
        assert "Attempt 1 failed" in summary and "first attempt breaks" in summary
        res = await rpc(c, "whatHappened", {"runId": run_id, "nodeId": "s", "iteration": 1})
        node = res.json()["payload"]
        assert (node["scope"], node["nodeId"], node["iteration"]) == ("node", "s", 1)
        assert "Node s (iteration 1) is finished after 1 attempt." in node["summary"]
        assert "iteration 0" not in node["summary"]
        for params, status, code in (
            ({"runId": run_id, "nodeId": "nope"}, 404, "NodeNotFound"),
            ({"runId": run_id, "nodeId": "s", "iteration": 9}, 404, "IterationNotFound"),
            ({"runId": run_id, "iteration": -1}, 400, "InvalidIteration"),
            ({"runId": "ghost"}, 404, "RunNotFound"),
        ):
            res = await rpc(c, "whatHappened", params)
            assert (res.status_code, _err(res)["code"]) == (status, code), res.text


@pytest.mark.anyio
async def test_vcs_diffs_are_unsupported(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "deploy", "finished")
        for method, params in (
            ("getNodeDiff", {"runId": run_id, "nodeId": "ship"}),
            ("devtools.getNodeDiff", {"runId": run_id, "nodeId": "ship", "iteration": 0}),
            ("getRunDiff", {"runId": run_id}),
        ):
            res = await rpc(c, method, params)
            assert res.status_code == 501, res.text
            assert _err(res)["code"] == "UnsupportedSandbox"
            assert "version-controlled sandbox" in _err(res)["message"]
        for method, params, status, code in (
            ("getNodeDiff", {"runId": run_id, "nodeId": "nope"}, 404, "NodeNotFound"),
            ("getNodeDiff", {"runId": run_id}, 400, "InvalidNodeId"),
            ("getRunDiff", {"runId": "ghost"}, 404, "RunNotFound"),
        ):
            res = await rpc(c, method, params)
            assert (res.status_code, _err(res)["code"]) == (status, code), res.text


@pytest.mark.anyio
async def test_stream_rebaselines_when_frames_go_backwards(tmp_path: Path) -> None:
    # A rewind (another change) deletes the frames after its target and the run commits them
    # again: a stream, still open after the run ended, re-baselines with a snapshot.
    async with running(_gateway(tmp_path)) as gw, http(gw, OP_TOKEN) as c:
        run_id = await _launch(c, "quick", "finished")
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect(OP_TOKEN)
            res = await ws.request("streamDevTools", {"runId": run_id})
            events = _devtools_events(ws, res["payload"]["streamId"])
            first = await events.__anext__()
            assert first["kind"] == "snapshot" and first["frameNo"] >= 3

            def rewind(tx: Any) -> None:
                tx.execute(
                    "DELETE FROM _smithers_frames WHERE run_id = ? AND frame_no > 1", (run_id,)
                )
                tx.emit(run_id, "FrameCommitted", frameNo=1, xmlHash="x")

            await gw.runtime.store.write(rewind)
            again = await events.__anext__()
            want = await _snapshot(c, run_id, frameNo=1)
            assert (again["kind"], again["frameNo"]) == ("snapshot", 1)
            assert again["root"] == want["root"]
            assert again["seq"] == gw.runtime.db.last_seq(run_id) + 1 == want["seq"]

            def gone(tx: Any) -> None:  # a FrameCommitted whose frame no longer exists
                tx.emit(run_id, "FrameCommitted", frameNo=2, xmlHash="y")

            await gw.runtime.store.write(gone)
            last = await events.__anext__()
            assert (last["kind"], last["frameNo"], last["root"]) == ("snapshot", 1, want["root"])


@pytest.mark.anyio
async def test_stream_cap_per_connection(tmp_path: Path) -> None:
    async with running(_gateway(tmp_path, max_run_streams_per_connection=1)) as gw:
        async with http(gw, OP_TOKEN) as c:
            run_id = await _launch(c, "quick", "finished")
        async with ws_client(gw) as ws:
            await ws.recv()
            await ws.connect(OP_TOKEN)
            assert (await ws.request("streamDevTools", {"runId": run_id}))["ok"]
            res = await ws.request("streamDevTools", {"runId": run_id})
            assert res["error"]["code"] == "RateLimited"
            assert (res["error"]["scope"], res["error"]["limit"]) == ("connection", 1)
