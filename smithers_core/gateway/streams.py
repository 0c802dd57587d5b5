"""``streamRunEvents``: per-run event streams with resume (reference 4.6, D10).

Windows are the event table itself: a stream replays persisted events after the client's
cursor and then follows live commits through the EventHub, so order is always replay, then
live. Stream seq = db seq + 1. ``epoch`` (the store's UUID) is in the response and in every
stream event; a client ``epoch`` that differs answers ``run.gap_resync`` from seq 1. A cursor
older than ``event_window_size`` events answers ``run.gap_resync`` for the skipped range,
then replays the newest window.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from smithers_core import jsonutil
from smithers_core.errors import SmithersError
from smithers_core.gateway.connection import Connection
from smithers_core.gateway.events import map_event

if TYPE_CHECKING:
    from smithers_core.gateway.gateway import Gateway
    from smithers_core.gateway.rpc import CallContext


@dataclass
class RunStream:
    stream_id: str
    run_id: str
    conn: Connection
    user_key: str
    pending: int = 0
    open: bool = True
    cancel: anyio.CancelScope = field(default_factory=anyio.CancelScope)


def user_key(ctx: CallContext) -> str:
    ident = ctx.identity
    return ident.user_id or ident.token_id or ident.role or "anonymous"


class RunStreams:
    """Every open run-event stream of one gateway, with the caps of section 4.6."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.streams: dict[str, RunStream] = {}

    def for_connection(self, conn: Connection) -> list[RunStream]:
        return [s for s in self.streams.values() if s.conn is conn]

    def _check_caps(self, ctx: CallContext, run_id: str) -> None:
        o = self.gw.options
        key = user_key(ctx)
        live = list(self.streams.values())
        for scope, limit, count in (
            ("global", o.max_run_streams, len(live)),
            ("user", o.max_run_streams_per_user, sum(s.user_key == key for s in live)),
            (
                "connection",
                o.max_run_streams_per_connection,
                sum(s.conn is ctx.connection for s in live),
            ),
            ("run", o.max_run_streams_per_run, sum(s.run_id == run_id for s in live)),
        ):
            if count >= limit:
                raise SmithersError(
                    "RateLimited",
                    f"Gateway run-event subscriber limit reached ({scope} cap of {limit}).",
                    {"scope": scope, "limit": limit},
                )

    async def open(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        conn = ctx.connection
        if conn is None or ctx.transport != "ws":
            raise SmithersError(
                "INVALID_REQUEST", "streamRunEvents is only supported over websocket connections"
            )
        run_id = params.get("runId")
        if not isinstance(run_id, str) or not run_id:
            raise SmithersError("InvalidRunId", "runId is required")
        after = params.get("afterSeq")
        if after is not None and (
            not isinstance(after, int) or isinstance(after, bool) or after < 0
        ):
            raise SmithersError("SeqOutOfRange", "afterSeq must be a non-negative integer")
        rt = self.gw.runtime
        if rt.db.run_row(run_id) is None:
            raise SmithersError("RunNotFound", f"Run not found: {run_id}", {"runId": run_id})
        if conn.closed:
            raise SmithersError("ConnectionClosed", "Connection closed")
        current = rt.db.last_seq(run_id) + 1
        epoch = rt.db.epoch
        if after is not None and after > current:
            raise SmithersError(
                "SeqOutOfRange", f"afterSeq {after} is newer than current seq {current}"
            )
        self._check_caps(ctx, run_id)
        stream = RunStream(str(uuid.uuid4()), run_id, conn, user_key(ctx))
        self.streams[stream.stream_id] = stream
        conn.streamed_runs[run_id] = conn.streamed_runs.get(run_id, 0) + 1
        conn.cleanups.append(lambda: self.close(stream))
        client_epoch = params.get("epoch")
        stale_epoch = isinstance(client_epoch, str) and client_epoch != epoch
        tg = conn.task_group
        if tg is not None:

            def start() -> None:
                tg.start_soon(self._run, stream, after, current, stale_epoch)

            ctx.after_response.append(start)
        return {
            "streamId": stream.stream_id,
            "runId": run_id,
            "afterSeq": after,
            "currentSeq": current,
            "epoch": epoch,
        }

    def close(self, stream: RunStream) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            left = stream.conn.streamed_runs.get(stream.run_id, 1) - 1
            if left > 0:
                stream.conn.streamed_runs[stream.run_id] = left
            else:
                stream.conn.streamed_runs.pop(stream.run_id, None)
        stream.open = False
        stream.cancel.cancel()

    def _send(self, stream: RunStream, name: str, payload: dict[str, Any]) -> None:
        if not stream.open:
            return
        limit = self.gw.options.run_stream_queue_limit
        if name == "run.event" and stream.pending >= limit:
            self._error(
                stream,
                "BackpressureDisconnect",
                f"Run event stream outbound queue exceeded {limit} frames;"
                " disconnecting slow consumer.",
            )
            self.gw.metrics.backpressure_disconnects.inc()
            self.close(stream)
            return

        def sent() -> None:
            stream.pending -= 1

        stream.pending += 1
        stream.conn.push_event(name, jsonutil.dumps(payload), self.gw.state_version, sent)

    def _error(self, stream: RunStream, code: str, message: str) -> None:
        payload = {
            "streamId": stream.stream_id,
            "runId": stream.run_id,
            "error": {"version": "v1", "code": code, "message": message},
            "epoch": self.gw.runtime.db.epoch if self.gw.runtime is not None else None,
        }
        stream.conn.push_event("run.error", jsonutil.dumps(payload), self.gw.state_version)

    def heartbeat(self) -> None:
        """One ``run.heartbeat`` per open stream (called by the gateway's shared timer)."""
        if self.gw.runtime is None:
            return
        epoch = self.gw.runtime.db.epoch
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
            stream.conn.push_event("run.heartbeat", jsonutil.dumps(payload), self.gw.state_version)

    async def _run(
        self, stream: RunStream, after: int | None, current: int, stale_epoch: bool
    ) -> None:
        rt = self.gw.runtime
        epoch = rt.db.epoch
        with stream.cancel:
            try:
                if after is None:
                    cursor = current - 1  # live only: db seqs after the current end
                else:
                    window = self.gw.options.event_window_size
                    first_kept = max(current - window + 1, 1)
                    if stale_epoch:
                        gap_from, gap_to = 1, current
                        cursor = current - 1
                    elif after < first_kept - 1:
                        gap_from, gap_to = after + 1, first_kept - 1
                        cursor = first_kept - 2
                    else:
                        gap_from = gap_to = 0
                        cursor = after - 1
                    if gap_to >= gap_from > 0:
                        self._send(
                            stream,
                            "run.gap_resync",
                            {
                                "apiVersion": "v1",
                                "type": "GapResync",
                                "streamId": stream.stream_id,
                                "runId": stream.run_id,
                                "fromSeq": gap_from,
                                "toSeq": gap_to,
                                "snapshot": self.gw.run_record(stream.run_id),
                                "epoch": epoch,
                            },
                        )
                async for event in rt.hub.subscribe(stream.run_id, cursor):
                    if not stream.open:
                        return
                    name, payload = map_event(jsonutil.loads(event.payload_json) or {})
                    self._send(
                        stream,
                        "run.event",
                        {
                            "streamId": stream.stream_id,
                            "apiVersion": "v1",
                            "type": "RunEvent",
                            "runId": stream.run_id,
                            "event": name,
                            "payload": payload,
                            "seq": event.seq + 1,
                            "stateVersion": self.gw.state_version,
                            "epoch": epoch,
                        },
                    )
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                self._error(stream, "Internal", str(exc) or type(exc).__name__)
                self.close(stream)


__all__ = ["RunStream", "RunStreams"]
