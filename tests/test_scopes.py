"""Tests for the gateway scope matcher (``smithers_core.scopes``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smithers_core.scopes import (
    KNOWN_SCOPES,
    LEGACY_LEVELS,
    METHOD_SCOPES,
    SCOPE_VALUES,
    expand_granted,
    has_scope,
    is_known_scope,
    satisfies_any,
    scope_for_method,
)


def call(granted: list[str] | tuple[str, ...], method: str, required: str | None = None) -> bool:
    """Authorise ``method`` the way the gateway does: required defaults to its catalog scope."""
    method_scope = scope_for_method(method)
    need = required if required is not None else method_scope
    assert need is not None
    return has_scope(granted, need, method, method_scope)


# --- catalog --------------------------------------------------------------------------------


def test_known_scopes_match_reference_catalog() -> None:
    assert set(SCOPE_VALUES) == KNOWN_SCOPES
    assert len(SCOPE_VALUES) == 14
    assert {
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
    } == KNOWN_SCOPES
    assert isinstance(KNOWN_SCOPES, frozenset)


def test_is_known_scope() -> None:
    assert is_known_scope("run:read")
    assert is_known_scope("observability:read")
    assert not is_known_scope("deploy:ship")
    assert not is_known_scope("admin")
    assert not is_known_scope("*")
    assert not is_known_scope(" run:read")


def test_method_catalog_uses_only_known_scopes() -> None:
    assert set(METHOD_SCOPES.values()) <= KNOWN_SCOPES


@pytest.mark.parametrize(
    ("method", "scope"),
    [
        ("health", "run:read"),
        ("listWorkflows", "run:read"),
        ("launchRun", "run:write"),
        ("runs.create", "run:write"),
        ("getRun", "run:read"),
        ("runs.get", "run:read"),
        ("runs.list", "run:read"),
        ("cancelRun", "run:write"),
        ("runs.cancel", "run:write"),
        ("runs.resume", "run:write"),
        ("runs.rerun", "run:write"),
        ("submitApproval", "approval:submit"),
        ("approvals.decide", "approval:submit"),
        ("approvals.list", "run:read"),
        ("submitSignal", "signal:submit"),
        ("signals.send", "signal:submit"),
        ("cron.list", "cron:read"),
        ("cronList", "cron:read"),
        ("cron.add", "cron:write"),
        ("cronDelete", "cron:write"),
        ("cron.trigger", "cron:write"),
        ("hijackRun", "run:admin"),
        ("jumpToFrame", "run:admin"),
    ],
)
def test_scope_for_method(method: str, scope: str) -> None:
    assert scope_for_method(method) == scope


def test_scope_for_unknown_method_is_none() -> None:
    assert scope_for_method("deploy.ship") is None
    assert scope_for_method("") is None


# --- upstream examples ----------------------------------------------------------------------


def test_upstream_read_only_names_cannot_launch() -> None:
    granted = ["health", "runs.list", "runs.get"]
    assert call(granted, "runs.create") is False
    assert has_scope(granted, "run:write", "runs.create", "run:write") is False
    # ...but the granted read methods themselves are callable.
    assert call(granted, "runs.get") is True
    assert call(granted, "runs.list") is True
    assert call(granted, "health") is True


def test_upstream_approve_level_may_decide_approvals() -> None:
    granted = ["approve", "approvals.list", "runs.get"]
    assert call(granted, "approvals.decide") is True
    assert has_scope(granted, "approval:submit") is True
    assert call(granted, "approvals.list") is True


def test_upstream_method_names_may_launch_and_get() -> None:
    granted = ["runs.create", "runs.get"]
    assert has_scope(granted, "run:write", "runs.create", "run:write") is True
    assert call(granted, "runs.create") is True
    assert call(granted, "runs.get") is True
    assert call(granted, "runs.cancel") is False
    assert has_scope(granted, "run:write") is False


# --- wildcard -------------------------------------------------------------------------------


@pytest.mark.parametrize("required", [*SCOPE_VALUES, "deploy:ship", "anything"])
def test_star_grants_everything(required: str) -> None:
    assert has_scope(["*"], required)
    assert has_scope(("*",), required, "deploy.ship", None)
    assert has_scope([" * "], required)


# --- families -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "required", "expected"),
    [
        ("run:admin", "run:read", True),
        ("run:admin", "run:write", True),
        ("run:admin", "run:admin", True),
        ("run:write", "run:read", True),
        ("run:write", "run:write", True),
        ("run:write", "run:admin", False),
        ("run:read", "run:read", True),
        ("run:read", "run:write", False),
        ("run:read", "run:admin", False),
        ("cron:write", "cron:read", True),
        ("cron:read", "cron:write", False),
        ("ticket:write", "ticket:read", True),
        ("ticket:read", "ticket:write", False),
        # Families do not cross.
        ("run:admin", "cron:read", False),
        ("cron:write", "run:read", False),
        ("ticket:write", "run:read", False),
        ("run:admin", "approval:submit", False),
        ("run:admin", "signal:submit", False),
        ("run:admin", "observability:read", False),
    ],
)
def test_family_implication(granted: str, required: str, expected: bool) -> None:
    assert has_scope([granted], required) is expected


@pytest.mark.parametrize("scope", SCOPE_VALUES)
def test_every_scope_satisfies_itself(scope: str) -> None:
    assert has_scope([scope], scope)


@pytest.mark.parametrize(
    "scope",
    [
        "approval:submit",
        "signal:submit",
        "account:read",
        "memory:read",
        "prompt:read",
        "score:read",
        "observability:read",
    ],
)
def test_singleton_scopes_match_only_themselves(scope: str) -> None:
    for other in SCOPE_VALUES:
        assert has_scope([scope], other) is (other == scope)


# --- legacy access levels -------------------------------------------------------------------

LEGACY_READ = {
    "run:read",
    "cron:read",
    "account:read",
    "memory:read",
    "prompt:read",
    "score:read",
    "ticket:read",
    "observability:read",
}
LEGACY_EXECUTE = {
    "run:read",
    "run:write",
    "signal:submit",
    "cron:read",
    "cron:write",
    "ticket:read",
    "ticket:write",
}


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("read", LEGACY_READ),
        ("execute", LEGACY_EXECUTE),
        ("approve", LEGACY_EXECUTE | {"approval:submit"}),
        ("admin", set(KNOWN_SCOPES)),
    ],
)
def test_legacy_level_exact_expansion(level: str, expected: set[str]) -> None:
    assert LEGACY_LEVELS[level] == expected
    assert expand_granted([level]) == expected
    satisfied = {scope for scope in SCOPE_VALUES if has_scope([level], scope)}
    assert satisfied == expected


def test_legacy_admin_does_not_grant_unknown_scopes() -> None:
    assert has_scope(["admin"], "deploy:ship") is False
    assert has_scope(["admin"], "run:admin") is True


def test_legacy_levels_are_exact_tokens() -> None:
    assert has_scope(["Admin"], "run:read") is False
    assert has_scope(["read:all"], "run:read") is False
    assert has_scope(["execute"], "run:admin") is False
    assert has_scope(["approve"], "observability:read") is False


# --- normalisation --------------------------------------------------------------------------


def test_whitespace_is_trimmed() -> None:
    assert has_scope(["  run:write\t"], "run:read")
    assert has_scope(["\nexecute "], "cron:write")
    assert has_scope([" runs.create "], "run:write", "runs.create", "run:write")
    assert has_scope([" runs.* "], "run:write", "runs.create", "run:write")


def test_empty_and_blank_entries_are_ignored() -> None:
    assert has_scope([], "run:read") is False
    assert has_scope(["", "   ", "\t"], "run:read") is False
    assert has_scope(["", " ", "run:read"], "run:read") is True
    # A blank grant never equals a blank method name or required scope.
    assert has_scope([""], "", "", "run:read") is False


def test_accepts_any_iterable() -> None:
    assert has_scope(("run:read",), "run:read")
    assert has_scope(iter(["run:read"]), "run:read")
    assert has_scope(frozenset({"cron:write"}), "cron:read")
    assert has_scope((s for s in ["approve"]), "approval:submit")


def test_bare_string_grant_is_rejected() -> None:
    with pytest.raises(TypeError):
        has_scope("run:read", "run:read")
    with pytest.raises(TypeError):
        satisfies_any("*", ["run:read"])
    with pytest.raises(TypeError):
        expand_granted("admin")


def test_roles_are_not_scopes() -> None:
    for role in ("operator", "viewer", "owner"):
        assert has_scope([role], "run:read") is False


# --- method-name and prefix grants ----------------------------------------------------------


def test_name_grant_cannot_escalate_beyond_method_scope() -> None:
    assert has_scope(["getRun"], "run:read", "getRun", "run:read") is True
    assert has_scope(["getRun"], "run:write", "getRun", "run:read") is False
    assert has_scope(["getRun"], "run:admin", "getRun", "run:read") is False
    assert has_scope(["runs.create"], "run:read", "runs.create", "run:write") is True
    assert has_scope(["runs.create"], "run:admin", "runs.create", "run:write") is False
    assert has_scope(["runs.create"], "cron:read", "runs.create", "run:write") is False


def test_name_grant_only_matches_its_own_method() -> None:
    assert call(["getRun"], "getRun") is True
    assert call(["getRun"], "runs.get") is False
    assert call(["getRun"], "listRuns") is False
    assert has_scope(["getRun"], "run:read") is False  # no method context


def test_prefix_grant() -> None:
    assert call(["runs.*"], "runs.create") is True
    assert call(["runs.*"], "runs.get") is True
    assert call(["runs.*"], "runs.cancel") is True
    assert call(["runs.*"], "launchRun") is False
    assert call(["runs.*"], "cron.add") is False
    assert call(["cron.*"], "cron.add") is True
    assert call(["cron.*"], "cronCreate") is False
    # The dot is part of the prefix: "runs.*" does not match a "runsX" method.
    assert has_scope(["runs.*"], "run:read", "runsX.get", "run:read") is False
    # Prefix grants cannot escalate either.
    assert call(["runs.*"], "runs.get", required="run:write") is False
    assert call(["runs.*"], "runs.create", required="run:admin") is False


def test_prefix_grant_needs_dot_star_suffix() -> None:
    assert call(["runs*"], "runs.create") is False
    assert call(["runs."], "runs.create") is False
    assert call(["run:*"], "runs.create") is False


def test_extension_method_never_authorised_by_name_or_prefix() -> None:
    for granted in (["deploy.ship"], ["deploy.*"], ["deploy.ship", "deploy.*"]):
        assert has_scope(granted, "deploy:ship", "deploy.ship", None) is False
        assert has_scope(granted, "run:read", "deploy.ship", None) is False
    # The real scope or "*" authorises it.
    assert has_scope(["*"], "deploy:ship", "deploy.ship", None) is True
    assert has_scope(["deploy:ship"], "deploy:ship", "deploy.ship", None) is True
    assert has_scope(["run:read"], "run:read", "deploy.ship", None) is True
    assert has_scope(["run:admin"], "run:read", "deploy.ship", None) is True


def test_method_scope_is_not_looked_up_implicitly() -> None:
    # Fail closed: omitting method_scope disables name/prefix grants even for core methods.
    assert has_scope(["runs.create"], "run:write", "runs.create") is False
    assert has_scope(["runs.*"], "run:write", "runs.create") is False


def test_name_grants_do_not_disable_ordinary_scopes() -> None:
    assert has_scope(["getRun", "run:write"], "run:write", "getRun", "run:read") is True
    assert has_scope(["getRun", "execute"], "run:write", "getRun", "run:read") is True


# --- unknown scopes -------------------------------------------------------------------------


def test_unknown_scope_matches_only_itself_or_star() -> None:
    assert has_scope(["deploy:ship"], "deploy:ship") is True
    assert has_scope([" deploy:ship "], "deploy:ship") is True
    assert has_scope(["*"], "deploy:ship") is True
    for other in [*SCOPE_VALUES, *LEGACY_LEVELS, "deploy:*", "deploy", "deploy:shipit"]:
        assert has_scope([other], "deploy:ship") is False
    # An unknown grant implies nothing else.
    for scope in SCOPE_VALUES:
        assert has_scope(["deploy:ship"], scope) is False


# --- satisfies_any --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "allowed", "expected"),
    [
        # No restriction.
        ([], [], True),
        (["run:read"], [], True),
        ([], None, True),
        ([], (), True),
        # Wildcard.
        (["*"], ["approval:submit"], True),
        (["*"], ["deploy:ship"], True),
        # Direct and implied scopes.
        (["approval:submit"], ["approval:submit"], True),
        (["run:admin"], ["run:read"], True),
        (["run:read"], ["run:write"], False),
        (["run:read"], ["run:write", "run:read"], True),
        (["cron:write"], ["cron:read", "ticket:write"], True),
        (["ticket:read"], ["ticket:write", "cron:read"], False),
        # Legacy levels.
        (["approve"], ["approval:submit"], True),
        (["execute"], ["approval:submit"], False),
        (["read"], ["observability:read"], True),
        (["admin"], ["approval:submit"], True),
        (["admin"], ["deploy:ship"], False),
        # Unknown scopes.
        (["deploy:ship"], ["deploy:ship"], True),
        (["deploy:ship"], ["run:read"], False),
        # Name/prefix grants never apply.
        (["submitApproval"], ["approval:submit"], False),
        (["approvals.*"], ["approval:submit"], False),
        (["approvals.decide"], ["approval:submit"], False),
        # Trimming and blanks.
        ([" approval:submit "], ["approval:submit"], True),
        (["approval:submit"], [" approval:submit "], True),
        (["", " "], ["run:read"], False),
        (["*"], [" "], False),
        (["run:read"], ["", "run:read"], True),
        # No grants at all against a restriction.
        ([], ["run:read"], False),
    ],
)
def test_satisfies_any(granted: list[str], allowed: list[str] | None, expected: bool) -> None:
    assert satisfies_any(granted, allowed) is expected


def test_satisfies_any_accepts_one_shot_iterables() -> None:
    assert satisfies_any(iter(["run:read"]), iter(["run:write", "run:read"])) is True


# --- expand_granted -------------------------------------------------------------------------


def test_expand_granted() -> None:
    assert expand_granted([]) == frozenset()
    assert expand_granted(["*"]) == KNOWN_SCOPES
    assert expand_granted(["run:admin"]) == {"run:read", "run:write", "run:admin"}
    assert expand_granted(["run:write", "cron:write"]) == {
        "run:read",
        "run:write",
        "cron:read",
        "cron:write",
    }
    assert expand_granted([" ticket:write ", ""]) == {"ticket:read", "ticket:write"}
    assert expand_granted(["runs.create", "runs.*", "deploy:ship"]) == frozenset()
    assert isinstance(expand_granted(["read"]), frozenset)


def test_expand_granted_agrees_with_has_scope() -> None:
    grants = ["approve", "run:admin", "observability:read", "getRun", "deploy:ship"]
    expanded = expand_granted(grants)
    for scope in SCOPE_VALUES:
        assert (scope in expanded) is has_scope(grants, scope)


# --- properties -----------------------------------------------------------------------------

_METHODS = sorted(METHOD_SCOPES)
_PREFIX_GRANTS = sorted({m.split(".", 1)[0] + ".*" for m in _METHODS if "." in m})
_REQUIRED = st.sampled_from([*SCOPE_VALUES, "deploy:ship"])


def _implied_by(scope: str) -> set[str]:
    return {s for s in SCOPE_VALUES if has_scope([scope], s)}


@given(
    method=st.sampled_from(_METHODS),
    required=_REQUIRED,
    grants=st.lists(st.sampled_from([*_METHODS, *_PREFIX_GRANTS]), max_size=6),
)
def test_name_grants_never_exceed_method_scope(
    method: str, required: str, grants: list[str]
) -> None:
    method_scope = METHOD_SCOPES[method]
    result = has_scope(grants, required, method, method_scope)
    if result:
        assert required in _implied_by(method_scope)


@given(
    method=st.one_of(st.sampled_from(_METHODS), st.text(max_size=12)),
    required=_REQUIRED,
    grants=st.lists(
        st.one_of(st.sampled_from([*_METHODS, *_PREFIX_GRANTS]), st.text()), max_size=6
    ),
)
def test_method_name_never_adds_scopes_without_catalog_entry(
    method: str, required: str, grants: list[str]
) -> None:
    # With no method scope, passing a method name changes nothing.
    assert has_scope(grants, required, method, None) is has_scope(grants, required)


@given(
    grants=st.lists(
        st.one_of(
            st.sampled_from([*SCOPE_VALUES, *LEGACY_LEVELS, "*", "deploy:ship"]),
            st.text(max_size=8),
        ),
        max_size=6,
    ),
    required=_REQUIRED,
)
def test_grant_order_and_padding_do_not_matter(grants: list[str], required: str) -> None:
    expected = has_scope(grants, required)
    assert has_scope(list(reversed(grants)), required) is expected
    assert has_scope([f"  {g} " for g in grants], required) is expected
