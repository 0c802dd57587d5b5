"""Stores: the driver is chosen by URL scheme through the ``smithers.stores`` entry points."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from smithers_core.errors import SmithersError
from smithers_core.store.base import OpenMode, Store
from smithers_core.store.db import SmithersDb
from smithers_core.store.sqlite import SqliteStore

STORE_GROUP = "smithers.stores"
DEFAULT_DB_URL = "sqlite:///smithers.db"
DB_ENV = "SMITHERS_DB"


def redact_url(url: str) -> str:
    """``url`` without its password (``user:***@host``), for messages and printed hints."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def default_db_url() -> str:
    """The store URL when none is given: ``$SMITHERS_DB``, else ``sqlite:///smithers.db``."""
    return os.environ.get(DB_ENV) or DEFAULT_DB_URL


def url_scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise SmithersError("INVALID_INPUT", f"Store URL needs a scheme (sqlite://...): {url!r}")
    return scheme.split("+", 1)[0].lower()


def open_store(url: str, *, base_dir: Path | None = None, mode: OpenMode = "rwc") -> Store:
    """Open (create, migrate) the store for ``url`` with the driver registered for its scheme.

    ``mode="ro"`` opens an existing store read-only and ``"rw"`` an existing one for writing;
    neither creates anything (``STORE_NOT_FOUND``: "no database at PATH").
    """
    from stevedore import driver

    scheme = url_scheme(url)
    try:
        manager: Any = driver.DriverManager(
            STORE_GROUP,
            scheme,
            invoke_on_load=True,
            invoke_args=(url,),
            invoke_kwds={"base_dir": base_dir},
        )
    except Exception as exc:
        raise SmithersError(
            "STORE_UNSUPPORTED",
            f"No installed store driver handles {scheme!r} URLs ({url})",
            {"scheme": scheme},
        ) from exc
    store: Store = manager.driver
    return store.open(mode)


__all__ = [
    "DB_ENV",
    "DEFAULT_DB_URL",
    "STORE_GROUP",
    "OpenMode",
    "SmithersDb",
    "SqliteStore",
    "Store",
    "default_db_url",
    "open_store",
    "redact_url",
    "url_scheme",
]
