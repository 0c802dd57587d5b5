"""The configuration file: location, indirect values, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from smithers_core.config import find_config_path, load_config
from smithers_core.errors import SmithersError


def test_no_file_gives_an_empty_config(tmp_path: Path) -> None:
    cfg = load_config(environ={}, cwd=tmp_path)
    assert cfg.path is None and cfg.workflows == [] and cfg.plugins.enable == []


def test_location_order(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text("")
    other = tmp_path / "other.toml"
    other.write_text("")
    assert find_config_path(None, {}, tmp_path) == (tmp_path / "smithers.toml").resolve()
    assert find_config_path(None, {"SMITHERS_CONFIG": str(other)}, tmp_path) == other.resolve()
    assert find_config_path(str(other), {}, tmp_path) == other.resolve()
    with pytest.raises(SmithersError) as err:
        find_config_path(str(tmp_path / "missing.toml"), {}, tmp_path)
    assert err.value.code == "CONFIG_NOT_FOUND"


def test_file_and_env_indirection(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("s3cret\n")
    (tmp_path / "smithers.toml").write_text(
        '[auth]\nmode = "jwt"\nsecret_file = "secret.txt"\nissuer_env = "ISS"\n'
        '[[workflows]]\nkey = "deploy"\npath = "examples/deploy.py"\n'
    )
    cfg = load_config(environ={"ISS": "me"}, cwd=tmp_path)
    assert cfg.auth["secret"] == "s3cret"
    assert cfg.auth["secret_file"] == str(tmp_path / "secret.txt")
    assert cfg.auth["issuer"] == "me"
    assert cfg.workflows[0].key == "deploy"
    assert cfg.base_dir == tmp_path.resolve()


def test_missing_env_variable_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text('[auth]\nsecret_env = "NOPE"\n')
    with pytest.raises(SmithersError) as err:
        load_config(environ={}, cwd=tmp_path)
    assert err.value.code == "CONFIG_INVALID" and "NOPE" in err.value.message


def test_malformed_toml_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text("[auth\n")
    with pytest.raises(SmithersError) as err:
        load_config(environ={}, cwd=tmp_path)
    assert err.value.code == "CONFIG_INVALID"


def test_unknown_plugins_key_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text("[plugins]\nenabel = []\n")
    with pytest.raises(SmithersError):
        load_config(environ={}, cwd=tmp_path)
