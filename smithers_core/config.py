"""The configuration file (``smithers.toml``): where it is found and what it holds (D2).

Location: ``--config PATH``, else ``$SMITHERS_CONFIG``, else ``./smithers.toml`` if present.
Relative paths resolve against the file's folder. A key ending in ``_file`` also sets the key
without the suffix to that file's text; a key ending in ``_env`` sets it from that environment
variable, so secrets never need to sit in the file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smithers_core.errors import SmithersError

DEFAULT_CONFIG_NAME = "smithers.toml"


class PluginsSection(BaseModel):
    """``[plugins]``: ``enable`` names required plugins, ``disable`` names plugins not to load."""

    model_config = ConfigDict(extra="forbid")
    enable: list[str] = Field(default_factory=list)
    disable: list[str] = Field(default_factory=list)


class WorkflowEntry(BaseModel):
    """One ``[[workflows]]`` entry: a key, a file path (``file.py`` or ``file.py:name``)."""

    model_config = ConfigDict(extra="allow")
    key: str
    path: str
    schedule: str | None = None
    webhook: dict[str, Any] | None = None
    ui: Any = None
    system: bool = False


class SmithersConfig(BaseModel):
    """The whole file. Sections not named here are kept for plugins (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow")
    gateway: dict[str, Any] = Field(default_factory=dict)
    server: dict[str, Any] = Field(default_factory=dict)
    plugins: PluginsSection = Field(default_factory=PluginsSection)
    auth: dict[str, Any] = Field(default_factory=dict)
    workflows: list[WorkflowEntry] = Field(default_factory=list)
    path: Path | None = None
    base_dir: Path = Field(default_factory=Path.cwd)

    def section(self, name: str) -> dict[str, Any]:
        """A section by name (``{}`` when absent), including plugin-owned sections."""
        value = getattr(self, name, None)
        if value is None and self.model_extra:
            value = self.model_extra.get(name)
        return dict(value) if isinstance(value, Mapping) else {}


def find_config_path(
    explicit: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path | None:
    """Return the config file to use, or None when there is none."""
    env = os.environ if environ is None else environ
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SmithersError("CONFIG_NOT_FOUND", f"Config file not found: {path}")
        return path.resolve()
    from_env = env.get("SMITHERS_CONFIG")
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise SmithersError(
                "CONFIG_NOT_FOUND", f"Config file not found: {path} (SMITHERS_CONFIG)"
            )
        return path.resolve()
    default = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
    return default.resolve() if default.is_file() else None


def resolve_indirect_values(
    data: Any, base_dir: Path, environ: Mapping[str, str] | None = None
) -> Any:
    """Apply the ``_file`` / ``_env`` rules recursively (see the module docstring)."""
    env = os.environ if environ is None else environ
    if isinstance(data, list):
        return [resolve_indirect_values(v, base_dir, env) for v in data]
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[key] = resolve_indirect_values(value, base_dir, env)
    for key, value in list(out.items()):
        if key.endswith("_file") and isinstance(value, str) and len(key) > 5:
            path = Path(value) if Path(value).is_absolute() else base_dir / value
            out[key] = str(path)
            target = key[: -len("_file")]
            if target not in data and path.is_file():
                out[target] = path.read_text(encoding="utf-8").rstrip("\n")
        elif key.endswith("_env") and isinstance(value, str) and len(key) > 4:
            target = key[: -len("_env")]
            if value not in env:
                raise SmithersError(
                    "CONFIG_INVALID", f"Config key '{key}' names unset environment variable {value}"
                )
            if target not in data:
                out[target] = env[value]
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> SmithersConfig:
    """Find, read and validate the configuration (an empty config when there is no file)."""
    found = find_config_path(path, environ, cwd)
    if found is None:
        return SmithersConfig(base_dir=(cwd or Path.cwd()).resolve())
    try:
        raw = tomllib.loads(found.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SmithersError("CONFIG_INVALID", f"{found}: {exc}") from exc
    base_dir = found.parent
    data = resolve_indirect_values(raw, base_dir, environ)
    try:
        return SmithersConfig.model_validate({**data, "path": found, "base_dir": base_dir})
    except ValidationError as exc:
        raise SmithersError("CONFIG_INVALID", f"{found}: {exc}") from exc


__all__ = [
    "PluginsSection",
    "SmithersConfig",
    "WorkflowEntry",
    "find_config_path",
    "load_config",
    "resolve_indirect_values",
]
