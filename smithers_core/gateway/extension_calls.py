"""Calling extension methods (reference 8): ``ext.<ns>.<key>`` resources and actions, and
``ext.stream.<ns>.<key>`` subscriptions whose events go out as ``ext.stream.event``.

Results and stream events are capped at 4 MiB of JSON (``PayloadTooLarge``); a stream whose
socket falls ``run_stream_queue_limit`` frames behind gets ``BackpressureDisconnect`` and is
stopped. Handler failures other than ``SmithersError`` answer ``EXTENSION_HANDLER_ERROR``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import anyio

from smithers_core import jsonutil
from smithers_core.contributions import RpcCall
from smithers_core.errors import SmithersError
from smithers_core.gateway.connection import Connection
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.extensions import (
    MAX_RESULT_BYTES,
    Entry,
    ExtensionContext,
    StreamContext,
    call_maybe_async,
)


class ExtensionCalls:
    """Runs extension handlers for the dispatcher, after its scope gate."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def call(self, call: RpcCall, entry: Entry, params: dict[str, Any]) -> Any:
        conn: Connection | None = call.connection
        base: dict[str, Any] = {
            "namespace": entry.namespace,
            "key": entry.key,
            "kind": entry.kind,
            "scopes": call.identity.scopes,
            "user_id": call.identity.user_id,
            "token_id": call.identity.token_id,
            "connection_id": call.connection_id,
        }
        if entry.kind == "stream":
            if conn is None:
                raise SmithersError(
                    "INVALID_REQUEST",
                    f"Extension stream {entry.method} is only supported over websocket"
                    " connections.",
                )
            return await self._subscribe(conn, entry, params, base)
        ext_ctx = ExtensionContext(**base)
        if conn is not None:
            conn.stream_signals.append(ext_ctx.signal)
        try:
            result = await call_maybe_async(entry.fn, params, ext_ctx)
        except SmithersError:
            raise
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            raise SmithersError("EXTENSION_HANDLER_ERROR", str(exc) or type(exc).__name__) from exc
        finally:
            ext_ctx.signal.set()
            if conn is not None and ext_ctx.signal in conn.stream_signals:
                conn.stream_signals.remove(ext_ctx.signal)
        check_size(result)
        return result

    async def _subscribe(
        self, conn: Connection, entry: Entry, params: dict[str, Any], base: dict[str, Any]
    ) -> Any:
        sockets = self.ctx.sockets
        stream_id = str(uuid.uuid4())
        pending = [0]
        state = {"open": True}
        limit = self.ctx.settings.run_stream_queue_limit
        cleanup_fn: list[Callable[[], Any]] = []

        def done_one() -> None:
            pending[0] -= 1

        def error(code: str, message: str) -> None:
            payload = {
                "streamId": stream_id,
                "namespace": entry.namespace,
                "key": entry.key,
                "error": {"version": "v1", "code": code, "message": message},
            }
            sockets.send_event(conn, "ext.stream.error", payload)

        def send(payload: Any) -> None:
            if not state["open"] or conn.closed:
                return
            envelope = {
                "streamId": stream_id,
                "namespace": entry.namespace,
                "key": entry.key,
                "payload": payload,
            }
            text = jsonutil.dumps(envelope)
            if len(text.encode("utf-8")) > MAX_RESULT_BYTES:
                error("PayloadTooLarge", f"Extension stream event exceeds {MAX_RESULT_BYTES} bytes")
                return
            if pending[0] >= limit:
                error(
                    "BackpressureDisconnect",
                    f"Extension stream outbound queue exceeded {limit} frames;"
                    " disconnecting slow consumer.",
                )
                stop()
                return
            pending[0] += 1
            sockets.send_event_text(conn, "ext.stream.event", text, after=done_one)

        stream_ctx = StreamContext(**base, stream_id=stream_id, send=send)

        def stop() -> None:
            if not state["open"]:
                return
            state["open"] = False
            stream_ctx.signal.set()
            for fn in cleanup_fn:
                self.ctx.spawn_cleanup(fn)

        conn.cleanups.append(stop)
        try:
            result = await call_maybe_async(entry.fn, params, stream_ctx)
        except SmithersError:
            stop()
            raise
        except Exception as exc:
            stop()
            raise SmithersError("EXTENSION_HANDLER_ERROR", "Extension subscribe failed.") from exc
        initial: Any = None
        has_initial = False
        if callable(result):
            cleanup_fn.append(result)
        elif isinstance(result, dict):
            if callable(result.get("cleanup")):
                cleanup_fn.append(result["cleanup"])
            if "initial" in result:
                initial, has_initial = result["initial"], True
        if conn.closed:
            stop()
            raise SmithersError("ConnectionClosed", "Connection closed during subscribe")
        out: dict[str, Any] = {
            "streamId": stream_id,
            "namespace": entry.namespace,
            "key": entry.key,
        }
        if has_initial:
            try:
                check_size(initial)
            except SmithersError:
                stop()
                raise
            out["initial"] = initial
        return out


def check_size(value: Any) -> None:
    """``PayloadTooLarge`` for a result over 4 MiB of JSON; not JSON is a handler error."""
    try:
        size = len(jsonutil.dumps(value).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise SmithersError("EXTENSION_HANDLER_ERROR", "Extension result is not JSON") from exc
    if size > MAX_RESULT_BYTES:
        raise SmithersError(
            "PayloadTooLarge",
            f"Extension result exceeds {MAX_RESULT_BYTES} bytes",
            {"maxBytes": MAX_RESULT_BYTES},
        )


__all__ = ["ExtensionCalls", "check_size"]
