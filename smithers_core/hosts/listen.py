"""Serving a host app on uvicorn (D9): the insecure-bind refusal, the protocol timeouts, and a
shutdown that ends open event streams first and drops what is still open after 3 s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from smithers_core.errors import SmithersError, sole_error
from smithers_core.hosts.app import HostApp
from smithers_core.hosts.options import HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, option_ms
from smithers_core.http.binding import BoundServer, serve_app
from smithers_core.loopback import is_loopback_host

CLOSE_GRACE_S = 3


def refuse_insecure_bind(host: str, token: str | None, insecure: bool) -> None:
    """``SERVER_INSECURE_BIND`` for a non-loopback host without a token, unless ``insecure``."""
    if not is_loopback_host(host) and token is None and not insecure:
        raise SmithersError(
            "SERVER_INSECURE_BIND",
            f"Refusing to bind {host} without an auth token (pass insecure=True to override)",
        )


@asynccontextmanager
async def listening(
    app: HostApp,
    *,
    host: str,
    port: int,
    headers_timeout: int | None,
    request_timeout: int | None,
) -> AsyncIterator[BoundServer]:
    """Serve ``app`` while the block runs; timeouts in ms (None: environment, then default).

    A failure to start (``SERVER_BIND_FAILED`` for a port in use) is raised as the
    ``SmithersError`` itself, not inside an ``ExceptionGroup``.
    """
    bound: BoundServer | None = None
    try:
        async with anyio.create_task_group() as tg:
            bound = await serve_app(
                tg,
                app,
                host=host,
                port=port,
                lifespan="off",
                headers_timeout_ms=option_ms(
                    headers_timeout, "SMITHERS_HEADERS_TIMEOUT_MS", HEADERS_TIMEOUT_MS
                ),
                request_timeout_ms=option_ms(
                    request_timeout, "SMITHERS_REQUEST_TIMEOUT_MS", REQUEST_TIMEOUT_MS
                ),
            )
            try:
                yield bound
            finally:
                app.streams.stop()
                with anyio.CancelScope(shield=True):
                    await bound.close(grace_s=CLOSE_GRACE_S)
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        error = sole_error(group)
        if bound is None and isinstance(error, SmithersError):
            raise error from None
        raise


__all__ = ["listening", "refuse_insecure_bind"]
