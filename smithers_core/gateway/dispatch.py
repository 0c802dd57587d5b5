"""RPC dispatch: the scope gate, the method table (core's families and plugins' methods alike)
and extension methods, shared by the HTTP and WebSocket transports (reference 5, 8). Run ids in
params are checked once here for every method (D4, :func:`~.params.check_run_ids`).

A call is looked up once; a ``websocket_only`` method called over HTTP is refused
(``INVALID_REQUEST``); then the call is gated (``FORBIDDEN`` with ``requiredScope``), a missing
method answered (``METHOD_NOT_FOUND``, ``EXTENSION_METHOD_NOT_FOUND``), its params validated
and its handler run; engine codes are translated into this surface's (D8). Every transport answers
failures through :meth:`Dispatcher.error_frame`, so error frames and the ``errors_total``
metric are the same whatever carried the call.
"""

from __future__ import annotations

import time
from typing import Any

from smithers_core import scopes
from smithers_core.auth import Identity
from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.errors import SmithersError
from smithers_core.gateway import catalog
from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.extension_calls import ExtensionCalls
from smithers_core.gateway.extensions import Entry
from smithers_core.gateway.params import check_run_ids, parse
from smithers_core.gateway.wire import error_frame, rpc_error, translate


class Dispatcher:
    """Routes one call to its handler after the scope check."""

    __slots__ = ("ctx", "extensions")

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.extensions = ExtensionCalls(ctx)

    def lookup(self, method: str) -> RpcMethod | Entry | None:
        """What serves ``method``: an extension entry, a method of the table, or None."""
        if method.startswith("ext."):
            return self.ctx.extensions.resolve(method)
        return self.ctx.methods.get(method)

    def gate(self, identity: Identity, method: str, target: RpcMethod | Entry | None) -> None:
        """The scope gate for a call of ``method``, served by ``target`` (:meth:`lookup`)."""
        if method.startswith("ext."):
            required = catalog.required_scope(method, target.scope if target else None)
            ok = scopes.has_scope(identity.scopes, required)
        elif isinstance(target, RpcMethod):
            required = target.scope
            names = (method, *(n for n in target.names if n != method))
            ok = catalog.allowed(identity.scopes, names, required, required)
        else:
            required = catalog.required_scope(method)
            ok = catalog.may_call(identity.scopes, method)
        if not ok:
            raise SmithersError(
                "FORBIDDEN",
                f"Missing required scope {required} for {method}",
                {"requiredScope": required},
            )

    def inline(self, method: str) -> RpcMethod | None:
        """The method when it answers without awaiting (``RpcMethod.inline``), else None."""
        target = self.ctx.methods.get(method)
        return target if target is not None and target.inline is not None else None

    def call_inline(self, identity: Identity, target: RpcMethod, method: str, params: Any) -> str:
        """:meth:`call` for an :meth:`inline` method: the payload's JSON, without awaiting."""
        self.gate(identity, method, target)
        assert target.inline is not None
        args = params if isinstance(params, dict) else {}
        check_run_ids(target.name, args)
        started = time.perf_counter()
        try:
            return target.inline(args)
        except SmithersError as exc:
            raise translate(exc) from exc
        finally:
            self.ctx.metrics.duration((time.perf_counter() - started) * 1000)

    async def call(self, call: RpcCall, method: str, params: Any) -> Any:
        """Gate, look up, validate and run; raises ``SmithersError`` with this surface's codes."""
        target = self.lookup(method)
        if isinstance(target, RpcMethod) and target.websocket_only and call.transport != "ws":
            raise SmithersError(
                "INVALID_REQUEST", f"{target.name} is only supported over websocket connections"
            )
        self.gate(call.identity, method, target)
        args = params if isinstance(params, dict) else {}
        if target is not None:
            check_run_ids(target.name if isinstance(target, RpcMethod) else method, args)
        if isinstance(target, Entry):
            return await self.extensions.call(call, target, args)
        if target is None:
            if method.startswith("ext."):
                raise SmithersError(
                    "EXTENSION_METHOD_NOT_FOUND",
                    f"Unknown extension method: {method}",
                    {"method": method},
                )
            raise SmithersError("METHOD_NOT_FOUND", f"Unknown method: {method}")
        started = time.perf_counter()
        try:
            value: Any = args
            if target.params is not None:
                value = parse(target.params, args, "INVALID_REQUEST", f"Invalid {method} params")
            result = await target.handler(call, value)
        except SmithersError as exc:
            raise translate(exc) from exc
        finally:
            self.ctx.metrics.duration((time.perf_counter() - started) * 1000)
        if target.changes:
            self.ctx.changes.changed(target.changes)
        return result

    async def call_as(self, identity: Identity, method: str, params: Any) -> Any:
        """A call a plugin makes for ``identity`` (``HostContext.call``), counted like an HTTP
        RPC call in ``rpc_calls_total`` and, when it fails, ``errors_total``."""
        self.ctx.metrics.call(self.label(method), "http")
        try:
            return await self.call(RpcCall(identity, "http"), method, params)
        except Exception as exc:
            self.ctx.metrics.errors.labels(rpc_error(exc).code).inc()
            raise

    def label(self, method: str) -> str:
        """``rpc_calls_total``'s method label: the name called when something serves it."""
        if method.startswith("ext."):
            return "ext"
        return method if method in self.ctx.methods else "other"

    def error_frame(self, frame_id: str, exc: BaseException) -> dict[str, Any]:
        """The error frame of any failure (counted in ``errors_total{code}``)."""
        error = rpc_error(exc)
        self.ctx.metrics.errors.labels(error.code).inc()
        return error_frame(frame_id, error)


__all__ = ["Dispatcher"]
