"""Helpers of the REST facade tests: a gateway with the ``smithers_rest`` (and cron) plugins,
tokens of several scopes, and a server-sent-events reader for ``/v1/api/stream``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import smithers_cron
import smithers_rest

from smithers_core.gateway import Gateway
from tests.gateway_helpers import TOKENS, http, make_gateway, plugin_host

REST_TOKENS: dict[str, Any] = {
    **TOKENS,
    "reader": {"role": "viewer", "scopes": ["run:read", "cron:read"], "userId": "user:rita"},
    "crons-only": {"role": "viewer", "scopes": ["cron:read"], "userId": "user:carl"},
    "other": {"role": "operator", "scopes": ["*"], "userId": "user:olga"},
}


def rest_gateway(tmp_path: Path, **options: Any) -> Gateway:
    """A gateway with core's defaults, tokens, ``smithers_rest`` and ``smithers_cron``."""
    host = plugin_host()
    host.register(smithers_rest, "smithers_rest")
    host.register(smithers_cron, "smithers_cron")
    return make_gateway(tmp_path, tokens=REST_TOKENS, plugins=host, **options)


@dataclass
class SseEvent:
    """One server-sent event: its ``event`` name, ``id``, parsed ``data`` and comments."""

    event: str
    data: Any
    id: int | None = None
    comments: list[str] = field(default_factory=list)


class SseReader:
    """Reads events from an open ``/v1/api/stream`` response, one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> SseEvent:
        fields: dict[str, str] = {}
        comments: list[str] = []
        with anyio.fail_after(timeout):
            for _ in range(1000):
                line = await self._lines.__anext__()
                if line == "":
                    if fields:
                        raw_id = fields.get("id")
                        return SseEvent(
                            fields.get("event", "message"),
                            json.loads(fields.get("data", "null")),
                            int(raw_id) if raw_id is not None else None,
                            comments,
                        )
                    continue
                if line.startswith(":"):
                    comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        raise AssertionError("no event in 1000 lines")

    async def until(self, name: str, timeout: float = 5.0) -> SseEvent:
        """The next event called ``name``, skipping others (heartbeats ...)."""
        with anyio.fail_after(timeout):
            for _ in range(1000):
                event = await self.next(timeout)
                if event.event == name:
                    return event
        raise AssertionError(f"no {name} event in 1000 events")


@asynccontextmanager
async def open_changes(
    gw: Gateway, token: str = "op-token", **headers: str
) -> AsyncIterator[SseReader]:
    """An open change stream (subscribed: its first frames are on their way)."""
    async with (
        http(gw, token, headers=headers) as client,
        client.stream("GET", "/v1/api/stream") as response,
    ):
        assert response.status_code == 200, (await response.aread()).decode()
        yield SseReader(response)
