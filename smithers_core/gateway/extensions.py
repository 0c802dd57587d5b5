"""``Gateway.extend(namespace, definition)``: extension namespaces (reference 8, D7).

A definition is a mapping ``{title?, description?, default_scope?, resources?, queries?,
actions?, streams?}``; each resource or action is ``{handler, scope?, title?}`` (or just the
handler) and each stream ``{subscribe, scope?, title?}`` (or just the subscribe function).
Wire names are ``ext.<namespace>.<key>`` and ``ext.stream.<namespace>.<key>``. Namespaces and
keys match ``^[a-z][a-zA-Z0-9]*$`` (D7: keys with ``_`` or ``-`` could never be called, so they
are rejected) and are at most 64 characters. Handlers run behind the gateway's authentication
and scope checks; there is no way to register an unauthenticated handler.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from smithers_core.errors import SmithersError

EXTENSION_SCOPES = frozenset(
    (
        "run:read",
        "run:write",
        "run:admin",
        "approval:submit",
        "signal:submit",
        "cron:read",
        "cron:write",
        "observability:read",
    )
)
MAX_RESULT_BYTES = 4 * 1024 * 1024
_IDENT = re.compile(r"^[a-z][a-zA-Z0-9]*$")
Kind = Literal["resource", "action", "stream"]


@dataclass
class ExtensionContext:
    """What a handler learns about its call. ``signal`` is set when the call completes or
    the connection closes."""

    namespace: str
    key: str
    kind: Kind
    scopes: tuple[str, ...]
    user_id: str | None
    token_id: str | None
    connection_id: str | None
    signal: anyio.Event = field(default_factory=anyio.Event)


@dataclass
class StreamContext(ExtensionContext):
    """A stream subscription: ``send(payload)`` emits ``ext.stream.event`` to the caller."""

    stream_id: str = ""
    send: Callable[[Any], None] = field(default=lambda _payload: None)


@dataclass(frozen=True)
class Entry:
    kind: Kind
    namespace: str
    key: str
    fn: Callable[..., Any]
    scope: str
    title: str | None = None

    @property
    def method(self) -> str:
        if self.kind == "stream":
            return f"ext.stream.{self.namespace}.{self.key}"
        return f"ext.{self.namespace}.{self.key}"


@dataclass
class Namespace:
    name: str
    title: str | None
    description: str | None
    default_scope: str | None
    entries: dict[tuple[str, str], Entry]

    def to_json(self) -> dict[str, Any]:
        def keys(kind: str) -> list[str]:
            return sorted(k for (kd, k) in self.entries if kd == kind)

        return {
            "namespace": self.name,
            "title": self.title,
            "description": self.description,
            "defaultScope": self.default_scope,
            "resources": keys("resource"),
            "actions": keys("action"),
            "streams": keys("stream"),
        }


def _bad(message: str) -> SmithersError:
    return SmithersError("INVALID_INPUT", message)


def _ident(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 64 or not _IDENT.match(value):
        raise _bad(
            f"Extension {what} {value!r} must be 1-64 characters matching ^[a-z][a-zA-Z0-9]*$"
        )
    return value


def _scope(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if value not in EXTENSION_SCOPES:
        raise _bad(f"Extension {what} scope {value!r} is not one of {sorted(EXTENSION_SCOPES)}")
    return str(value)


def _get(d: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if n in d:
            return d[n]
    return None


class ExtensionRegistry:
    """Registered namespaces and method lookup."""

    def __init__(self) -> None:
        self.namespaces: dict[str, Namespace] = {}
        self._methods: dict[str, Entry] = {}

    def add(self, namespace: str, definition: Mapping[str, Any]) -> None:
        _ident(namespace, "namespace")
        if namespace == "stream":
            raise _bad("Extension namespace 'stream' is reserved")
        if namespace in self.namespaces:
            raise _bad(f"Extension namespace '{namespace}' is already registered")
        if not isinstance(definition, Mapping):
            raise _bad("Extension definition must be a mapping")
        default_scope = _scope(_get(definition, "default_scope", "defaultScope"), "default")
        entries: dict[tuple[str, str], Entry] = {}
        sections: list[tuple[Kind, str, Any]] = [
            ("resource", "resources", definition.get("resources")),
            ("resource", "queries", definition.get("queries")),
            ("action", "actions", definition.get("actions")),
            ("stream", "streams", definition.get("streams")),
        ]
        plain: dict[str, Kind] = {}
        for kind, section, items in sections:
            if items is None:
                continue
            if not isinstance(items, Mapping):
                raise _bad(f"Extension {section} must be a mapping")
            for key, spec in items.items():
                _ident(key, "key")
                if callable(spec):
                    spec = {"subscribe" if kind == "stream" else "handler": spec}
                if not isinstance(spec, Mapping):
                    raise _bad(f"Extension {section}.{key} must be a mapping or a function")
                fn = spec.get("subscribe" if kind == "stream" else "handler")
                if not callable(fn):
                    need = "subscribe" if kind == "stream" else "handler"
                    raise _bad(f"Extension {section}.{key} needs a callable '{need}'")
                if kind != "stream":
                    other = plain.get(key)
                    if other is not None and other != kind:
                        raise _bad(f"Extension key '{key}' is both a resource and an action")
                    plain[key] = kind
                default = "run:write" if kind == "action" else "run:read"
                scope = _scope(spec.get("scope"), f"{section}.{key}") or default_scope or default
                entries[(kind, key)] = Entry(kind, namespace, key, fn, scope, spec.get("title"))
        ns = Namespace(
            namespace,
            definition.get("title"),
            definition.get("description"),
            default_scope,
            entries,
        )
        self.namespaces[namespace] = ns
        for entry in entries.values():
            self._methods[entry.method] = entry

    def resolve(self, method: str) -> Entry | None:
        return self._methods.get(method)

    def list(self) -> list[dict[str, Any]]:
        return [ns.to_json() for ns in self.namespaces.values()]


async def call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async function; a sync one runs inline (handlers must not block)."""
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


__all__ = [
    "EXTENSION_SCOPES",
    "MAX_RESULT_BYTES",
    "Entry",
    "ExtensionContext",
    "ExtensionRegistry",
    "Namespace",
    "StreamContext",
    "call_maybe_async",
]
