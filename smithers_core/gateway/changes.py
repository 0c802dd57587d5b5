"""What changed, by collection name: the feed behind the REST facade's change stream (reference
9.3) and anything else that keeps a view of the gateway fresh.

Three sources report changes: committed run events (an EventHub tap, so runs of other
processes on the same store count too when the out-of-process bridge is on), RPC methods that
succeed over any transport (each :class:`~smithers_core.contributions.RpcMethod` names the
collections it changes in ``changes``) and gateway broadcasts such as ``cron.triggered``.
Listeners are called synchronously on the event loop and must not block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from smithers_core.store.base import CommittedEvent

log = logging.getLogger("smithers.gateway")

COLLECTIONS = (
    "approvals",
    "crons",
    "docs",
    "node_outputs",
    "nodes",
    "run_events",
    "runs",
    "tickets",
    "workflows",
)
"""Upstream's collection names (reference 9.3)."""

ChangeListener = Callable[[frozenset[str]], None]

_RUN_EVENTS = frozenset({"run_events"})
_RUNS = frozenset({"run_events", "runs"})
_NODES = frozenset({"run_events", "nodes"})
_APPROVALS = frozenset({"run_events", "approvals", "nodes"})


_TIME_TRAVEL = frozenset({"run_events", "runs", "nodes", "node_outputs"})


def event_collections(event_type: str) -> frozenset[str]:
    """The collections a committed run event of ``event_type`` changes."""
    if event_type == "TimeTravelJumped":  # a rewind resets the run, its nodes and outputs
        return _TIME_TRAVEL
    if event_type.startswith("Run"):
        return _RUNS
    if event_type == "NodeOutput":
        return frozenset({"run_events", "node_outputs", "nodes"})
    if event_type.startswith("Approval") or event_type == "NodeWaitingApproval":
        return _APPROVALS | {"runs"}
    if event_type.startswith("Node"):
        return _NODES
    if event_type.startswith("Signal") or event_type.startswith("Timer"):
        return _RUNS
    return _RUN_EVENTS


BROADCAST_CHANGES: dict[str, frozenset[str]] = {
    "cron.triggered": frozenset({"crons", "runs"}),
}
"""Gateway broadcasts that change collections by themselves (run events report their own)."""


class ChangeFeed:
    """The listeners of one gateway's changes."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []

    def listen(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener(collections)`` on every change; returns the function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def changed(self, collections: Iterable[str]) -> None:
        """Report that ``collections`` changed."""
        names = frozenset(collections)
        if not names or not self._listeners:
            return
        for listener in list(self._listeners):
            try:
                listener(names)
            except Exception:
                log.exception("change listener failed")

    def on_events(self, events: list[CommittedEvent]) -> None:
        """The EventHub tap: each batch of committed events, as the collections it changes."""
        if not self._listeners:
            return
        names: set[str] = set()
        for event in events:
            names |= event_collections(event.type)
        self.changed(names)

    def on_broadcast(self, name: str) -> None:
        names = BROADCAST_CHANGES.get(name)
        if names is not None:
            self.changed(names)


__all__ = ["BROADCAST_CHANGES", "COLLECTIONS", "ChangeFeed", "ChangeListener", "event_collections"]
