"""What a run driver needs of the engine that runs it. :class:`~smithers_core.engine.engine.Engine`
implements it; the driver knows nothing else of the engine."""

from __future__ import annotations

from typing import Protocol

from smithers_core.engine.options import EngineOptions
from smithers_core.store.sqlite import SqliteStore


class SettledRun(Protocol):
    """A driver that stopped driving its run, as its host sees it."""

    @property
    def run_id(self) -> str: ...

    @property
    def final_status(self) -> str | None: ...


class RunHost(Protocol):
    """The store, the owner id the driver writes under, the engine options, the root dir
    tasks run in, and the callback a driver calls once when it stops."""

    @property
    def store(self) -> SqliteStore: ...

    @property
    def owner_id(self) -> str: ...

    @property
    def options(self) -> EngineOptions: ...

    @property
    def root_dir(self) -> str | None: ...

    def run_settled(self, driver: SettledRun) -> None:
        """``driver`` stopped (parked, finished, failed, cancelled, suspended or lost)."""
