"""``Runtime``: a store, its engine, the run service and the event hub, opened together.

Every host (``smithers up``, ``start_server``, the serve app, the gateway) opens one runtime
and closes it on shutdown, which suspends (never cancels) the runs it was executing.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from smithers_core.engine.engine import Engine, WorkflowResolver
from smithers_core.engine.options import EngineOptions
from smithers_core.engine.rewind import recover_interrupted
from smithers_core.eventhub import EventHub
from smithers_core.observers import ObserverDispatch
from smithers_core.plugins import PluginHost
from smithers_core.service import RunService
from smithers_core.store import SmithersDb, Store, default_db_url, open_store


class Runtime:
    """Open with ``async with Runtime(...) as rt:``; use ``rt.service``, ``rt.hub``, ``rt.db``."""

    def __init__(
        self,
        db: str | Store | None = None,
        *,
        base_dir: Path | None = None,
        resolver: WorkflowResolver | None = None,
        options: EngineOptions | None = None,
        root_dir: str | None = None,
        allow_network: bool = False,
        plugins: PluginHost | None = None,
        supervise: bool = True,
        sse_poll_ms: int | None = None,
        event_window_size: int | None = None,
        max_event_windows: int | None = None,
        terminal_window_grace_ms: int | None = None,
        unconfined_tools: bool = False,
    ) -> None:
        self._db_arg = db if db is not None else default_db_url()
        self.base_dir = base_dir
        self.resolver = resolver
        self.options = options or EngineOptions.from_env()
        self.root_dir = root_dir
        self.allow_network = allow_network
        self.unconfined_tools = unconfined_tools
        self.plugins = plugins
        self.supervise = supervise
        self.poll_ms = sse_poll_ms if sse_poll_ms is not None else 250
        # EventHub window options; None keeps the hub's defaults (10,000 / 1,000 / 1,000 ms).
        self.hub_options: dict[str, int] = {
            name: value
            for name, value in (
                ("window_size", event_window_size),
                ("max_windows", max_event_windows),
                ("terminal_grace_ms", terminal_window_grace_ms),
            )
            if value is not None
        }
        self._stack: AsyncExitStack | None = None
        self._owns_store = False

    async def __aenter__(self) -> Runtime:
        stack = AsyncExitStack()
        try:
            if isinstance(self._db_arg, str):
                self.store = open_store(self._db_arg, base_dir=self.base_dir)
                self._owns_store = True
                stack.callback(self.store.close)
            else:
                self.store = self._db_arg
            if self.plugins is not None:
                observers = self.plugins.event_observers()
                if observers:
                    dispatch = ObserverDispatch(observers)
                    self.store.add_commit_listener(dispatch)
                    stack.callback(self.store.remove_commit_listener, dispatch)
            self.db = SmithersDb(self.store)
            self.hub = await stack.enter_async_context(
                EventHub(self.store, poll_ms=self.poll_ms, **self.hub_options)
            )
            self.engine = await stack.enter_async_context(
                Engine(
                    self.store,
                    options=self.options,
                    resolver=self.resolver,
                    root_dir=self.root_dir,
                    allow_network=self.allow_network,
                    supervise=self.supervise,
                    unconfined_tools=self.unconfined_tools,
                )
            )
            self.service = RunService(self.engine, self.db)
            # rewinds a crash interrupted: their audit rows become ``partial`` (issue 19)
            await recover_interrupted(self.engine)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
