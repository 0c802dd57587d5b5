"""Smithers for Python: the minimal core (hook specs, plugin manager, engine, store, hosts)."""

from __future__ import annotations

from importlib import metadata

from smithers_core.errors import SmithersError
from smithers_core.hookspecs import hookimpl

try:
    __version__ = metadata.version("smithers-core")
except metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0.0.0"

__all__ = ["SmithersError", "__version__", "hookimpl"]
