"""Build throwaway plugin distributions (a package plus ``.dist-info`` metadata) in a folder."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_distribution(
    root: Path,
    dist_name: str,
    modules: dict[str, str],
    entry_points: dict[str, str],
    version: str = "1.0.0",
) -> Path:
    """Write modules and a dist-info whose ``smithers.plugins`` entry points are given.

    ``modules`` maps a module name to its source; ``entry_points`` maps a plugin name to the
    object reference (``module`` or ``module:attr``). Returns ``root`` (put it on sys.path).
    """
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    normalized = dist_name.replace("-", "_")
    info = root / f"{normalized}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = ["[smithers.plugins]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    return root


GOOD_PLUGIN = """
from pydantic import BaseModel
from smithers_core import hookimpl
from smithers_core.auth import Identity
from smithers_core.errors import SmithersError

LOADED = True

class Cfg(BaseModel):
    password: str = "open-sesame"

class Provider:
    def __init__(self, cfg):
        self.cfg = cfg
    async def authenticate(self, req):
        if req.token != self.cfg.password:
            raise SmithersError("UNAUTHORIZED", "Invalid token")
        return Identity(role="viewer", scopes=("run:read",), user_id="fixture-user")

class Mode:
    config_model = Cfg
    def create(self, config):
        return Provider(config)

@hookimpl
def smithers_auth_modes():
    return {"fixture": Mode()}
"""

UNKNOWN_HOOK_PLUGIN = """
from smithers_core import hookimpl

@hookimpl
def smithers_no_such_hook():
    return 1
"""

BROKEN_PLUGIN = """
import module_that_does_not_exist_anywhere  # noqa: F401
"""
