"""Upstream's catalog of method names, legacy aliases and scopes (reference 5.0, D8): what the
scope gate uses for a method no plugin serves (so ``cron.list`` needs ``cron:read`` even
before a scheduling plugin answers it), and how name grants match a call.

Scopes of catalogued methods live in :data:`smithers_core.scopes.METHOD_SCOPES`; this module
adds upstream's resolution order on top: ``config.*`` needs run:admin, ``oneshotMonitor*``
run:write, ``ext.*`` the extension's own scope, then the catalog, else run:read.
"""

from __future__ import annotations

from smithers_core import scopes

ALIASES: dict[str, str] = {
    "runs.create": "launchRun",
    "runs.get": "getRun",
    "runs.list": "listRuns",
    "runs.cancel": "cancelRun",
    "runs.pause": "pauseRun",
    "approvals.decide": "submitApproval",
    "approve": "submitApproval",
    "signals.send": "submitSignal",
    "jumpToFrame": "rewindRun",
    "devtools.jumpToFrame": "rewindRun",
    "devtools.getNodeOutput": "getNodeOutput",
    "devtools.getNodeDiff": "getNodeDiff",
    "cron.list": "cronList",
    "cron.add": "cronCreate",
    "cron.remove": "cronDelete",
    "cron.trigger": "cronRun",
    "workflows.list": "listWorkflows",
    "approvals.list": "listApprovals",
    "runs.descendants": "listRunDescendants",
}

DEFAULT_SCOPE = "run:read"


def canonical(method: str) -> str:
    return ALIASES.get(method, method)


def catalog_scope(method: str) -> str | None:
    """The method's own catalog or HTTP-route scope; None for extensions and unknown names."""
    scope = scopes.METHOD_SCOPES.get(method)
    if scope is None:
        scope = scopes.METHOD_SCOPES.get(canonical(method))
    return scope


def required_scope(method: str, extension_scope: str | None = None) -> str:
    if method.startswith("config."):
        return "run:admin"
    if method.startswith("oneshotMonitor"):
        return "run:write"
    if method.startswith("ext."):
        return extension_scope or DEFAULT_SCOPE
    return catalog_scope(method) or DEFAULT_SCOPE


_NAMES: dict[str, tuple[str, ...]] = {}
for _alias, _name in ALIASES.items():
    _NAMES[_name] = (*_NAMES.get(_name, (_name,)), _alias)


def names_of(method: str) -> tuple[str, ...]:
    """The called name first, then its canonical name and every legacy alias of it."""
    name = canonical(method)
    others = tuple(n for n in _NAMES.get(name, (name,)) if n != method)
    return (method, *others)


def allowed(
    granted: tuple[str, ...], names: tuple[str, ...], required: str, method_scope: str | None
) -> bool:
    """``hasGatewayScope`` for a call of ``names[0]``. A name grant matches the method under
    any of its ``names`` (``runs.create`` grants ``launchRun``); name grants never escalate,
    since the method's own scope must imply the required one."""
    if scopes.has_scope(granted, required, names[0], method_scope):
        return True
    if method_scope is None:
        return False
    return any(scopes.has_scope(granted, required, name, method_scope) for name in names[1:])


def may_call(granted: tuple[str, ...], method: str) -> bool:
    """Whether scopes ``granted`` pass the gate for a catalogued ``method`` (the dispatcher's
    check, for callers that only want to know: a UI hiding a button)."""
    return allowed(granted, names_of(method), required_scope(method), catalog_scope(method))


__all__ = [
    "ALIASES",
    "DEFAULT_SCOPE",
    "allowed",
    "canonical",
    "catalog_scope",
    "may_call",
    "names_of",
    "required_scope",
]
