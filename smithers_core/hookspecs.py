"""Every hook a Smithers plugin can implement: the map of the system.

Implement a hook with ``@smithers_core.hookimpl`` on a function (or method) of the same name in a
module or object registered under the entry-point group ``smithers.plugins``. pluggy calls are
synchronous: hooks return plain objects, and core awaits those objects' async methods.
An implementation of a hook that is not listed here is rejected when the plugin loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy

from smithers_core.auth import AuthMode
from smithers_core.contributions import (
    CliCommand,
    CliHost,
    EventObserver,
    HostContext,
    RpcMethod,
    Scheduler,
    Transport,
    UiMount,
)

PROJECT = "smithers"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def smithers_auth_modes() -> dict[str, AuthMode]:
    """Contribute auth modes, keyed by the mode name used in ``[auth] mode = "..."``.

    Called once when a host starts (and by ``smithers plugins list``). Returns a mapping of mode
    name to :class:`~smithers_core.auth.AuthMode`, whose ``config_model`` validates the ``[auth]``
    section and whose ``create(config)`` returns a provider turning an ``AuthRequest`` into an
    ``Identity`` or raising ``SmithersError("UNAUTHORIZED", message, details)``. Two plugins
    providing the same mode name is a startup error.
    """


@hookspec
def smithers_transports(host: HostContext) -> list[Transport]:
    """Contribute routes, ASGI endpoints or protocol handlers to mount on a host app.

    Called once per host app by ``listen()``, with the host's
    :class:`~smithers_core.contributions.HostContext`. Returns a list of
    :class:`~smithers_core.contributions.Transport`; core mounts their ``routes`` (wrapping
    every ``auth="required"`` route with gates, authentication and its scope check), awaits
    ``startup()`` when the host starts and ``shutdown()`` when it closes.
    """


@hookspec
def smithers_schedulers(host: HostContext) -> list[Scheduler]:
    """Contribute background schedulers (cron, webhooks, timers ...).

    Called once by ``listen()``, with the host's
    :class:`~smithers_core.contributions.HostContext`. Returns a list of
    :class:`~smithers_core.contributions.Scheduler`; core awaits ``start(host)`` after binding
    and ``stop()`` in ``close()``. A scheduler's ``options`` declare which registration options
    (``schedule``, ``webhook``) it implements.
    """


@hookspec
def smithers_rpc_methods(host: HostContext) -> list[RpcMethod]:
    """Contribute gateway RPC methods under their own names (``cronList`` / ``cron.list`` ...).

    Called once when a gateway is built, with its
    :class:`~smithers_core.contributions.HostContext`. Returns a list of
    :class:`~smithers_core.contributions.RpcMethod` (name, legacy aliases, scope, params model,
    handler), served over ``POST /v1/rpc/<name>``, ``POST /rpc`` and WebSocket exactly like
    core's own methods, which arrive through this hook too. One name (or alias) from two
    plugins is a startup error naming both.
    """


@hookspec
def smithers_rpc_namespaces() -> dict[str, Mapping[str, Any]]:
    """Contribute RPC extension namespaces.

    Called once when a gateway is built. Returns ``{namespace: definition}``; each pair is passed
    to ``Gateway.extend(namespace, definition)`` and follows exactly the same contract
    (resources, actions, streams, scopes, size caps). Extension methods always inherit the
    gateway's authentication and scope checks.
    """


@hookspec
def smithers_ui_mounts(host: HostContext) -> list[UiMount]:
    """Contribute UI mounts (an operator console, a workflow page ...).

    Called once by ``listen()``, with the host's
    :class:`~smithers_core.contributions.HostContext`: its ``options`` (``ui``,
    ``operator_ui``) and every registration with its options, so a UI plugin can mount
    ``/workflows/<key>`` for each workflow registered with ``ui`` and the console at
    ``operator_ui["path"]``. Returns a list of :class:`~smithers_core.contributions.UiMount`
    (path, title, ASGI app and/or assets folder).
    """


@hookspec
def smithers_event_observers() -> list[EventObserver]:
    """Contribute observers of every persisted run event (metrics, audit logs, notifications).

    Called once when a store is opened by a host. Returns a list of
    :class:`~smithers_core.contributions.EventObserver`; each observer's ``on_event(run_id, seq,
    event, encoded)`` is then called in the committing process, after the commit, in seq order
    per run. Observers must not block; their exceptions are logged and counted.
    """


@hookspec
def smithers_cli_commands(host: CliHost) -> list[CliCommand]:
    """Contribute ``smithers`` subcommands (core's own commands arrive this way too).

    Called once when the ``smithers`` command builds its parser, with the loaded plugins
    (``host.auth_modes()`` lists the installed auth modes). Returns a list of
    :class:`~smithers_core.contributions.CliCommand`; two plugins contributing one command name
    is a startup error naming both.
    """
