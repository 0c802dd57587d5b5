"""Which UIs a gateway mounts, from its options and registrations (reference 9.5).

- ``operator_ui`` (default ``{path: "/console"}``; ``False`` for none): the operator console,
  authenticated (``run:read``); its sign-in page ``<path>/signin`` is public, and a browser
  that is not signed in is sent there.
- ``ui=True``: the console at ``/`` too. ``ui={entry, path="/", title, props}``: a custom
  gateway UI (public), ``entry`` being a folder of static files (its ``index.html`` is the
  page, else the generated shell loading its ``client.js``) or one HTML file (its folder holds
  the assets).
- ``register(key, wf, ui=...)``: the workflow's page at ``/workflows/<key>`` (or ``ui.path``,
  with ``/workflows/<key>`` redirecting there), public. With an ``entry`` it is that UI; with
  ``ui=True`` (no entry) the console's page for that one workflow.
A relative ``entry`` is resolved against the folder of the workflow's file (a gateway UI's,
against the working directory); ``smithers gateway`` resolves config-file entries against the
config's folder first.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smithers_core.auth import Identity
from smithers_core.contributions import HostContext, UiMount
from smithers_core.errors import SmithersError
from smithers_core.gateway import catalog
from smithers_core.registrations import Registration, UiOption
from smithers_ui.app import RedirectApp, UiApp
from smithers_ui.shell import Boot

HERE = Path(__file__).resolve().parent
CONSOLE = HERE / "console"
STATIC = HERE / "static"
CONSOLE_TITLE = "Smithers console"
ACTIONS = (
    "listRuns", "getRun", "launchRun", "cancelRun", "resumeRun", "runs.rerun",
    "pauseRun", "retryTask", "rewindRun",
    "listApprovals", "submitApproval", "submitSignal", "listPrompts",
    "cronList", "cronCreate", "cronDelete", "cronRun",
)  # fmt: skip
"""The methods the console offers; ``props.can`` says which the signed-in caller may call."""


def console_props(identity: Identity | None) -> dict[str, Any]:
    """Who is signed in and what they may do (the server refuses the rest anyway)."""
    if identity is None:
        return {"identity": None, "can": {}}
    return {
        "identity": {
            "role": identity.role,
            "userId": identity.user_id,
            "scopes": list(identity.scopes),
        },
        "can": {m: catalog.may_call(tuple(identity.scopes), m) for m in ACTIONS},
    }


def _path(value: Any, default: str) -> str:
    path = str(value or default)
    if not path.startswith("/"):
        raise SmithersError("INVALID_INPUT", f"A UI path must start with '/': {path!r}")
    return path.rstrip("/") or "/"


def _entry(value: Any, base: Path) -> tuple[list[Path], Path | None]:
    """``(asset folders, page)`` of an ``entry``: a folder (its index.html, if any, is the
    page) or an HTML file (its folder holds the assets)."""
    entry = Path(str(value)).expanduser()
    if not entry.is_absolute():
        entry = base / entry
    entry = entry.resolve()
    if entry.is_dir():
        index = entry / "index.html"
        return [entry, STATIC], index if index.is_file() else None
    if entry.is_file() and entry.suffix.lower() in (".html", ".htm"):
        return [entry.parent, STATIC], entry
    raise SmithersError(
        "INVALID_INPUT",
        f"A UI entry must be a folder or an HTML file: {entry}",
        {"entry": str(entry)},
    )


def console_mounts(path: str, title: str, props: Mapping[str, Any] | None) -> list[UiMount]:
    """The console at ``path`` and its public sign-in page."""
    base = path.rstrip("/")
    extra = dict(props or {})

    def with_identity(identity: Identity | None) -> dict[str, Any]:
        return {**extra, **console_props(identity)}

    console = UiApp(Boot("operator", path), title, [CONSOLE, STATIC], props_for=with_identity)
    sign_in_path = f"{base}/signin"
    sign_in = UiApp(
        Boot("operator", sign_in_path, props={**extra, "signIn": True, "consolePath": path}),
        f"Sign in - {title}",
        [CONSOLE, STATIC],
    )
    return [
        UiMount(path, title, app=console, option="operator_ui", sign_in=sign_in_path),
        UiMount(sign_in_path, f"Sign in - {title}", app=sign_in),
    ]


def workflow_base(reg: Registration) -> Path:
    source = reg.workflow.source_path or getattr(
        getattr(reg.workflow.build, "__code__", None), "co_filename", None
    )
    folder = Path(source).resolve().parent if source else Path.cwd()
    return folder if folder.is_dir() else Path.cwd()


def workflow_mounts(reg: Registration, console: str | None = None) -> list[UiMount]:
    """A workflow's page, and the redirect from ``/workflows/<key>`` when it lives elsewhere.
    ``console`` is the console's path, given to the page as ``props.consolePath`` (and its
    sign-in page as ``props.signInPath``) so it can link there."""
    option = reg.ui if isinstance(reg.ui, UiOption) else UiOption()
    default = f"/workflows/{reg.key}"
    path = _path(option.path, default)
    title = option.title or f"{reg.key} - Smithers"
    props = dict(option.props or {})
    if console is not None:
        props.setdefault("consolePath", console)
        props.setdefault("signInPath", console.rstrip("/") + "/signin")
    boot = Boot("workflow", path, workflow_key=reg.key, props=props)
    if option.entry:
        assets, page = _entry(option.entry, workflow_base(reg))
        app = UiApp(boot, title, assets, page=page)
    else:
        app = UiApp(boot, title, [CONSOLE, STATIC])
    mounts = [UiMount(path, title, app=app)]
    if path != default:
        mounts.append(UiMount(default, f"{reg.key} (moved)", app=RedirectApp(path)))
    return mounts


def gateway_mounts(host: HostContext) -> list[UiMount]:
    """Every mount of ``host``: the console, the gateway UI, the workflows' pages."""
    options = host.options
    ui, operator = options.get("ui"), options.get("operator_ui")
    mounts: list[UiMount] = []
    taken: set[str] = set()
    if ui is True:
        mounts += console_mounts("/", CONSOLE_TITLE, None)
        taken.add("/")
    elif isinstance(ui, Mapping) and ui:
        path = _path(ui.get("path"), "/")
        if not ui.get("entry"):
            raise SmithersError("INVALID_INPUT", "The gateway 'ui' needs an 'entry'")
        assets, page = _entry(ui["entry"], Path.cwd())
        boot = Boot("gateway", path, props=dict(ui.get("props") or {}))
        title = str(ui.get("title") or "Smithers")
        mounts.append(UiMount(path, title, app=UiApp(boot, title, assets, page=page)))
        taken.add(path)
    console = "/" if ui is True else None
    if isinstance(operator, Mapping):
        path = _path(operator.get("path"), "/console")
        console = path
        if path not in taken:
            title = str(operator.get("title") or CONSOLE_TITLE)
            mounts += console_mounts(path, title, operator.get("props"))
    for reg in host.registrations.values():
        if reg.ui and not reg.system:
            mounts += workflow_mounts(reg, console)
    return mounts


__all__ = ["ACTIONS", "CONSOLE", "console_mounts", "console_props", "gateway_mounts"]
