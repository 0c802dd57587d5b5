"""``smithers runs ...`` never creates a store (issue 13 item 12): ``show`` opens it read-only
(SQLite ``mode=ro``), the deciding commands only an existing file; a missing one is
``error: STORE_NOT_FOUND: no database at PATH`` and exit 2, with nothing created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smithers_core.cli.main import main
from smithers_core.errors import SmithersError
from smithers_core.store import open_store
from smithers_core.store.runs import create_run


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("SMITHERS_CONFIG", "SMITHERS_PLUGINS", "SMITHERS_DISABLE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


COMMANDS = [
    ["runs", "show", "r1"],
    ["runs", "cancel", "r1"],
    ["runs", "approve", "r1", "gate"],
    ["runs", "deny", "r1", "gate"],
    ["runs", "signal", "r1", "go", "--data", "{}"],
    ["runs", "resume", "r1"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[1])
def test_a_missing_directory_is_not_created(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "no" / "such" / "dir" / "x.db"
    assert main([*argv, "--db", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: STORE_NOT_FOUND: no database at {db}\n"
    assert not (tmp_path / "no").exists()


def test_the_default_store_is_not_created_either(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "show", "r1"]) == 2  # default sqlite:///smithers.db in the cwd
    assert "no database at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_empty_file_is_no_database_and_stays_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.db").write_bytes(b"")
    assert main(["runs", "show", "r1", "--db", "sqlite:///x.db"]) == 2
    assert "STORE_NOT_FOUND: no database at" in capsys.readouterr().err
    assert (tmp_path / "x.db").read_bytes() == b""


def _store_with_run(tmp_path: Path) -> None:
    store = open_store("sqlite:///x.db", base_dir=tmp_path)
    try:
        store.write_sync(
            lambda tx: create_run(
                tx,
                run_id="r1",
                parent_run_id=None,
                workflow_name="w",
                workflow_path=None,
                workflow_hash=None,
                owner_id="test",
                config={},
                input_payload={},
            )
        )
    finally:
        store.close()


def test_show_reads_an_existing_store_without_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other side of the edge: an existing store is read as before."""
    _store_with_run(tmp_path)
    before = (tmp_path / "x.db").read_bytes()
    assert main(["runs", "show", "r1", "--db", "sqlite:///x.db"]) == 0
    assert json.loads(capsys.readouterr().out)["runId"] == "r1"
    assert main(["runs", "show", "r2", "--db", "sqlite:///x.db"]) == 1
    assert "RUN_NOT_FOUND" in capsys.readouterr().err
    assert (tmp_path / "x.db").read_bytes() == before


def test_a_read_only_store_refuses_writes(tmp_path: Path) -> None:
    _store_with_run(tmp_path)
    store = open_store("sqlite:///x.db", base_dir=tmp_path, mode="ro")
    try:
        assert (
            store.read(lambda c: c.execute("SELECT count(*) FROM _smithers_runs").fetchone())[0]
            == 1
        )
        with pytest.raises(SmithersError) as info:
            store.write_sync(lambda tx: None)
        assert info.value.code == "STORE_READ_ONLY"
    finally:
        store.close()
