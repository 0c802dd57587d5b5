"""``streamRunEvents``: per-run event streams with resume (reference 4.6, D10, issue 6).

A stream is a reader of the run's persisted events: it replays the events after the client's
cursor and then follows new commits, reading through the EventHub (the run's in-memory window
when it covers the cursor, else the event table). Order is therefore always gap_resync ->
replay -> live, and events committed during the replay wait in the store, never dropped or
reordered. Stream seq = db seq + 1, so a cursor stays valid across gateway restarts.

- A client away longer than ``event_window_size`` still gets every event it missed: the
  window is only a cache, replay falls back to the event table.
- ``run.gap_resync`` (with a ``getRun``-style snapshot) is sent only when the requested events
  no longer exist anywhere (their rows are gone and no window holds them), or when the
  client's ``epoch`` differs from the store's (then from seq 1, followed by live events).
- ``epoch`` (the store's UUID) is in the response and in every stream event.
- Backpressure: at most ``run_stream_queue_limit`` frames of a stream wait unsent on its
  socket. Replayed events are read from the store at the client's pace (the stream waits for
  the socket to drain; a long replay never disconnects a healthy client). A stream whose
  queue is full when a *live* event (committed after the stream opened) is due, or that falls
  more than the limit behind the run's live events while its replay is stalled, gets
  ``run.error`` ``BackpressureDisconnect`` and is torn down; the socket and its other streams
  stay open.
- Each event is encoded once for every stream of its run while more than one stream is
  attached; per-stream frames differ only in ``streamId`` and ``stateVersion`` (D13).
- One reader per run: a stream reads on its own only while it replays. Once it has caught up
  with the run's newest event it joins the run's :class:`RunFollower`, a single task that
  reads each new page once (one status read, one window read) and hands every event to all
  of its streams, instead of every stream waking, reading and checking the run per event.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel

from smithers_core import jsonutil
from smithers_core.contributions import RpcCall
from smithers_core.engine.transitions import TERMINAL_RUN
from smithers_core.errors import SmithersError
from smithers_core.eventhub import StoredEvent
from smithers_core.gateway.connection import Connection
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.events import map_event_json
from smithers_core.gateway.params import run_id_of
from smithers_core.store.events import newest_missing_event_seq

PAGE = 500
FRAGMENT_CACHE = 4096
YIELD_EVERY = 512  # deliveries a follower makes before it lets other tasks run
pause = anyio.lowlevel.checkpoint  # how a follower lets other tasks run mid-page


@dataclass(eq=False)
class RunStream:
    stream_id: str
    run_id: str
    conn: Connection
    user_key: str
    attach: int = -1  # db seq of the run's last event when the stream opened
    pending: int = 0  # run.event frames pushed to the socket and not yet written
    open: bool = True
    drained: anyio.Event | None = None
    cancel: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cursor: int = -1  # db seq of the last event this stream delivered (or skipped past)
    follower: RunFollower | None = None


@dataclass(eq=False)
class RunFollower:
    """The live reader of one run, shared by every stream of the run that has caught up.

    A stream joins only when its cursor is at or past the follower's, so the follower never
    owes a member an event it already passed; events a member already has are skipped.
    """

    run_id: str
    cursor: int  # db seq of the last event read
    members: dict[str, RunStream] = field(default_factory=dict)


def user_key(call: RpcCall) -> str:
    ident = call.identity
    return ident.user_id or ident.token_id or ident.role or "anonymous"


class RunStreams:
    """Every open run-event stream of one gateway, with the caps of section 4.6."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.streams: dict[str, RunStream] = {}
        self.per_run: dict[str, int] = {}
        self._fragments: OrderedDict[tuple[str, int], str] = OrderedDict()
        self.followers: dict[str, RunFollower] = {}

    def for_connection(self, conn: Connection) -> list[RunStream]:
        return [s for s in self.streams.values() if s.conn is conn]

    def _check_caps(self, call: RpcCall, run_id: str) -> None:
        o = self.ctx.settings
        key = user_key(call)
        live = list(self.streams.values())
        for scope, limit, count in (
            ("global", o.max_run_streams, len(live)),
            ("user", o.max_run_streams_per_user, sum(s.user_key == key for s in live)),
            (
                "connection",
                o.max_run_streams_per_connection,
                sum(s.conn is call.connection for s in live),
            ),
            ("run", o.max_run_streams_per_run, self.per_run.get(run_id, 0)),
        ):
            if count >= limit:
                raise SmithersError(
                    "RateLimited",
                    f"Gateway run-event subscriber limit reached ({scope} cap of {limit}).",
                    {"scope": scope, "limit": limit},
                )

    async def open(self, call: RpcCall, params: dict[str, Any]) -> Any:
        """Open a stream for the calling socket; it starts once the response is queued."""
        conn = call.connection
        if conn is None or call.transport != "ws":
            raise SmithersError(
                "INVALID_REQUEST", "streamRunEvents is only supported over websocket connections"
            )
        run_id = run_id_of(params, "InvalidRunId")
        after = params.get("afterSeq")
        if after is not None and (
            not isinstance(after, int) or isinstance(after, bool) or after < 0
        ):
            raise SmithersError("SeqOutOfRange", "afterSeq must be a non-negative integer")
        rt = self.ctx.runtime
        if rt.db.run_row(run_id) is None:
            raise SmithersError("RunNotFound", f"Run not found: {run_id}", {"runId": run_id})
        if conn.closed:
            raise SmithersError("ConnectionClosed", "Connection closed")
        last = rt.db.last_seq(run_id)  # db seq, -1 before the first event
        current = last + 1  # the stream seq of the run's newest event
        epoch = rt.db.epoch
        if after is not None and after > current:
            raise SmithersError(
                "SeqOutOfRange", f"afterSeq {after} is newer than current seq {current}"
            )
        self._check_caps(call, run_id)
        stream = RunStream(str(uuid.uuid4()), run_id, conn, user_key(call), attach=last)
        self.streams[stream.stream_id] = stream
        self.per_run[run_id] = self.per_run.get(run_id, 0) + 1
        conn.streamed_runs[run_id] = conn.streamed_runs.get(run_id, 0) + 1
        conn.cleanups.append(lambda: self.close(stream))
        client_epoch = params.get("epoch")
        stale_epoch = isinstance(client_epoch, str) and client_epoch != epoch

        def start() -> None:
            if stream.open and not conn.closed:
                conn.spawn(self._run(stream, after, stale_epoch))

        call.after_response.append(start)
        return {
            "streamId": stream.stream_id,
            "runId": run_id,
            "afterSeq": after,
            "currentSeq": current,
            "epoch": epoch,
        }

    def close(self, stream: RunStream) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            for counts in (stream.conn.streamed_runs, self.per_run):
                left = counts.get(stream.run_id, 1) - 1
                if left > 0:
                    counts[stream.run_id] = left
                else:
                    counts.pop(stream.run_id, None)
        stream.open = False
        if stream.follower is not None:
            stream.follower.members.pop(stream.stream_id, None)
            stream.follower = None
        if stream.drained is not None:
            stream.drained.set()
        stream.cancel.cancel()

    # -- frames ------------------------------------------------------------------------------
    def _epoch(self) -> str | None:
        return self.ctx.runtime.db.epoch if self.ctx.running else None

    def _push(self, stream: RunStream, name: str, payload: dict[str, Any]) -> None:
        stream.conn.push_event(name, jsonutil.dumps(payload), self.ctx.sockets.state_version)

    def _fragment(self, event: StoredEvent) -> str:
        """``"apiVersion"`` .. ``"seq"`` of a ``run.event`` payload: the same on every stream."""
        key = (event.run_id, event.seq)
        frag = self._fragments.get(key)
        if frag is not None:
            return frag
        name, payload_json = map_event_json(event.payload_json)
        frag = (
            ',"apiVersion":"v1","type":"RunEvent","runId":'
            + jsonutil.dumps(event.run_id)
            + ',"event":'
            + jsonutil.dumps(name)
            + ',"payload":'
            + payload_json
            + ',"seq":'
            + str(event.seq + 1)
        )
        if self.per_run.get(event.run_id, 0) > 1:
            self._fragments[key] = frag
            while len(self._fragments) > FRAGMENT_CACHE:
                self._fragments.popitem(last=False)
        return frag

    def _send_event(self, stream: RunStream, fragment: str, epoch_tail: str) -> None:
        state_version = self.ctx.sockets.state_version
        text = (
            '{"streamId":"'
            + stream.stream_id
            + '"'
            + fragment
            + ',"stateVersion":'
            + str(state_version)
            + epoch_tail
        )
        limit = self.ctx.settings.run_stream_queue_limit

        def sent() -> None:
            stream.pending -= 1
            drained = stream.drained
            if drained is not None and stream.pending <= limit // 2:
                stream.drained = None
                drained.set()

        stream.pending += 1
        stream.conn.push_event("run.event", text, state_version, sent)

    def _gap_resync(self, stream: RunStream, from_seq: int, to_seq: int) -> None:
        self._push(
            stream,
            "run.gap_resync",
            {
                "apiVersion": "v1",
                "type": "GapResync",
                "streamId": stream.stream_id,
                "runId": stream.run_id,
                "fromSeq": from_seq,
                "toSeq": to_seq,
                "snapshot": self.ctx.views.run_record(stream.run_id),
                "epoch": self._epoch(),
            },
        )

    def _error(self, stream: RunStream, code: str, message: str) -> None:
        self._push(
            stream,
            "run.error",
            {
                "streamId": stream.stream_id,
                "runId": stream.run_id,
                "error": {"version": "v1", "code": code, "message": message},
                "epoch": self._epoch(),
            },
        )

    def _backpressure(self, stream: RunStream) -> None:
        limit = self.ctx.settings.run_stream_queue_limit
        self._error(
            stream,
            "BackpressureDisconnect",
            f"Run event stream outbound queue exceeded {limit} frames;"
            " disconnecting slow consumer.",
        )
        self.ctx.metrics.backpressure_disconnects.inc()
        self.close(stream)

    def heartbeat(self) -> None:
        """One ``run.heartbeat`` per open stream (called by the gateway's shared timer)."""
        if not self.ctx.running:
            return
        epoch = self.ctx.runtime.db.epoch
        now = int(time.time() * 1000)
        for stream in list(self.streams.values()):
            if stream.conn.closed:
                continue
            payload = {
                "apiVersion": "v1",
                "type": "Heartbeat",
                "streamId": stream.stream_id,
                "runId": stream.run_id,
                "ts": now,
                "epoch": epoch,
            }
            self._push(stream, "run.heartbeat", payload)

    # -- the reader --------------------------------------------------------------------------
    async def _missing_before(self, run_id: str, lo: int, hi: int) -> int | None:
        """The newest db seq in ``[lo, hi]`` that no longer exists anywhere, or None.

        Events the run's window holds exist even if their rows are gone; the rest are
        checked in the event table (one indexed count; a scan only when rows are missing).
        """
        rt = self.ctx.runtime
        first = rt.hub.windows.first_seq(run_id)
        if first is not None and first <= hi:
            hi = first - 1
        if hi < lo:
            return None

        result: int | None = await rt.store.aread(
            functools.partial(newest_missing_event_seq, run_id=run_id, lo=lo, hi=hi)
        )
        return result

    async def _wait_drained(self, stream: RunStream) -> None:
        """Wait until the socket took half of the stream's queue; meanwhile, if the run's live
        events (committed after the stream opened) pile up past the limit, disconnect."""
        rt = self.ctx.runtime
        limit = self.ctx.settings.run_stream_queue_limit
        while stream.open and stream.pending > limit // 2:
            drained = stream.drained = anyio.Event()
            waiter = rt.hub.waiter(stream.run_id)
            async with anyio.create_task_group() as tg:

                async def first(ev: anyio.Event) -> None:
                    await ev.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(first, drained)
                tg.start_soon(first, waiter)
            if stream.open and rt.db.last_seq(stream.run_id) - stream.attach > limit:
                self._backpressure(stream)

    async def _run(self, stream: RunStream, after: int | None, stale_epoch: bool) -> None:
        rt = self.ctx.runtime
        hub = rt.hub
        limit = self.ctx.settings.run_stream_queue_limit
        epoch_tail = ',"epoch":' + jsonutil.dumps(rt.db.epoch) + "}"
        fallback_s = max(hub.poll_ms, 50) / 1000 * 4
        with stream.cancel:
            try:
                cursor = stream.attach  # db seq of the last event this stream delivered
                if stale_epoch:
                    # A different history: the client must resync; live events follow.
                    self._gap_resync(stream, 1, stream.attach + 1)
                elif after is not None:
                    cursor = after - 1
                    missing = await self._missing_before(stream.run_id, after, stream.attach)
                    if missing is not None:
                        self._gap_resync(stream, after + 1, missing + 1)
                        cursor = missing
                stream.cursor = cursor
                while stream.open:
                    waiter = hub.waiter(stream.run_id)
                    status = hub.status(stream.run_id)
                    page = await hub.aread(stream.run_id, stream.cursor, PAGE)
                    if not page:
                        if status is None or status in TERMINAL_RUN:
                            return  # every event delivered; the stream stays until close
                        if self._join(stream):
                            return  # caught up: the run's follower delivers from here
                        with anyio.move_on_after(fallback_s):
                            await waiter.wait()
                        continue
                    for event in page:
                        if stream.pending >= limit:
                            if event.seq > stream.attach:
                                self._backpressure(stream)
                                return
                            await self._wait_drained(stream)
                            if not stream.open:
                                return
                        self._deliver(stream, event, self._fragment(event), epoch_tail)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                self._error(stream, "Internal", str(exc) or type(exc).__name__)
                self.close(stream)

    def _deliver(self, stream: RunStream, event: StoredEvent, fragment: str, tail: str) -> None:
        if event.seq != stream.cursor + 1:  # rows deleted under a running stream
            self._gap_resync(stream, stream.cursor + 2, event.seq)
        self._send_event(stream, fragment, tail)
        stream.cursor = event.seq

    # -- the shared live reader ------------------------------------------------------------------
    def _join(self, stream: RunStream) -> bool:
        """Hand a caught-up stream to its run's follower (started on first use). False when
        the follower is ahead of the stream, which then reads the difference itself."""
        follower = self.followers.get(stream.run_id)
        if follower is None:
            follower = RunFollower(stream.run_id, stream.cursor)
            if not self.ctx.spawn(self._follow, follower):
                return False  # the gateway is closing: the stream keeps reading on its own
            self.followers[stream.run_id] = follower
        elif follower.cursor > stream.cursor:
            return False
        follower.members[stream.stream_id] = stream
        stream.follower = follower
        return True

    async def _fan_out(
        self, follower: RunFollower, page: list[StoredEvent], epoch_tail: str, limit: int
    ) -> None:
        """Deliver one page to every member, a member at a time (so each socket gets its
        frames together and writes them in batches), yielding every ``YIELD_EVERY``
        deliveries. Streams that join during a yield get the rest of the page too."""
        last = page[-1].seq
        fragments: dict[int, str] = {}
        served: set[str] = set()
        since_yield = 0
        while True:
            todo = [
                m
                for m in follower.members.values()
                if m.cursor < last and m.stream_id not in served
            ]
            if not todo:
                break
            for stream in todo:
                served.add(stream.stream_id)
                for event in page:
                    if not stream.open:
                        break
                    if event.seq <= stream.cursor:
                        continue
                    if stream.pending >= limit:  # a live event and a full queue
                        self._backpressure(stream)
                        break
                    fragment = fragments.get(event.seq)
                    if fragment is None:
                        fragment = fragments[event.seq] = self._fragment(event)
                    self._deliver(stream, event, fragment, epoch_tail)
                    since_yield += 1
                if since_yield >= YIELD_EVERY:
                    since_yield = 0
                    await pause()
        follower.cursor = last

    async def _follow(self, follower: RunFollower) -> None:
        rt = self.ctx.runtime
        hub = rt.hub
        limit = self.ctx.settings.run_stream_queue_limit
        epoch_tail = ',"epoch":' + jsonutil.dumps(rt.db.epoch) + "}"
        fallback_s = max(hub.poll_ms, 50) / 1000 * 4
        members = follower.members
        try:
            while members:
                waiter = hub.waiter(follower.run_id)
                status = hub.status(follower.run_id)
                page = await hub.aread(follower.run_id, follower.cursor, PAGE)
                if not page:
                    if status is None or status in TERMINAL_RUN:
                        return  # every event delivered; the streams stay until closed
                    with anyio.move_on_after(fallback_s):
                        await waiter.wait()
                    continue
                await self._fan_out(follower, page, epoch_tail, limit)
        except Exception as exc:
            for stream in list(members.values()):
                self._error(stream, "Internal", str(exc) or type(exc).__name__)
                self.close(stream)
        finally:
            if self.followers.get(follower.run_id) is follower:
                del self.followers[follower.run_id]
            for stream in members.values():
                stream.follower = None
            members.clear()


__all__ = ["RunFollower", "RunStream", "RunStreams"]
