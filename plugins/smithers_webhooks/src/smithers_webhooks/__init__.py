"""``smithers_webhooks``: signed inbound webhooks for the gateway, as an installable plugin.

``Gateway.register(key, workflow, webhook={...})`` (or ``webhook = {...}`` in ``[[workflows]]``)
serves ``POST /webhooks/<key>``: a delivery signed with the workflow's secret delivers a
signal to the runs waiting for it, or starts a run. See ``docs/webhooks.md``.
"""

from __future__ import annotations

from smithers_core.contributions import HostContext, RouteSpec, Scheduler
from smithers_core.hookspecs import hookimpl
from smithers_webhooks.receiver import WebhookReceiver

NAME = "smithers_webhooks"


class WebhookRoutes:
    """Implements the ``webhook`` option: mounts the public route once the gateway serves."""

    name = NAME
    options = frozenset({"webhook"})

    async def start(self, host: HostContext) -> None:
        route = RouteSpec(
            "/webhooks/{key}", WebhookReceiver(host), ("POST",), auth="public", name="webhook"
        )
        host.add_routes(NAME, [route])

    async def stop(self) -> None:
        return None


@hookimpl
def smithers_schedulers(host: HostContext) -> list[Scheduler]:
    return [WebhookRoutes()] if host.kind == "gateway" else []


__all__ = ["WebhookReceiver", "WebhookRoutes"]
