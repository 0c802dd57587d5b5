"""Engine time constants (D12): upstream defaults, each with an ``SMITHERS_*`` override."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class EngineOptions:
    heartbeat_interval_ms: int = 1_000
    stale_after_ms: int = 30_000
    cancel_poll_ms: int = 250
    sweep_ms: int = 10_000
    timer_tick_ms: int = 500
    task_heartbeat_throttle_ms: int = 500
    task_heartbeat_max_bytes: int = 1_048_576
    backoff_cap_ms: int = 300_000
    cancel_grace_ms: int = 5_000

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: int | None
    ) -> EngineOptions:
        """Defaults, then ``SMITHERS_<NAME>`` environment values, then explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = env.get(f"SMITHERS_{f.name.upper()}")
            if raw:
                values[f.name] = int(raw)
            given = overrides.get(f.name)
            if given is not None:
                values[f.name] = int(given)
        return cls(**values)
