"""HTTP hosts: ``start_server`` (many workflows) and ``create_serve_app`` (one run).

Where to read: ``app.py`` (the request pipeline), ``surface.py`` (what differs between the
two surfaces, as data), ``run_routes.py`` (the run routes both serve, written once),
``server_app.py`` and ``server.py`` (start_server's app and lifecycle), ``serve.py`` (the
serve app), ``sse.py`` (the event stream), ``errors.py`` (each surface's error table).
"""

from __future__ import annotations

from smithers_core.hosts.serve import ServeApp, create_serve_app, serve_up
from smithers_core.hosts.server import (
    RunningServer,
    ServerHandle,
    serve_server,
    start_server,
)
from smithers_core.hosts.server_app import ServerApp, create_server_app

__all__ = [
    "RunningServer",
    "ServeApp",
    "ServerApp",
    "ServerHandle",
    "create_serve_app",
    "create_server_app",
    "serve_server",
    "serve_up",
    "start_server",
]
