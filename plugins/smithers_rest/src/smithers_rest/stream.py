"""``GET /v1/api/stream``: the change stream of reference 9.3.

Changes reported by the gateway (``HostContext.on_change``: run events of any process on the
store, successful mutations, broadcasts) are coalesced for 50 ms into one ``change`` event,
``id: <seq>`` and data ``{seq, collections}`` (sorted names). A ``heartbeat`` (``{seq}``,
after a ``: heartbeat`` comment) goes out every 15 s and once when a stream opens.

The last 256 change frames (at most 64 KiB) are kept in a replay ring: a client resuming with
``Last-Event-ID`` (or ``?lastEventId``) gets the frames after its id, or ``reset`` (``{seq}``:
resync everything) when its id predates the ring or comes from an earlier gateway process. Each
subscriber's queue holds 256 frames / 64 KiB; overflowing clears it and queues a ``reset``.
Caps: 256 streams, 32 per user, 2 per ``X-Request-Id``; beyond them 429 ``RateLimited``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smithers_core import jsonutil
from smithers_core.auth import Identity
from smithers_core.errors import SmithersError
from smithers_core.http.asgi import query, scope_headers
from smithers_rest.envelope import send_failure

log = logging.getLogger("smithers.rest")

ChangeListener = Callable[[frozenset[str]], None]

STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-smithers-api-version", b"v1"),
]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SmithersError("INVALID_CONFIG", f"{name} must be an integer, got {raw!r}") from exc
    if value < 1:
        raise SmithersError("INVALID_CONFIG", f"{name} must be at least 1, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The stream's time constants and bounds (upstream's defaults; ``SMITHERS_REST_*``
    environment variables override them)."""

    coalesce_ms: int = 50
    heartbeat_ms: int = 15_000
    ring_frames: int = 256
    ring_bytes: int = 64 * 1024
    queue_frames: int = 256
    queue_bytes: int = 64 * 1024
    max_streams: int = 256
    max_per_user: int = 32
    max_per_request_id: int = 2

    @classmethod
    def from_env(cls) -> StreamLimits:
        base = cls()
        return cls(
            **{
                name: _env_int(f"SMITHERS_REST_STREAM_{name.upper()}", getattr(base, name))
                for name in cls.__dataclass_fields__
            }
        )


def sse_frame(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {jsonutil.dumps(data)}\n\n".encode()


def heartbeat_frame(seq: int) -> bytes:
    return b": heartbeat\n" + sse_frame("heartbeat", {"seq": seq})


class Subscriber:
    """One open stream: a bounded queue of frames and the event that wakes its writer."""

    __slots__ = ("closed", "frames", "queued_bytes", "request_id", "user", "wake")

    def __init__(self, user: str, request_id: str | None) -> None:
        self.user = user
        self.request_id = request_id
        self.frames: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.closed = False

    def push(self, frame: bytes, limits: StreamLimits, seq: int) -> None:
        if (
            len(self.frames) + 1 > limits.queue_frames
            or self.queued_bytes + len(frame) > limits.queue_bytes
        ):
            self.frames.clear()
            frame = sse_frame("reset", {"seq": seq}, seq)
            self.queued_bytes = 0
        self.frames.append(frame)
        self.queued_bytes += len(frame)
        self.wake.set()

    def take(self) -> bytes:
        out = b"".join(self.frames)
        self.frames.clear()
        self.queued_bytes = 0
        self.wake.clear()
        return out

    def close(self) -> None:
        self.closed = True
        self.wake.set()


def parse_last_event_id(raw: str | None) -> int | None:
    """The resume id; ``INVALID_REQUEST`` unless a non-negative integer."""
    if raw is None:
        return None
    text = raw.strip()
    if not text.isdigit() or not text.isascii():
        raise SmithersError(
            "INVALID_REQUEST", "Last-Event-ID must be a non-negative integer", {"lastEventId": raw}
        )
    return int(text)


class ChangeStream:
    """The sequence, the coalescing, the replay ring and the open streams of one gateway."""

    def __init__(self, limits: StreamLimits | None = None) -> None:
        self.limits = limits or StreamLimits.from_env()
        self.seq = 0
        self.pending: set[str] = set()
        self.ring: deque[tuple[int, bytes]] = deque()
        self.ring_bytes = 0
        self.subscribers: set[Subscriber] = set()
        self._due: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._stop_listening: Callable[[], None] | None = None
        self.running = False

    # -- lifecycle -----------------------------------------------------------------------
    def start(
        self, on_change: Callable[[Callable[[frozenset[str]], None]], Callable[[], None]]
    ) -> None:
        self.running = True
        self._stop_listening = on_change(self.mark)
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        self.running = False
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        if self._due is not None:
            self._due.cancel()
            self._due = None
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self.subscribers):
            sub.close()

    # -- changes -------------------------------------------------------------------------
    def mark(self, collections: frozenset[str]) -> None:
        """Collections changed: one ``change`` goes out ``coalesce_ms`` after the first mark."""
        self.pending |= collections
        if self._due is None and self.running:
            loop = asyncio.get_running_loop()
            self._due = loop.call_later(self.limits.coalesce_ms / 1000, self.flush)

    def mutation_seq(self) -> int:
        """The seq of the ``change`` that carries a mutation just marked."""
        return self.seq + 1 if self.pending else self.seq

    def flush(self) -> None:
        self._due = None
        if not self.pending:
            return
        self.seq += 1
        seq = self.seq
        frame = sse_frame("change", {"seq": seq, "collections": sorted(self.pending)}, seq)
        self.pending = set()
        self.ring.append((seq, frame))
        self.ring_bytes += len(frame)
        limits = self.limits
        while len(self.ring) > 1 and (
            len(self.ring) > limits.ring_frames or self.ring_bytes > limits.ring_bytes
        ):
            self.ring_bytes -= len(self.ring.popleft()[1])
        for sub in self.subscribers:
            sub.push(frame, limits, seq)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.limits.heartbeat_ms / 1000)
            frame = heartbeat_frame(self.seq)
            for sub in self.subscribers:
                sub.push(frame, self.limits, self.seq)

    def replay(self, last_id: int | None) -> bytes:
        """What a stream resuming after ``last_id`` is owed: the ring's later frames, a
        ``reset`` when the id predates the ring (or is from the future), else nothing."""
        if last_id is None or last_id == self.seq:
            return b""
        oldest = self.ring[0][0] if self.ring else self.seq + 1
        if last_id > self.seq or last_id + 1 < oldest:
            return sse_frame("reset", {"seq": self.seq}, self.seq)
        return b"".join(frame for seq, frame in self.ring if seq > last_id)

    # -- caps ----------------------------------------------------------------------------
    def admit(self, user: str, request_id: str | None) -> Subscriber:
        """A new subscriber, or ``RateLimited`` naming the cap it would pass."""
        limits = self.limits
        checks = [
            ("global", len(self.subscribers), limits.max_streams),
            ("user", sum(1 for s in self.subscribers if s.user == user), limits.max_per_user),
        ]
        if request_id:
            same = sum(1 for s in self.subscribers if s.request_id == request_id)
            checks.append(("request", same, limits.max_per_request_id))
        for scope, count, limit in checks:
            if count >= limit:
                raise SmithersError(
                    "RateLimited",
                    f"Gateway SSE subscriber limit reached ({scope} cap of {limit}).",
                    {"scope": scope, "limit": limit},
                )
        sub = Subscriber(user, request_id)
        self.subscribers.add(sub)
        return sub


def user_key(identity: Identity | None) -> str:
    """Whose streams count together: the user, else the token, else everyone anonymous."""
    if identity is None:
        return "anonymous"
    return identity.user_id or (f"token:{identity.token_id}" if identity.token_id else "anonymous")


class StreamEndpoint:
    """The ASGI endpoint of ``GET /v1/api/stream`` (authenticated by core, ``run:read``)."""

    def __init__(self, stream: ChangeStream) -> None:
        self.stream = stream

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        stream = self.stream
        state = scope.get("state") or {}
        headers: dict[str, str] = state.get("headers") or scope_headers(scope)
        try:
            if not stream.running:
                raise SmithersError("HOST_NOT_RUNNING", "The change stream is not running")
            raw = headers.get("last-event-id")
            if raw is None:
                raw = query(scope).get("lastEventId")
            last_id = parse_last_event_id(raw)
            sub = stream.admit(user_key(state.get("identity")), headers.get("x-request-id"))
        except SmithersError as exc:
            await send_failure(send, exc)
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
            first = stream.replay(last_id) + heartbeat_frame(stream.seq)
            await send({"type": "http.response.body", "body": first, "more_body": True})
            await _pump(sub, receive, send)
        finally:
            stream.subscribers.discard(sub)


async def _pump(sub: Subscriber, receive: Any, send: Any) -> None:
    """Write the subscriber's frames until it is closed or the client goes away."""

    async def watch_disconnect() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                sub.close()
                return

    watcher = asyncio.get_running_loop().create_task(watch_disconnect())
    try:
        while True:
            await sub.wake.wait()
            data = sub.take()
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            if sub.closed:
                break
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        pass
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher


__all__ = [
    "ChangeStream",
    "StreamEndpoint",
    "StreamLimits",
    "Subscriber",
    "parse_last_event_id",
    "user_key",
]
