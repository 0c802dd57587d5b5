"""The gateway's RPC method table: every method by its name and legacy aliases, with the
plugin that provides it. Core's families and plugins' methods are added the same way."""

from __future__ import annotations

from collections.abc import Iterator

from smithers_core.contributions import RpcMethod
from smithers_core.errors import SmithersError


class MethodTable:
    """Methods by every name they answer to; one name from two providers is an error."""

    def __init__(self) -> None:
        self._by_name: dict[str, RpcMethod] = {}
        self._owners: dict[str, str] = {}

    def add(self, owner: str, method: RpcMethod) -> None:
        """Add ``method`` as provided by plugin ``owner``; ``PLUGIN_CONFLICT`` names both
        providers when one of its names (or aliases) is taken."""
        for name in method.names:
            other = self._owners.get(name)
            if other is not None:
                raise SmithersError(
                    "PLUGIN_CONFLICT",
                    f"RPC method '{name}' is provided by both '{other}' and '{owner}';"
                    " disable one of them ([plugins] disable)",
                    {"method": name, "plugins": [other, owner]},
                )
        for name in method.names:
            self._by_name[name] = method
            self._owners[name] = owner

    def get(self, name: str) -> RpcMethod | None:
        """The method answering to ``name`` (its own name or a legacy alias)."""
        return self._by_name.get(name)

    def owner(self, name: str) -> str | None:
        return self._owners.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[RpcMethod]:
        seen: set[str] = set()
        for method in self._by_name.values():
            if method.name not in seen:
                seen.add(method.name)
                yield method


__all__ = ["MethodTable"]
