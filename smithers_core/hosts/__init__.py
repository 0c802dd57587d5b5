"""HTTP hosts: ``start_server`` (many workflows) and ``create_serve_app`` (one run)."""

from __future__ import annotations

from smithers_core.hosts.serve import create_serve_app, serve_up
from smithers_core.hosts.server import (
    ServerHandle,
    create_server_app,
    serve_server,
    start_server,
)

__all__ = [
    "ServerHandle",
    "create_serve_app",
    "create_server_app",
    "serve_server",
    "serve_up",
    "start_server",
]
