"""What differs between the two HTTP surfaces, as data (reference/server.md 1, 2 and 3).

``start_server`` (:data:`SERVER`) and the serve app (:data:`SERVE`) share one request pipeline
(:mod:`~smithers_core.hosts.app`) and one implementation of the run routes
(:mod:`~smithers_core.hosts.run_routes`). Every difference upstream has between the two is a
field of :class:`Surface`, except those of the serve app's one run (where the run id comes
from, resuming it after a decision or a signal, the abort set by cancel), which are
:class:`~smithers_core.hosts.run_routes.OwnRun`, and each app's own route paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from smithers_core.hosts.errors import SERVE_TABLE, SERVER_TABLE, Table
from smithers_core.http.auth import serve_authorized, server_authorized
from smithers_core.http.params import int_prefix, optional_int, positive_int

FRAMES_LIMIT = 50


@dataclass(frozen=True, slots=True)
class Surface:
    """One HTTP surface's spelling of the shared behaviour."""

    name: str
    """``server`` or ``serve``: recorded as a run's ``cancelRequestSource``."""
    errors: Table
    """How the run service's errors answer (``NOT_FOUND`` vs ``RUN_NOT_FOUND`` for a missing
    run, and so on); see :mod:`~smithers_core.hosts.errors`."""
    authorized: Callable[[Mapping[str, str], str], bool]
    """Which headers may carry the token (reference/server.md 1.5)."""
    strict_headers: bool
    """JSON replies (and ``/metrics``) also carry ``Cache-Control: no-store`` and
    ``X-Content-Type-Options: nosniff``."""
    count_health: bool
    """``GET /health`` is recorded in the request metrics."""
    lenient_bodies: bool
    """Invalid JSON in a body reads as ``{}`` instead of 400 (413 is always answered)."""
    status_run_state: bool
    """The status body carries ``runState``."""
    frames_need_run: bool
    """The frames route answers 404 for an unknown run (before reading its parameters)."""
    frames_query: Callable[[Mapping[str, str]], tuple[int, int]]
    """``(limit, afterFrameNo)`` of the frames route; -1 means no ``afterFrameNo``."""


def checked_frames_query(q: Mapping[str, str]) -> tuple[int, int]:
    """start_server: ``limit`` is a positive int, ``afterFrameNo`` (when not empty) any
    number, negative ones ignored; anything else is 400 (reference/server.md 2.9)."""
    limit = positive_int(q.get("limit"), FRAMES_LIMIT)
    after = -1
    raw_after = q.get("afterFrameNo")
    if raw_after is not None and raw_after != "":
        after = max(optional_int(raw_after, -1), -1)
    return limit, after


def prefix_frames_query(q: Mapping[str, str]) -> tuple[int, int]:
    """Serve app: ``parseInt`` prefixes, never an error; a ``limit`` of 0 or none is 50, a
    negative one 1; ``afterFrameNo`` applies when it is >= 0 (reference/server.md 3.3)."""
    limit = int_prefix(q.get("limit"))
    if not limit:
        limit = FRAMES_LIMIT
    elif limit < 0:
        limit = 1
    after = int_prefix(q.get("afterFrameNo"))
    return limit, after if after is not None and after >= 0 else -1


SERVER = Surface(
    name="server",
    errors=SERVER_TABLE,
    authorized=server_authorized,
    strict_headers=True,
    count_health=True,
    lenient_bodies=False,
    status_run_state=True,
    frames_need_run=True,
    frames_query=checked_frames_query,
)
"""``start_server``: strict bodies, headers and parameters."""

SERVE = Surface(
    name="serve",
    errors=SERVE_TABLE,
    authorized=serve_authorized,
    strict_headers=False,
    count_health=False,
    lenient_bodies=True,
    status_run_state=False,
    frames_need_run=False,
    frames_query=prefix_frames_query,
)
"""The serve app: plain JSON headers, forgiving bodies and parameters, health uncounted."""


__all__ = ["SERVE", "SERVER", "Surface", "checked_frames_query", "prefix_frames_query"]
