"""``smithers_ui``: the operator console and the gateway's UI mounts, as a plugin.

It contributes through ``smithers_ui_mounts`` only: the console at ``operator_ui.path``
(default ``/console``; ``ui=True`` puts it at ``/`` too), a custom gateway UI
(``ui={entry, path, title, props}``) and each workflow's page (``register(..., ui=...)``).
Everything the pages load ships in this package: no build step, no CDN. See ``docs/ui.md``.
"""

from __future__ import annotations

from smithers_core.contributions import HostContext, UiMount
from smithers_core.hookspecs import hookimpl
from smithers_ui.mounts import console_mounts, console_props, gateway_mounts


@hookimpl
def smithers_ui_mounts(host: HostContext) -> list[UiMount]:
    return gateway_mounts(host) if host.kind == "gateway" else []


__all__ = ["console_mounts", "console_props", "gateway_mounts"]
