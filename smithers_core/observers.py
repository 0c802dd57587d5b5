"""Calls plugin event observers after every commit, in seq order; never lets them fail a write."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from smithers_core.contributions import EventObserver
from smithers_core.store.base import CommittedEvent

log = logging.getLogger("smithers.observers")


class ObserverDispatch:
    """A store commit listener forwarding each event to every observer."""

    def __init__(self, observers: Sequence[EventObserver]) -> None:
        self.observers = list(observers)
        self.failures = 0

    def __call__(self, events: list[CommittedEvent]) -> None:
        for event in events:
            for observer in self.observers:
                try:
                    observer.on_event(event.run_id, event.seq, event.event, event.encoded)
                except Exception:
                    self.failures += 1
                    log.exception("event observer %r failed", observer)
