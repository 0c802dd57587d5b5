"""``smithers_cron``: cron schedules for the gateway, as an installable plugin.

``Gateway.register(key, workflow, schedule="0 8 * * 1-5")`` (or ``schedule`` in
``[[workflows]]``) fires the workflow on that pattern; ``cronList`` / ``cronCreate`` /
``cronDelete`` / ``cronRun`` manage schedules over RPC, and ``smithers cron`` from a shell.
See ``docs/schedules.md``.
"""

from __future__ import annotations

from smithers_core.contributions import CliCommand, CliHost, HostContext, RpcMethod, Scheduler
from smithers_core.hookspecs import hookimpl
from smithers_cron.cli import cron_command
from smithers_cron.methods import cron_methods
from smithers_cron.scheduler import CronScheduler, check_schedules


@hookimpl
def smithers_schedulers(host: HostContext) -> list[Scheduler]:
    if host.kind != "gateway":
        return []
    check_schedules(host)
    return [CronScheduler()]


@hookimpl
def smithers_rpc_methods(host: HostContext) -> list[RpcMethod]:
    return cron_methods(host) if host.kind == "gateway" else []


@hookimpl
def smithers_cli_commands(host: CliHost) -> list[CliCommand]:
    return [cron_command()]


__all__ = ["CronScheduler", "cron_methods"]
