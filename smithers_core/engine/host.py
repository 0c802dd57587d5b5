"""What a run driver needs of the engine that runs it.

:class:`~smithers_core.engine.engine.Engine` implements :class:`RunHost`; the driver knows
nothing else of the engine, so neither imports the other both ways.
"""

from __future__ import annotations

from typing import Protocol

from smithers_core.engine.options import EngineOptions
from smithers_core.engine.wait_models import WaitModels
from smithers_core.store.base import Store


class SettledRun(Protocol):
    """A driver that stopped driving its run, as its host sees it."""

    @property
    def run_id(self) -> str:
        """The run the driver drove."""

    @property
    def final_status(self) -> str | None:
        """How it stopped (``finished``, ``waiting-timer``, ``suspended``, ``lost`` ...)."""


class RunHost(Protocol):
    """The store, the owner id the driver writes under, the engine options, the root dir
    tasks run in, the signal waits' models, and the callback a driver calls once when it
    stops."""

    @property
    def store(self) -> Store:
        """The store the run lives in."""

    @property
    def owner_id(self) -> str:
        """The runtime owner id this process writes running runs under."""

    @property
    def options(self) -> EngineOptions:
        """Time constants and limits (backoff cap, heartbeat throttle, cancel grace)."""

    @property
    def root_dir(self) -> str | None:
        """The directory tasks run in (``TaskContext.root_dir``)."""

    @property
    def unconfined_tools(self) -> bool:
        """The operator let tools run without filesystem confinement where it is unavailable."""

    @property
    def wait_models(self) -> WaitModels:
        """Where each walk leaves the output models of its run's signal waits."""

    def run_settled(self, driver: SettledRun) -> None:
        """``driver`` stopped (parked, finished, failed, cancelled, suspended or lost)."""
