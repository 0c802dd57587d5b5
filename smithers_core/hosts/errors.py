"""Status tables: how each surface maps the run service's semantic errors (D8).

Upstream spells the same failure differently per surface (``NOT_FOUND`` on start_server,
``RUN_NOT_FOUND`` in the serve app), so each surface has its own table. Anything unmapped is
500 ``SERVER_ERROR``. Changes from upstream are those of D7: deciding a node that is not
waiting is 409 ``NODE_NOT_WAITING`` (SRV-82, S39), a signal to a terminal run is 409
``RUN_NOT_ACTIVE`` (SRV-90).
"""

from __future__ import annotations

from smithers_core.errors import SmithersError
from smithers_core.http.errors import HttpError

# code -> (status, wire code, fixed message or None to keep the service's message)
Table = dict[str, tuple[int, str, str | None]]

_COMMON: Table = {
    "INVALID_INPUT": (400, "INVALID_REQUEST", None),
    "INVALID_REQUEST": (400, "INVALID_REQUEST", None),
    "RUN_ALREADY_EXISTS": (409, "RUN_ALREADY_EXISTS", "Run id already exists"),
    "RUN_NOT_ACTIVE": (409, "RUN_NOT_ACTIVE", "Run is not currently active"),
    "NODE_NOT_WAITING": (409, "NODE_NOT_WAITING", None),
    "ALREADY_DECIDED": (409, "NODE_NOT_WAITING", None),
    "FORBIDDEN": (403, "FORBIDDEN", None),
}

SERVER_TABLE: Table = {**_COMMON, "RUN_NOT_FOUND": (404, "NOT_FOUND", "Run not found")}
SERVE_TABLE: Table = {**_COMMON, "RUN_NOT_FOUND": (404, "RUN_NOT_FOUND", "Run not found")}


def to_http(exc: SmithersError, table: Table) -> HttpError:
    """The HTTP error for a service error (500 ``SERVER_ERROR`` when unmapped)."""
    if isinstance(exc, HttpError):
        return exc
    entry = table.get(exc.code)
    if entry is None:
        return HttpError(500, "SERVER_ERROR", exc.message or "Unknown error")
    status, code, message = entry
    details = exc.details if code == "INVALID_REQUEST" and exc.details else None
    return HttpError(status, code, message or exc.message, details)
