"""Gateway scope matcher: decides whether a caller's granted scopes authorise a required scope.

This is the Python counterpart of upstream's ``hasGatewayScope`` (gateway reference, section
6.7). An identity carries a list of *grants* (``Identity.scopes``); each grant is one of:

* ``*`` -- grants everything, including scopes this module does not know about;
* a base scope from :data:`KNOWN_SCOPES` (``run:read``, ``cron:write``, ...), which also
  implies the lower scopes of its family: ``run:read < run:write < run:admin``,
  ``cron:read < cron:write`` and ``ticket:read < ticket:write``; every other scope implies only
  itself;
* a legacy access level from older upstream (``read < execute < approve < admin``), expanded to
  base scopes by a fixed table (``admin`` expands to every *known* scope);
* an RPC method name (``runs.create``, ``getRun``) or a method prefix wildcard (``runs.*``).
  These authorise a call only when the method's own catalog scope implies the required scope,
  so a name grant can never escalate beyond what the method legitimately needs. Methods without
  a catalog scope (extensions, unknown methods) are never authorised by name or prefix grants.

Any other string (for example an extension scope such as ``deploy:ship``) is matched only by
an identical grant or by ``*``. Roles never take part in scope checks.

Grant entries are whitespace-trimmed and blank entries ignored. All implication tables are
precomputed at import time because :func:`has_scope` runs on every RPC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

__all__ = [
    "KNOWN_SCOPES",
    "LEGACY_LEVELS",
    "METHOD_SCOPES",
    "SCOPE_VALUES",
    "expand_granted",
    "has_scope",
    "is_known_scope",
    "satisfies_any",
    "scope_for_method",
]

#: Every base scope, in upstream catalog order.
SCOPE_VALUES: Final[tuple[str, ...]] = (
    "run:read",
    "run:write",
    "run:admin",
    "approval:submit",
    "signal:submit",
    "cron:read",
    "cron:write",
    "account:read",
    "memory:read",
    "prompt:read",
    "score:read",
    "ticket:read",
    "ticket:write",
    "observability:read",
)

KNOWN_SCOPES: Final[frozenset[str]] = frozenset(SCOPE_VALUES)

# Ordered families: a scope implies itself and every scope earlier in its family.
_FAMILIES: Final[tuple[tuple[str, ...], ...]] = (
    ("run:read", "run:write", "run:admin"),
    ("cron:read", "cron:write"),
    ("ticket:read", "ticket:write"),
)


def _build_scope_implications() -> dict[str, frozenset[str]]:
    table: dict[str, frozenset[str]] = {scope: frozenset((scope,)) for scope in SCOPE_VALUES}
    for family in _FAMILIES:
        for index, scope in enumerate(family):
            table[scope] = frozenset(family[: index + 1])
    return table


# Base scope -> the set of base scopes it satisfies (itself plus lower family members).
# Private tables are plain dicts (fastest lookups); public ones are read-only proxies.
_SCOPE_IMPLIES: Final[dict[str, frozenset[str]]] = _build_scope_implications()

_LEGACY_READ: Final[frozenset[str]] = frozenset(
    (
        "run:read",
        "cron:read",
        "account:read",
        "memory:read",
        "prompt:read",
        "score:read",
        "ticket:read",
        "observability:read",
    )
)
_LEGACY_EXECUTE: Final[frozenset[str]] = frozenset(
    (
        "run:read",
        "run:write",
        "signal:submit",
        "cron:read",
        "cron:write",
        "ticket:read",
        "ticket:write",
    )
)

#: Legacy access level -> the base scopes it grants (older upstream's read < execute < approve
#: < admin). Note the levels are not strictly nested: ``read`` grants observability/account/...
#: reads that ``execute`` does not.
LEGACY_LEVELS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "read": _LEGACY_READ,
        "execute": _LEGACY_EXECUTE,
        "approve": _LEGACY_EXECUTE | {"approval:submit"},
        "admin": KNOWN_SCOPES,
    }
)

# Grant token -> base scopes it satisfies. Base scopes and legacy levels never collide.
_GRANT_IMPLIES: Final[dict[str, frozenset[str]]] = {**_SCOPE_IMPLIES, **LEGACY_LEVELS}

# Core RPC method -> required scope, canonical names plus legacy aliases.
# Provisional: the gateway issue owns the final catalog; keep this in sync with it.
METHOD_SCOPES: Final[dict[str, str]] = {
    # Canonical methods.
    "health": "run:read",
    "listWorkflows": "run:read",
    "launchRun": "run:write",
    "getRun": "run:read",
    "listRuns": "run:read",
    "resumeRun": "run:write",
    "cancelRun": "run:write",
    "runs.rerun": "run:write",
    "rerunRun": "run:write",
    "listNodeStates": "run:read",
    "frames.list": "run:read",
    "frames.get": "run:read",
    "attempts.list": "run:read",
    "attempts.get": "run:read",
    "listApprovals": "run:read",
    "submitApproval": "approval:submit",
    "submitSignal": "signal:submit",
    "streamRunEvents": "run:read",
    "cronList": "cron:read",
    "cronCreate": "cron:write",
    "cronDelete": "cron:write",
    "cronRun": "cron:write",
    "hijackRun": "run:admin",
    "jumpToFrame": "run:admin",
    "getNodeOutput": "run:read",
    "listPrompts": "prompt:read",
    "getDevToolsSnapshot": "observability:read",
    "streamDevTools": "observability:read",
    "getNodeDiff": "run:read",
    "getRunDiff": "run:read",
    "whatHappened": "run:read",
    # Dotted spellings and legacy aliases.
    "cron.list": "cron:read",
    "cron.add": "cron:write",
    "cron.remove": "cron:write",
    "cron.trigger": "cron:write",
    "runs.create": "run:write",
    "runs.get": "run:read",
    "runs.list": "run:read",
    "runs.cancel": "run:write",
    "runs.resume": "run:write",
    "approvals.list": "run:read",
    "approvals.decide": "approval:submit",
    "signals.send": "signal:submit",
    "devtools.getNodeOutput": "run:read",
    "devtools.getNodeDiff": "run:read",
    # HTTP/legacy-only names with fixed scopes (upstream HTTP_ROUTE_SCOPES) and the rest of
    # the catalog the gateway knows, so name grants resolve to a scope that never escalates.
    # ("approve" is also a legacy level; the gateway resolves that method name through its
    # alias table, so it is not listed here.)
    "workflows.list": "run:read",
    "runs.diff": "run:read",
    "retryTask": "run:write",
    "pauseRun": "run:write",
    "runs.pause": "run:write",
    "rewindRun": "run:admin",
    "devtools.jumpToFrame": "run:admin",
}


def _implies(granted_scope: str, required: str) -> bool:
    """Whether one scope satisfies another (family order for known scopes, else equality)."""
    if granted_scope == required:
        return True
    implied = _SCOPE_IMPLIES.get(granted_scope)
    return implied is not None and required in implied


def _check_not_str(granted: object) -> None:
    # A bare string is an Iterable[str] of characters; treating "run:read" as
    # ("r", "u", ...) would silently deny, so reject it loudly instead.
    if isinstance(granted, str):
        raise TypeError("granted must be an iterable of scope strings, not a single str")


def scope_for_method(method: str) -> str | None:
    """Return the catalog scope required by core RPC ``method``, or ``None`` if uncatalogued."""
    return METHOD_SCOPES.get(method)


def is_known_scope(scope: str) -> bool:
    """Return whether ``scope`` is one of the base scopes in :data:`KNOWN_SCOPES`."""
    return scope in KNOWN_SCOPES


def has_scope(
    granted: Iterable[str],
    required: str,
    method_name: str | None = None,
    method_scope: str | None = None,
) -> bool:
    """Return whether ``granted`` authorises ``required`` (upstream ``hasGatewayScope``).

    ``method_name`` is the RPC being dispatched and ``method_scope`` its catalog scope (look it
    up with :func:`scope_for_method` or the gateway's own catalog). Name and prefix grants
    (``getRun``, ``runs.*``) count only when both are given and ``method_scope`` implies
    ``required``; with ``method_scope=None`` (extension or unknown method) they never match.
    There is deliberately no implicit catalog lookup here: callers pass the scope they enforce.

    The legacy ``admin`` level grants every *known* scope but not arbitrary unknown scope
    strings; only ``*`` or an identical grant satisfies an unknown scope such as ``deploy:ship``.
    """
    _check_not_str(granted)
    name = method_name or ""
    method_grant_ok = bool(name) and method_scope is not None and _implies(method_scope, required)
    for raw in granted:
        entry = raw.strip()
        if not entry:
            continue
        if entry == "*" or entry == required:
            return True
        implied = _GRANT_IMPLIES.get(entry)
        if implied is not None and required in implied:
            return True
        if method_grant_ok and (
            entry == name or (entry.endswith(".*") and name.startswith(entry[:-1]))
        ):
            return True
    return False


def satisfies_any(granted: Iterable[str], allowed_scopes: Iterable[str] | None) -> bool:
    """Return whether ``granted`` satisfies at least one of ``allowed_scopes``.

    Used for an approval's ``allowed_scopes``: an empty (or ``None``) list places no
    restriction and returns ``True``. Otherwise only ``*``, scope implication and legacy levels
    apply; method-name and prefix grants never do. Allowed entries are trimmed; blank entries
    match nothing (so a list of only blanks denies rather than being treated as empty).
    """
    _check_not_str(granted)
    if allowed_scopes is None:
        return True
    _check_not_str(allowed_scopes)
    allowed = tuple(allowed_scopes)
    if not allowed:
        return True
    grants = tuple(granted)
    for scope in allowed:
        required = scope.strip()
        if required and has_scope(grants, required):
            return True
    return False


def expand_granted(granted: Iterable[str]) -> frozenset[str]:
    """Return the known base scopes implied by ``granted`` (for display).

    ``*`` and ``admin`` expand to all of :data:`KNOWN_SCOPES`. Method-name and prefix grants
    and unknown scope strings are not included, since they imply no known base scope on their
    own.
    """
    _check_not_str(granted)
    result: set[str] = set()
    for raw in granted:
        entry = raw.strip()
        if entry == "*":
            return KNOWN_SCOPES
        implied = _GRANT_IMPLIES.get(entry)
        if implied is not None:
            result |= implied
    return frozenset(result)
