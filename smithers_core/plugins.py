"""The plugin manager: discovery through entry points, enable/disable, validation.

Plugins are entry points of the group ``smithers.plugins``, loaded with stevedore's
``NamedExtensionManager`` (only the enabled names are imported). Distribution names and
versions come from ``importlib.metadata``. Every loaded plugin is validated right after it is
registered: an implementation of an unknown hook unregisters the plugin and is reported like an
import error. A failure is fatal only for a *required* plugin (``[plugins] enable`` or
``SMITHERS_PLUGINS``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, cast

import pluggy
from stevedore.named import NamedExtensionManager

from smithers_core import hookspecs
from smithers_core.auth import AuthMode
from smithers_core.config import PluginsSection
from smithers_core.contributions import (
    CliCommand,
    EventObserver,
    HostContext,
    RpcMethod,
    Scheduler,
    Transport,
    UiMount,
)
from smithers_core.errors import SmithersError

log = logging.getLogger("smithers.plugins")

PLUGIN_GROUP = "smithers.plugins"
ENV_REQUIRED = "SMITHERS_PLUGINS"
ENV_DISABLED = "SMITHERS_DISABLE_PLUGINS"


@dataclass(slots=True)
class PluginInfo:
    """What ``smithers plugins list`` reports for one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    enabled: bool = True
    required: bool = False
    loaded: bool = False
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    public_routes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "enabled": self.enabled,
            "required": self.required,
            "loaded": self.loaded,
            "error": self.error,
            "hooks": list(self.hooks),
            "publicRoutes": list(self.public_routes),
        }


class ListingHost:
    """The :class:`HostContext` of ``smithers plugins list``: nothing registered or running."""

    kind = "cli"
    options: Mapping[str, Any] = {}
    registrations: Mapping[str, Any] = {}

    def _not_running(self) -> SmithersError:
        return SmithersError("HOST_NOT_RUNNING", "Plugins are only being listed")

    @property
    def run_service(self) -> Any:
        raise self._not_running()

    @property
    def store(self) -> Any:
        raise self._not_running()

    @property
    def db(self) -> Any:
        raise self._not_running()

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def broadcast(self, event: str, payload: Mapping[str, Any]) -> None:
        raise self._not_running()

    def add_routes(self, owner: str, routes: Any) -> None:
        raise self._not_running()

    def count(self, metric: str, **labels: str) -> None:
        raise self._not_running()

    async def launch(self, key: str, run_input: Any, auth: Any, *, run_id: Any = None) -> Any:
        raise self._not_running()

    async def authenticate(self, request: Any) -> Any:
        raise self._not_running()


def _split_env(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _entry_point_distributions(group: str) -> dict[str, tuple[str | None, str | None]]:
    """Map entry-point name to (distribution, version) for ``group``."""
    found: dict[str, tuple[str | None, str | None]] = {}
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        name = dist.metadata["Name"] if dist is not None else None
        version = dist.version if dist is not None else None
        found.setdefault(ep.name, (name, version))
    return found


class PluginHost:
    """A pluggy ``PluginManager`` plus what was discovered, with typed accessors per hook."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    # -- registration -------------------------------------------------------------------
    def register(
        self,
        plugin: object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
        required: bool = False,
    ) -> PluginInfo:
        """Register and validate one plugin object (a module or an instance).

        Returns its :class:`PluginInfo`; ``loaded`` is False and ``error`` says why when the
        plugin implements an unknown hook or a hook with the wrong arguments.
        """
        info = self.infos.get(name) or PluginInfo(name, distribution, version, required=required)
        self.infos[name] = info
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            info.error = f"{type(exc).__name__}: {exc}"
            return info
        unknown = self._unknown_hooks(plugin)
        if unknown:
            self.pm.unregister(plugin)
            known = ", ".join(sorted(self.known_hooks()))
            info.error = (
                f"plugin '{name}' implements unknown hook(s) {', '.join(sorted(unknown))}; "
                f"known hooks: {known}"
            )
            return info
        info.loaded = True
        info.error = None
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        return info

    def known_hooks(self) -> list[str]:
        return [n for n in dir(hookspecs) if n.startswith("smithers_")]

    def _unknown_hooks(self, plugin: object) -> list[str]:
        unknown = []
        for attr in dir(plugin):
            opts = self.pm.parse_hookimpl_opts(plugin, attr)
            if opts is None or opts.get("optionalhook"):
                continue
            caller = getattr(self.pm.hook, attr, None)
            if caller is None or not caller.has_spec():
                unknown.append(attr)
        return unknown

    def check(self) -> None:
        """Final validation (``pm.check_pending()``): no implementation of an unknown hook."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise SmithersError("PLUGIN_INVALID", str(exc)) from exc

    # -- typed hook accessors -------------------------------------------------------------
    def contributions(
        self, hook: str, *, tolerant: bool = False, **arguments: Any
    ) -> list[tuple[str, Any]]:
        """``(plugin name, result)`` of each implementation of ``hook``, in registration order
        (conflict messages name plugins by it); each gets only the arguments it declares.

        With ``tolerant`` a failing implementation contributes nothing: its error is recorded
        on the plugin's :class:`PluginInfo` and logged (listing and building the command line
        must never be taken down by one broken plugin).
        """
        out: list[tuple[str, Any]] = []
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            declared = {k: v for k, v in arguments.items() if k in impl.argnames}
            try:
                result = impl.function(**declared)
            except Exception as exc:
                if not tolerant:
                    raise
                error = f"{hook} failed: {type(exc).__name__}: {exc}"
                info = self.infos.get(impl.plugin_name)
                if info is not None:
                    info.error = info.error or error
                log.warning("plugin %r: %s", impl.plugin_name, error)
                continue
            out.append((impl.plugin_name, result))
        return out

    def auth_modes(self) -> dict[str, AuthMode]:
        """Every auth mode of every plugin; the same mode from two plugins is an error."""
        modes: dict[str, AuthMode] = {}
        owners: dict[str, str] = {}
        for plugin, result in self.contributions("smithers_auth_modes"):
            for mode, value in cast("dict[str, AuthMode]", result or {}).items():
                if mode in modes:
                    raise SmithersError(
                        "PLUGIN_CONFLICT",
                        f"Auth mode '{mode}' is provided by both '{owners[mode]}' and '{plugin}'",
                    )
                modes[mode] = value
                owners[mode] = plugin
        return modes

    def transports(self, host: HostContext) -> list[Transport]:
        return [t for batch in self.pm.hook.smithers_transports(host=host) for t in batch or []]

    def schedulers(self, host: HostContext) -> list[Scheduler]:
        return [s for batch in self.pm.hook.smithers_schedulers(host=host) for s in batch or []]

    def rpc_methods(self, host: HostContext) -> list[tuple[str, RpcMethod]]:
        """``(plugin name, method)`` for every contributed RPC method, in registration order
        (the method table reports two providers of one name by these plugin names)."""
        return [
            (plugin, method)
            for plugin, result in self.contributions("smithers_rpc_methods", host=host)
            for method in cast("list[RpcMethod]", result or [])
        ]

    def rpc_namespaces(self) -> dict[str, Mapping[str, Any]]:
        merged: dict[str, Mapping[str, Any]] = {}
        for batch in self.pm.hook.smithers_rpc_namespaces():
            for namespace, definition in (batch or {}).items():
                if namespace in merged:
                    raise SmithersError(
                        "INVALID_INPUT", f"Extension namespace '{namespace}' is contributed twice"
                    )
                merged[namespace] = definition
        return merged

    def ui_mounts(self, host: HostContext) -> list[UiMount]:
        return [m for _plugin, m in self.ui_mounts_by_plugin(host)]

    def ui_mounts_by_plugin(self, host: HostContext) -> list[tuple[str, UiMount]]:
        """``(plugin name, mount)`` for every contributed UI mount (two claims of one path
        are reported by these names)."""
        return [
            (plugin, mount)
            for plugin, result in self.contributions("smithers_ui_mounts", host=host)
            for mount in cast("list[UiMount]", result or [])
        ]

    def event_observers(self) -> list[EventObserver]:
        return [o for batch in self.pm.hook.smithers_event_observers() for o in batch or []]

    def cli_commands(self) -> list[CliCommand]:
        """Every contributed ``smithers`` subcommand; one name from two plugins is an error.

        An implementation may leave out ``host``. A plugin whose hook raises contributes nothing
        (its error is recorded and logged), so one broken plugin never takes the other commands
        down.
        """
        commands: list[CliCommand] = []
        owners: dict[str, str] = {}
        for plugin, result in self.contributions("smithers_cli_commands", tolerant=True, host=self):
            for command in cast("list[CliCommand]", result or []):
                if command.name in owners:
                    raise SmithersError(
                        "PLUGIN_CONFLICT",
                        f"Command '{command.name}' is contributed by both "
                        f"'{owners[command.name]}' and '{plugin}'",
                        {
                            "command": command.name,
                            "plugins": [owners[command.name], plugin],
                        },
                    )
                owners[command.name] = plugin
                commands.append(command)
        return commands

    def list_public_routes(self) -> None:
        """Fill ``public_routes`` of each plugin that contributes transports (for listing)."""
        listed = self.contributions("smithers_transports", tolerant=True, host=ListingHost())
        for plugin, result in listed:
            info = self.infos.get(plugin)
            if info is None:
                continue
            for transport in cast("list[Transport]", result or []):
                for route in transport.routes:
                    if route.auth == "public":
                        info.public_routes.append(route.path + ("*" if route.prefix else ""))

    def sorted_infos(self) -> list[PluginInfo]:
        return [self.infos[k] for k in sorted(self.infos)]

    def failed_required(self) -> list[PluginInfo]:
        return [i for i in self.sorted_infos() if i.required and not i.loaded]


def resolve_plugin_selection(
    section: PluginsSection | None, environ: Mapping[str, str] | None = None
) -> tuple[set[str], set[str]]:
    """Return ``(required, disabled)`` from the config section plus the environment."""
    env = os.environ if environ is None else environ
    section = section or PluginsSection()
    required = set(section.enable) | set(_split_env(env.get(ENV_REQUIRED)))
    disabled = set(section.disable) | set(_split_env(env.get(ENV_DISABLED)))
    both = required & disabled
    if both:
        raise SmithersError(
            "CONFIG_INVALID",
            f"Plugin(s) both required and disabled: {', '.join(sorted(both))}",
        )
    return required, disabled


def load_plugins(
    section: PluginsSection | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    group: str = PLUGIN_GROUP,
    extra: Iterable[tuple[str, object]] = (),
    strict: bool = True,
) -> PluginHost:
    """Discover, load, register and validate plugins.

    ``extra`` registers in-process plugins (``(name, object)``) as if discovered. With
    ``strict`` a missing or broken required plugin raises ``SmithersError`` naming it; otherwise
    it is only recorded (``smithers plugins list`` uses that to report everything).
    """
    required, disabled = resolve_plugin_selection(section, environ)
    host = PluginHost()
    dists = _entry_point_distributions(group)
    names = sorted(dists)
    for name in names:
        dist, version = dists[name]
        host.infos[name] = PluginInfo(
            name, dist, version, enabled=name not in disabled, required=name in required
        )

    failures: dict[str, str] = {}

    def on_failure(_mgr: Any, ep: metadata.EntryPoint, err: BaseException) -> None:
        failures[ep.name] = f"{type(err).__name__}: {err}"

    enabled = [n for n in names if n not in disabled]
    # stevedore caches entry points per group for the process; installed plugins may change
    # between two loads (tests, long-lived processes), so always look again.
    NamedExtensionManager.ENTRY_POINT_CACHE.pop(group, None)
    if enabled:
        manager = NamedExtensionManager(
            group,
            names=enabled,
            on_load_failure_callback=on_failure,
            name_order=True,
        )
        for ext in manager.extensions:
            dist, version = dists.get(ext.name, (None, None))
            host.register(
                ext.plugin,
                ext.name,
                distribution=dist,
                version=version,
                required=ext.name in required,
            )
    for name, error in failures.items():
        info = host.infos[name]
        info.error = error
        log.warning("plugin %r failed to load: %s", name, error)
    for name, obj in extra:
        if name not in disabled:
            host.register(obj, name, required=name in required)
    for info in host.sorted_infos():
        if info.error and info.name not in failures:
            log.warning("plugin %r rejected: %s", info.name, info.error)

    for name in sorted(required - set(host.infos)):
        host.infos[name] = PluginInfo(
            name, required=True, error=f"Required plugin '{name}' is not installed"
        )
    if strict:
        broken = host.failed_required()
        if broken:
            raise SmithersError(
                "PLUGIN_REQUIRED",
                "; ".join(f"required plugin '{i.name}' unavailable: {i.error}" for i in broken),
                {"plugins": [i.name for i in broken]},
            )
        host.check()
    return host


__all__ = [
    "ENV_DISABLED",
    "ENV_REQUIRED",
    "PLUGIN_GROUP",
    "PluginHost",
    "PluginInfo",
    "load_plugins",
    "resolve_plugin_selection",
]
