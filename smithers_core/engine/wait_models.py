"""The output models of the signal waits this process parked, for the signal payload check.

Each walk tells :class:`WaitModels` which signal waits of its run still wait, with their tree
position and output model. :func:`~smithers_core.engine.signal_check.check_signal_payload`
then finds the wait a signal goes to with a dict lookup instead of rendering the workflow in a
worker thread; it renders only when a wait is not known here (after a restart, or in another
process). Memory is bounded: the oldest runs are forgotten first (a miss only costs a render).
"""

from __future__ import annotations

from pydantic import BaseModel

Key = tuple[str, int]
WaitInfo = tuple[int, type[BaseModel] | None]
"""A wait's tree position (render ordinal) and output model (None: any payload)."""

MAX_RUNS = 10_000


class WaitModels:
    """Per run: the signal waits of its latest walk, ``(node_id, iteration) -> WaitInfo``."""

    def __init__(self, max_runs: int = MAX_RUNS) -> None:
        self.max_runs = max_runs
        self._runs: dict[str, dict[Key, WaitInfo]] = {}

    def remember(self, run_id: str, waits: dict[Key, WaitInfo]) -> None:
        """Replace what is known of the run (no waits: forget it)."""
        self._runs.pop(run_id, None)
        if not waits:
            return
        self._runs[run_id] = waits
        while len(self._runs) > self.max_runs:
            del self._runs[next(iter(self._runs))]

    def forget(self, run_id: str) -> None:
        """The run stopped waiting here (finished, failed, suspended, lost ...)."""
        self._runs.pop(run_id, None)

    def lookup(self, run_id: str, keys: list[Key]) -> dict[Key, WaitInfo] | None:
        """The known waits among ``keys``, or None unless every one of them is known."""
        known = self._runs.get(run_id)
        if known is None:
            return None
        found = {}
        for key in keys:
            info = known.get(key)
            if info is None:
                return None
            found[key] = info
        return found

    def __len__(self) -> int:
        return len(self._runs)


__all__ = ["WaitInfo", "WaitModels"]
