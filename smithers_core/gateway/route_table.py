"""Every HTTP and WebSocket route of one gateway in the one router: core's endpoints, the
routes of transports (and of ``HostContext.add_routes``) and UI mounts, each as a
:class:`~smithers_core.contributions.RouteSpec`. Serving them is :mod:`.routing`'s job."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.staticfiles import StaticFiles

from smithers_core.contributions import ASGIApp, RouteSpec, UiMount
from smithers_core.http.router import Match, Router

MOUNT_METHODS = ("GET", "HEAD")


class MountedApp:
    """A UI app served under ``prefix``: it sees its own path, the prefix in ``root_path``."""

    __slots__ = ("app", "prefix")

    def __init__(self, prefix: str, app: ASGIApp) -> None:
        self.prefix = prefix
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        sub = dict(scope)
        if self.prefix != "/":
            sub["root_path"] = scope.get("root_path", "") + self.prefix
            sub["path"] = scope["path"][len(self.prefix) :] or "/"
        await self.app(sub, receive, send)


class RouteTable:
    """The gateway's two routers (HTTP, WebSocket upgrades) with their owners."""

    def __init__(self) -> None:
        self.http: Router[RouteSpec] = Router()
        self.ws: Router[RouteSpec] = Router()
        self.mounts: list[UiMount] = []

    def add(self, owner: str, routes: Iterable[RouteSpec]) -> None:
        """Mount ``routes`` contributed by ``owner`` (``PLUGIN_CONFLICT`` / ``PLUGIN_INVALID``)."""
        for route in routes:
            if route.websocket:
                self.ws.add(route.path, route, None, prefix=route.prefix, owner=owner)
            else:
                self.http.add(route.path, route, route.methods, prefix=route.prefix, owner=owner)

    def add_mount(self, owner: str, mount: UiMount) -> None:
        """Serve a UI at ``mount.path`` and below (GET and HEAD). A mount whose ``option`` is
        ``"operator_ui"`` requires authentication; other UIs are public."""
        self.mounts.append(mount)
        app = mount.app
        if app is None and mount.assets is not None:
            app = StaticFiles(directory=str(mount.assets), html=True)
        if app is None:
            return
        prefix = mount.path.rstrip("/") or "/"
        served = MountedApp(prefix, app)
        auth: Any = "required" if mount.option == "operator_ui" else "public"

        def route(path: str, under: bool) -> RouteSpec:
            return RouteSpec(
                path,
                served,
                MOUNT_METHODS,
                auth=auth,
                asgi=True,
                prefix=under,
                name=mount.title,
                sign_in=mount.sign_in,
            )

        routes = [route(prefix.rstrip("/") + "/", True)]  # everything below the mount
        if prefix != "/":
            routes.append(route(prefix, False))  # and the mount's own path
        self.add(owner, routes)

    def match_http(self, method: str, path: str) -> Match[RouteSpec] | None:
        """The route of a request; a HEAD request falls back to the GET route."""
        found = self.http.match(method, path)
        if found is None and method == "HEAD":
            found = self.http.match("GET", path)
        return found

    def match_ws(self, path: str) -> Match[RouteSpec] | None:
        return self.ws.match(None, path)


__all__ = ["MOUNT_METHODS", "MountedApp", "RouteTable"]
