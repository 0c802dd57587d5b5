"""The one router of every host: method + path to a target, with path parameters.

A route's path is a literal (``/health``), a template whose ``{name}`` segments capture one
path segment each (``/v1/runs/{runId}/nodes/{nodeId}/approve``), or a prefix
(``prefix=True``: the path and everything below it). Matching order: literal paths (a dict
lookup), then templates in the order they were added, then prefixes, longest first. Routes
without methods (``methods=None``) match any method; WebSocket tables use that.

Two routes with the same methods, path and kind are a conflict: :meth:`Router.add` raises
``PLUGIN_CONFLICT`` naming both owners, and a path not starting with ``/`` is
``PLUGIN_INVALID``. The router never decodes: callers pass the path they route on (raw or
decoded) and decode captured segments themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from smithers_core.errors import SmithersError

T = TypeVar("T")

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True, eq=False)
class Route(Generic[T]):
    """One route: ``methods`` (None: any), ``path`` as written, what it leads to, who added it."""

    path: str
    target: T
    methods: frozenset[str] | None
    prefix: bool = False
    owner: str = "core"
    pattern: re.Pattern[str] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """The route as a metrics label or in messages, in upstream's spelling:
        ``/v1/runs/:runId``, and a trailing ``*`` for prefixes."""
        return _PARAM.sub(r":\1", self.path) + ("*" if self.prefix else "")


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    """A matched route and the path parameters its template captured."""

    route: Route[T]
    params: dict[str, str]

    @property
    def target(self) -> T:
        return self.route.target


class Router(Generic[T]):
    """Routes of one kind (HTTP, or WebSocket upgrades) of one app."""

    def __init__(self) -> None:
        self._literal: dict[tuple[str | None, str], Route[T]] = {}
        self._templates: list[Route[T]] = []
        self._prefixes: list[Route[T]] = []
        self._owners: dict[tuple[str | None, str, bool], Route[T]] = {}

    def add(
        self,
        path: str,
        target: T,
        methods: Iterable[str] | None = ("GET",),
        *,
        prefix: bool = False,
        owner: str = "core",
    ) -> Route[T]:
        """Add a route; ``PLUGIN_INVALID`` for a bad path, ``PLUGIN_CONFLICT`` for a clash."""
        if not path.startswith("/"):
            raise SmithersError(
                "PLUGIN_INVALID", f"Route path {path!r} of '{owner}' must start with '/'"
            )
        names = frozenset(m.upper() for m in methods) if methods is not None else None
        pattern = None if prefix else _compile(path)
        route = Route(path, target, names, prefix, owner, pattern)
        keys: list[tuple[str | None, str, bool]] = [(None, path, prefix)]
        if names is not None:
            keys = [(m, path, prefix) for m in sorted(names)]
        for key in keys:
            other = self._owners.get(key)
            if other is not None:
                label = f"{key[0] + ' ' if key[0] else ''}{route.label}"
                raise SmithersError(
                    "PLUGIN_CONFLICT",
                    f"Route {label} is contributed by both '{other.owner}' and '{owner}';"
                    " disable one of them ([plugins] disable)",
                    {"route": label, "owners": [other.owner, owner]},
                )
        for key in keys:
            self._owners[key] = route
        if prefix:
            self._prefixes.append(route)
            self._prefixes.sort(key=lambda r: len(r.path), reverse=True)
        elif pattern is not None:
            self._templates.append(route)
        else:
            for method in names if names is not None else (None,):
                self._literal[(method, path)] = route
        return route

    def match(self, method: str | None, path: str) -> Match[T] | None:
        """The route for ``method`` and ``path`` (see the module docstring for the order)."""
        route = self._literal.get((method, path)) or self._literal.get((None, path))
        if route is not None:
            return Match(route, {})
        for route in self._templates:
            if route.methods is None or method in route.methods:
                assert route.pattern is not None
                found = route.pattern.match(path)
                if found is not None:
                    return Match(route, found.groupdict())
        for route in self._prefixes:
            if (route.methods is None or method in route.methods) and path.startswith(route.path):
                return Match(route, {})
        return None

    def __iter__(self) -> Iterator[Route[T]]:
        seen: set[int] = set()
        for route in [*self._literal.values(), *self._templates, *self._prefixes]:
            if id(route) not in seen:
                seen.add(id(route))
                yield route


def _compile(path: str) -> re.Pattern[str] | None:
    """A regex for a template path, or None for a literal path."""
    if "{" not in path:
        return None
    out, pos = "", 0
    for found in _PARAM.finditer(path):
        out += re.escape(path[pos : found.start()]) + f"(?P<{found.group(1)}>[^/]+)"
        pos = found.end()
    return re.compile("^" + out + re.escape(path[pos:]) + "$")


__all__ = ["Match", "Route", "Router"]
