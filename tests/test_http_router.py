"""The one router: literal, template and prefix routes, precedence, conflicts and labels."""

from __future__ import annotations

import pytest

from smithers_core.errors import SmithersError
from smithers_core.http.router import Router


def test_literal_template_and_prefix_routes_match_in_that_order() -> None:
    router: Router[str] = Router()
    router.add("/v1/runs/{runId}", "status")
    router.add("/v1/runs/{runId}/nodes/{nodeId}/approve", "approve", ("POST",))
    router.add("/v1/", "prefix", ("GET",), prefix=True)
    router.add("/v1/runs/latest", "literal")
    found = router.match("GET", "/v1/runs/r1")
    assert found is not None and found.target == "status" and found.params == {"runId": "r1"}
    approve = router.match("POST", "/v1/runs/r%2F1/nodes/n/approve")
    assert approve is not None and approve.params == {"runId": "r%2F1", "nodeId": "n"}
    latest = router.match("GET", "/v1/runs/latest")
    assert latest is not None and latest.target == "literal"
    deeper = router.match("GET", "/v1/other/thing")
    assert deeper is not None and deeper.target == "prefix"
    assert router.match("POST", "/v1/runs/r1") is None  # wrong method
    nested = router.match("GET", "/v1/runs/a/b")  # a segment never spans a "/"
    assert nested is not None and nested.target == "prefix"


def test_longest_prefix_wins_and_any_method_routes() -> None:
    router: Router[str] = Router()
    router.add("/", "root", None, prefix=True)
    router.add("/v1/rpc/", "rpc", None, prefix=True)
    assert router.match(None, "/v1/rpc/getRun").target == "rpc"  # type: ignore[union-attr]
    assert router.match("POST", "/elsewhere").target == "root"  # type: ignore[union-attr]


def test_conflicts_name_both_owners_and_bad_paths_are_invalid() -> None:
    router: Router[str] = Router()
    router.add("/rpc", "a", ("POST",), owner="core.gateway_rpc")
    with pytest.raises(SmithersError) as err:
        router.add("/rpc", "b", ("POST", "GET"), owner="other")
    assert err.value.code == "PLUGIN_CONFLICT"
    assert "core.gateway_rpc" in err.value.message and "other" in err.value.message
    router.add("/rpc", "c", ("GET",), owner="other")  # another method is no conflict
    router.add("/rpc", "d", ("POST",), prefix=True, owner="other")  # nor a prefix route
    with pytest.raises(SmithersError) as bad:
        router.add("rpc", "e", owner="x")
    assert bad.value.code == "PLUGIN_INVALID"


def test_labels_use_upstream_spelling() -> None:
    router: Router[str] = Router()
    status = router.add("/v1/runs/{runId}", "s")
    prefix = router.add("/ui/", "u", prefix=True)
    assert status.label == "/v1/runs/:runId"
    assert prefix.label == "/ui/*"
    assert [r.target for r in router] == ["s", "u"]
