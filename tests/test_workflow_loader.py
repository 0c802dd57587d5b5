"""Loading workflows from files: single workflow, path:name, reload on edit, typed errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from smithers_core.errors import SmithersError
from smithers_core.workflow.loader import load_workflow, split_spec

ONE = """
from smithers_core import Task, workflow
@workflow("{name}")
def wf(ctx):
    return Task("a", value={{"v": {v}}})
"""

TWO = """
from smithers_core import Task, workflow
@workflow("first")
def first(ctx):
    return Task("a", value={"v": 1})
@workflow("second")
def second(ctx):
    return Task("a", value={"v": 2})
"""


def test_single_workflow_and_reload_after_edit(tmp_path: Path) -> None:
    path = tmp_path / "wf.py"
    path.write_text(ONE.format(name="alpha", v=1))
    wf1 = load_workflow(path)
    assert wf1.name == "alpha" and wf1.source_path == str(path.resolve())
    assert load_workflow(path) is wf1  # unchanged content: cached
    path.write_text(ONE.format(name="alpha", v=2))
    wf2 = load_workflow(path)
    assert wf2 is not wf1 and wf2.source_hash != wf1.source_hash


def test_path_colon_name(tmp_path: Path) -> None:
    path = tmp_path / "two.py"
    path.write_text(TWO)
    assert load_workflow(f"{path}:second").name == "second"
    assert split_spec(f"{path}:second") == (path, "second")
    with pytest.raises(SmithersError) as err:
        load_workflow(path)
    assert err.value.code == "WORKFLOW_NOT_FOUND" and "2 workflows" in err.value.message
    with pytest.raises(SmithersError) as err:
        load_workflow(f"{path}:third")
    assert err.value.code == "WORKFLOW_NOT_FOUND"


def test_syntax_error_is_typed(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("def nope(:\n")
    with pytest.raises(SmithersError) as err:
        load_workflow(path)
    assert err.value.code == "WORKFLOW_LOAD_FAILED"
    assert "SyntaxError" in err.value.message


def test_import_error_and_missing_file_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "imp.py"
    path.write_text("import module_that_is_not_there\n")
    with pytest.raises(SmithersError) as err:
        load_workflow(path)
    assert err.value.code == "WORKFLOW_LOAD_FAILED"
    with pytest.raises(SmithersError) as err:
        load_workflow(tmp_path / "missing.py")
    assert err.value.code == "WORKFLOW_NOT_FOUND"
