"""The DevTools family (issue 19, reference gateway 5.4): ``getDevToolsSnapshot``,
``streamDevTools``, ``runs.diff``, ``whatHappened``, ``getNodeDiff`` and ``getRunDiff``.

Trees are built from stored frames by the pure :mod:`smithers_core.devtools`; everything is
read from the store (one read per snapshot), so any gateway on the store answers alike.
``docs/time-travel.md`` ("DevTools") is the client contract.

- ``seq`` of a snapshot or delta is the stream seq (db seq + 1, as ``streamRunEvents``
  numbers events) of the ``FrameCommitted`` event of its frame, or of the node event that
  changed a task's state; 0 for frame 0 (a run without frames: the empty root).
- ``streamDevTools`` cursors (``fromSeq``/``afterSeq``, aliases) are frame numbers: the stream
  starts with the snapshot of that frame and replays one delta per later frame.
- ``getNodeDiff``/``getRunDiff`` answer ``UnsupportedSandbox`` (501): this server runs tasks
  without a version-controlled sandbox, so there is nothing to diff (not a VCS failure).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import anyio

from smithers_core import jsonutil
from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.devtools import StreamState, build_tree, next_event, snapshot_event
from smithers_core.devtools.facts import node_keys, runs_diff, summarize
from smithers_core.devtools.tree import TreeNode, states_by_key
from smithers_core.errors import SmithersError
from smithers_core.gateway.connection import Connection
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.params import run_id_of
from smithers_core.ids import is_run_id
from smithers_core.scopes import METHOD_SCOPES
from smithers_core.store.frames import devtools_read, run_facts

PAGE = 500
#: events after which a stream re-reads its run's node states (task info)
TASK_EVENTS = frozenset(
    {
        "NodePending",
        "NodeStarted",
        "NodeFinished",
        "NodeFailed",
        "NodeCancelled",
        "NodeSkipped",
        "NodeRetrying",
        "NodeWaitingApproval",
        "NodeWaitingTimer",
        "ApprovalGranted",
        "ApprovalDenied",
        "ApprovalAutoApproved",
        "TimerFired",
        "RetryTaskStarted",
    }
)


def _run_id(params: dict[str, Any]) -> str:
    run_id = run_id_of(params, "InvalidRunId")
    if not is_run_id(run_id):
        raise SmithersError("InvalidRunId", "runId is not a valid run id", {"runId": run_id})
    return run_id


def _check_subscribed(call: RpcCall, run_id: str) -> None:
    """DevTools authorisation (4.5): a socket with a subscribe list sees only those runs."""
    conn = call.connection
    subscribed = getattr(conn, "subscribed", None)
    if subscribed is not None and run_id not in subscribed:
        raise SmithersError("Unauthorized", "Connection is not subscribed to this runId.")


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tree(read: dict[str, Any]) -> TreeNode:
    xml = read["xmlJson"]
    frame = jsonutil.loads(xml) if xml is not None else None
    return build_tree(frame if isinstance(frame, dict) else None, states_by_key(read["nodes"]))


def _seq(read: dict[str, Any]) -> int:
    seq = read["seq"]
    return int(seq) + 1 if seq is not None else 0


def _run_not_found(run_id: str) -> SmithersError:
    return SmithersError("RunNotFound", f"Run not found: {run_id}", {"runId": run_id})


@dataclass(eq=False)
class DevStream:
    stream_id: str
    run_id: str
    conn: Connection
    state: StreamState = field(default_factory=StreamState)
    pending: int = 0  # frames pushed to the socket and not yet written
    open: bool = True
    drained: anyio.Event | None = None
    cancel: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class DevToolsStreams:
    """The open ``streamDevTools`` streams of one gateway."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.streams: dict[str, DevStream] = {}

    async def read(self, run_id: str, frame_no: int | None = None) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.ctx.runtime.store.aread(
            functools.partial(devtools_read, run_id=run_id, frame_no=frame_no)
        )
        return result

    async def open(self, call: RpcCall, params: dict[str, Any]) -> dict[str, Any]:
        conn = call.connection
        if conn is None or call.transport != "ws":
            raise SmithersError(
                "INVALID_REQUEST", "streamDevTools is only supported over websocket connections"
            )
        run_id = _run_id(params)
        _check_subscribed(call, run_id)
        from_seq, after_seq = params.get("fromSeq"), params.get("afterSeq")
        for name, value in (("fromSeq", from_seq), ("afterSeq", after_seq)):
            if value is not None and not _is_count(value):
                raise SmithersError("SeqOutOfRange", f"{name} must be a non-negative integer")
        if from_seq is not None and after_seq is not None and from_seq != after_seq:
            raise SmithersError("INVALID_REQUEST", "fromSeq and afterSeq must match")
        start: int | None = from_seq if from_seq is not None else after_seq
        read = await self.read(run_id)
        if read is None:
            raise _run_not_found(run_id)
        latest = int(read["latestFrameNo"])
        if start is not None and start > latest:
            raise SmithersError(
                "SeqOutOfRange", f"fromSeq {start} is newer than the latest frame {latest}"
            )
        if conn.closed:
            raise SmithersError("ConnectionClosed", "Connection closed")
        limit = self.ctx.settings.max_run_streams_per_connection
        if sum(s.conn is conn for s in self.streams.values()) >= limit:
            raise SmithersError(
                "RateLimited",
                f"Gateway devtools subscriber limit reached (connection cap of {limit}).",
                {"scope": "connection", "limit": limit},
            )
        stream = DevStream(str(uuid.uuid4()), run_id, conn)
        self.streams[stream.stream_id] = stream
        conn.cleanups.append(lambda: self.close(stream))

        def begin() -> None:
            if stream.open and not conn.closed:
                conn.spawn(self._run(stream, start, read))

        call.after_response.append(begin)
        return {
            "streamId": stream.stream_id,
            "runId": run_id,
            "fromSeq": from_seq,
            "afterSeq": after_seq,
        }

    def close(self, stream: DevStream) -> None:
        self.streams.pop(stream.stream_id, None)
        stream.open = False
        if stream.drained is not None:
            stream.drained.set()
        stream.cancel.cancel()

    # -- frames ------------------------------------------------------------------------------
    def _push(self, stream: DevStream, name: str, body: dict[str, Any], counted: bool) -> None:
        payload = {"streamId": stream.stream_id, "runId": stream.run_id, **body}
        version = self.ctx.sockets.state_version
        if not counted:
            stream.conn.push_event(name, jsonutil.dumps(payload), version)
            return
        half = self.ctx.settings.run_stream_queue_limit // 2

        def sent() -> None:
            stream.pending -= 1
            drained = stream.drained
            if drained is not None and stream.pending <= half:
                stream.drained = None
                drained.set()

        stream.pending += 1
        stream.conn.push_event(name, jsonutil.dumps(payload), version, sent)

    def error(self, stream: DevStream, code: str, message: str) -> None:
        body = {"error": {"code": code, "message": message}}
        self._push(stream, "devtools.error", body, counted=False)
        self.close(stream)

    async def send(self, stream: DevStream, event: dict[str, Any] | None, live: bool) -> None:
        """Send one ``devtools.event``. A live event due while the stream's queue is full cuts
        the stream off (``BackpressureDisconnect``); a replayed one waits for the socket."""
        if event is None or not stream.open:
            return
        limit = self.ctx.settings.run_stream_queue_limit
        while stream.open and stream.pending >= limit:
            if live:
                self.ctx.metrics.backpressure_disconnects.inc()
                self.error(
                    stream,
                    "BackpressureDisconnect",
                    f"DevTools stream outbound queue exceeded {limit} frames;"
                    " disconnecting slow consumer.",
                )
                return
            drained = stream.drained = anyio.Event()
            await drained.wait()
        if stream.open:
            self._push(stream, "devtools.event", {"event": event}, counted=True)

    # -- the reader --------------------------------------------------------------------------
    async def _emit(
        self, stream: DevStream, frame_no: int, seq: int | None, jump: bool, live: bool
    ) -> None:
        """Bring the client to frame ``frame_no`` (or to the newest frame, re-baselined, when
        that one is gone, e.g. deleted by a rewind)."""
        read = await self.read(stream.run_id, frame_no)
        if read is None:
            return
        if read["xmlJson"] is None and frame_no > 0:
            read = await self.read(stream.run_id)
            if read is None:
                return
            jump = True
        at = int(read["frameNo"])
        event = next_event(
            stream.state, _tree(read), at, _seq(read) if seq is None else seq, rebaseline=jump
        )
        await self.send(stream, event, live)

    async def _run(self, stream: DevStream, start: int | None, read: dict[str, Any]) -> None:
        hub = self.ctx.runtime.hub
        fallback_s = max(hub.poll_ms, 50) / 1000 * 4
        with stream.cancel:
            try:
                cursor = int(read["lastSeq"])  # read with the latest frame: nothing is missed
                latest = int(read["latestFrameNo"])
                if start is None or start == latest:
                    event = next_event(stream.state, _tree(read), latest, _seq(read))
                    await self.send(stream, event, live=False)
                else:
                    for frame_no in range(start, latest + 1):
                        await self._emit(stream, frame_no, None, False, live=False)
                while stream.open:
                    waiter = hub.waiter(stream.run_id)
                    page = await hub.aread(stream.run_id, cursor, PAGE)
                    if not page:  # also after the run ended: a rewind may bring it back
                        with anyio.move_on_after(fallback_s):
                            await waiter.wait()
                        continue
                    jump = dirty = False
                    dirty_seq = 0
                    for ev in page:
                        cursor = ev.seq
                        if ev.type == "FrameCommitted":
                            body = jsonutil.loads(ev.payload_json)
                            number = body.get("frameNo") if isinstance(body, dict) else None
                            if _is_count(number):
                                await self._emit(stream, number, ev.seq + 1, jump, live=True)
                                jump = dirty = False
                        elif ev.type == "TimeTravelJumped":
                            jump = dirty = True
                            dirty_seq = ev.seq + 1
                        elif ev.type in TASK_EVENTS:
                            dirty = True
                            dirty_seq = ev.seq + 1
                    if dirty:  # task states changed: the client's frame, re-read (frames
                        # advance only with their own FrameCommitted, so always in order)
                        frame_no = stream.state.frame_no
                        await self._emit(stream, frame_no, dirty_seq, jump, live=True)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                self.error(stream, "Internal", str(exc) or type(exc).__name__)


class DevToolsMethods:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.streams = DevToolsStreams(ctx)

    async def snapshot(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = _run_id(params)
        _check_subscribed(call, run_id)
        frame_no = params.get("frameNo")
        if frame_no is not None and not _is_count(frame_no):
            raise SmithersError("FrameOutOfRange", "frameNo must be a non-negative integer")
        read = await self.streams.read(run_id, frame_no)
        if read is None:
            raise _run_not_found(run_id)
        latest = int(read["latestFrameNo"])
        if frame_no is not None and frame_no > latest:
            raise SmithersError(
                "FrameOutOfRange",
                f"frameNo {frame_no} is out of range (latest frame is {latest})",
                {"frameNo": frame_no, "latestFrameNo": latest},
            )
        event = snapshot_event(_tree(read), int(read["frameNo"]), _seq(read))
        return {
            "version": 1,
            "runId": run_id,
            "frameNo": event["frameNo"],
            "seq": event["seq"],
            "root": event["root"],
        }

    async def stream(self, call: RpcCall, params: dict[str, Any]) -> Any:
        return await self.streams.open(call, params)

    async def _facts(self, run_id: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.ctx.runtime.store.aread(
            functools.partial(run_facts, run_id=run_id)
        )
        return result

    async def runs_diff(self, call: RpcCall, params: dict[str, Any]) -> Any:
        left, right = params.get("leftRunId"), params.get("rightRunId")
        if not isinstance(left, str) or not left or not isinstance(right, str) or not right:
            raise SmithersError("INVALID_REQUEST", "leftRunId and rightRunId are required")
        if not is_run_id(left) or not is_run_id(right):
            raise SmithersError("INVALID_REQUEST", "leftRunId and rightRunId must be run ids")
        lf, rf = await self._facts(left), await self._facts(right)
        if lf is None or rf is None:
            raise SmithersError("NOT_FOUND", "Both runs must exist")
        lr, rr = await self.streams.read(left), await self.streams.read(right)
        if lr is None or rr is None:
            raise SmithersError("NOT_FOUND", "Both runs must exist")
        if lr["xmlJson"] is None and rr["xmlJson"] is None:
            raise SmithersError("NOT_FOUND", "Snapshots not found for both runs")
        return runs_diff(
            left, right, lf, rf, _tree(lr), _tree(rr), int(lr["frameNo"]), int(rr["frameNo"])
        )

    async def what_happened(self, call: RpcCall, params: dict[str, Any]) -> Any:
        run_id = _run_id(params)
        node_id = params.get("nodeId")
        if node_id is not None and (not isinstance(node_id, str) or not node_id):
            raise SmithersError("InvalidNodeId", "nodeId must be a non-empty string")
        iteration = params.get("iteration")
        if iteration is not None and not _is_count(iteration):
            raise SmithersError("InvalidIteration", "iteration must be a non-negative integer")
        facts = await self._facts(run_id)
        if facts is None:
            raise _run_not_found(run_id)
        if node_id is not None:
            keys = node_keys(facts, node_id)
            if not keys:
                raise SmithersError(
                    "NodeNotFound",
                    f"Node not found: {node_id}",
                    {"runId": run_id, "nodeId": node_id},
                )
            if iteration is not None and all(k[1] != iteration for k in keys):
                raise SmithersError(
                    "IterationNotFound",
                    f"Iteration {iteration} of node {node_id} not found",
                    {"runId": run_id, "nodeId": node_id, "iteration": iteration},
                )
        summary = summarize(run_id, facts, node_id, iteration)
        return {
            "runId": run_id,
            "nodeId": node_id,
            "iteration": iteration,
            "scope": "run" if node_id is None else "node",
            "summary": summary,
            "agentId": None,
            "source": "facts",
            "cached": False,
            "generatedAtMs": self.ctx.now_ms(),
        }

    async def _no_sandbox(self, params: dict[str, Any], what: str, node: bool) -> Any:
        run_id = _run_id(params)
        node_id = params.get("nodeId")
        if node and (not isinstance(node_id, str) or not node_id):
            raise SmithersError("InvalidNodeId", "nodeId is required")
        facts = await self._facts(run_id)
        if facts is None:
            raise _run_not_found(run_id)
        if node and not node_keys(facts, str(node_id)):
            raise SmithersError(
                "NodeNotFound", f"Node not found: {node_id}", {"runId": run_id, "nodeId": node_id}
            )
        raise SmithersError(
            "UnsupportedSandbox",
            f"{what} needs a version-controlled sandbox; this server runs tasks without one,"
            " so there is no diff to show.",
            {"runId": run_id},
        )

    async def node_diff(self, call: RpcCall, params: dict[str, Any]) -> Any:
        return await self._no_sandbox(params, "getNodeDiff", node=True)

    async def run_diff(self, call: RpcCall, params: dict[str, Any]) -> Any:
        return await self._no_sandbox(params, "getRunDiff", node=False)


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    h = DevToolsMethods(ctx)
    return [
        RpcMethod("getDevToolsSnapshot", h.snapshot, METHOD_SCOPES["getDevToolsSnapshot"]),
        RpcMethod("streamDevTools", h.stream, METHOD_SCOPES["streamDevTools"], websocket_only=True),
        RpcMethod("runs.diff", h.runs_diff, METHOD_SCOPES["runs.diff"]),
        RpcMethod("whatHappened", h.what_happened, METHOD_SCOPES["whatHappened"]),
        RpcMethod(
            "getNodeDiff",
            h.node_diff,
            METHOD_SCOPES["getNodeDiff"],
            aliases=("devtools.getNodeDiff",),
        ),
        RpcMethod("getRunDiff", h.run_diff, METHOD_SCOPES["getRunDiff"]),
    ]


__all__ = ["DevStream", "DevToolsMethods", "DevToolsStreams", "methods"]
