"""Confinement of the ``bash`` tool: bubblewrap on Linux, probed once per process.

Inside the sandbox a command sees, and nothing else:

- its root directory, read-write, at its real path (symlinks resolved);
- ``/usr`` read-only, and ``/bin``, ``/sbin``, ``/lib*`` as on the host (symlinks into
  ``/usr`` on merged-usr systems, else read-only binds);
- read-only pieces of ``/etc`` that programs need to start and to resolve names
  (:data:`ETC_VISIBLE`); ``/etc/passwd``, ``/etc/shadow`` and the rest are absent;
- a fresh ``/proc`` for its own pid namespace, a minimal ``/dev`` (null, zero, random,
  urandom, tty, pts, shm) and an empty ``/tmp`` (tmpfs, discarded after the call); when the
  root itself lies under ``/tmp``, that ``/tmp`` is read-only apart from the root.

Everything else (``/`` itself included) is read-only or absent. The command also gets its
own pid, IPC, UTS and (unless the network is allowed) network namespaces, a new session, and
dies with its parent. Where bubblewrap is missing or cannot create namespaces the tool
raises ``SANDBOX_UNAVAILABLE`` unless the operator opted out (``unconfined_tools``); then
only the network namespace (``unshare``) applies, as before confinement existed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading

from smithers_core.errors import SmithersError

#: The entries of ``/etc`` visible (read-only) inside the sandbox, when they exist.
ETC_VISIBLE = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "nsswitch.conf",
    "host.conf",
    "hosts",
    "resolv.conf",
    "gai.conf",
    "services",
    "protocols",
    "ssl",
    "ca-certificates",
)
#: The top-level system folders made visible as on the host.
SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: Environment variable with which the operator opts out of confinement (any of 1/true/yes).
UNCONFINED_ENV = "SMITHERS_UNCONFINED_TOOLS"
OPT_OUT_HINT = (
    "install bubblewrap (Debian: apt-get install bubblewrap), or opt out explicitly with"
    f" unconfined_tools=True (smithers --unconfined-tools, {UNCONFINED_ENV}=1)"
)

_lock = threading.Lock()
_bwrap_verdict: dict[bool, str | None] = {}  # network -> None (works) or why not
_unshare_prefix: list[str] | None = None


def unconfined_from_env() -> bool:
    """True when ``SMITHERS_UNCONFINED_TOOLS`` opts out of filesystem confinement."""
    return os.environ.get(UNCONFINED_ENV, "").strip().lower() in ("1", "true", "yes")


def bwrap_argv(bwrap: str, root: str, cwd: str, *, network: bool) -> list[str]:
    """The ``bwrap`` command line (up to and including ``--``) confining a command to ``root``."""
    argv = [bwrap, "--unshare-all"]
    if network:
        argv.append("--share-net")
    argv += ["--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
    for name in SYSTEM_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in ETC_VISIBLE:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", root, root]
    if os.path.commonpath([root, "/tmp"]) == "/tmp":
        argv += ["--remount-ro", "/tmp"]  # a root in /tmp: its parents stay read-only
    argv += ["--remount-ro", "/", "--chdir", cwd, "--"]
    return argv


def _run_ok(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    return done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"


def _bwrap_problem(network: bool) -> str | None:
    """None when bubblewrap confines here (probed once per network mode), else why not."""
    with _lock:
        if network not in _bwrap_verdict:
            bwrap = shutil.which("bwrap")
            if bwrap is None:
                problem: str | None = "bubblewrap (bwrap) is not installed"
            else:
                with tempfile.TemporaryDirectory(prefix="smithers-probe-") as tmp:
                    root = os.path.realpath(tmp)
                    failed = _run_ok([*bwrap_argv(bwrap, root, root, network=network), "true"])
                problem = None if failed is None else f"bwrap cannot confine here: {failed}"
            _bwrap_verdict[network] = problem
        return _bwrap_verdict[network]


def _works(prefix: list[str]) -> bool:
    return _run_ok([*prefix, "true"]) is None


def unshare_prefix() -> list[str]:
    """A prefix giving only a fresh network namespace (the unconfined mode), probed once."""
    global _unshare_prefix
    with _lock:
        if _unshare_prefix is None:
            unshare = shutil.which("unshare")
            candidates = (
                [[unshare, "--net", "--"], [unshare, "--user", "--map-root-user", "--net", "--"]]
                if unshare
                else []
            )
            for prefix in candidates:
                if _works(prefix):
                    _unshare_prefix = prefix
                    break
            else:
                raise SmithersError(
                    "SANDBOX_UNAVAILABLE",
                    "Cannot run bash without network access here (unshare --net is unavailable);"
                    " refusing to run it unsandboxed",
                )
        return list(_unshare_prefix)


def reset_probes() -> None:
    """Forget the probe results (tests, or after installing bubblewrap)."""
    global _unshare_prefix
    with _lock:
        _bwrap_verdict.clear()
        _unshare_prefix = None


def confine(argv: list[str], root: str, cwd: str, *, network: bool, unconfined: bool) -> list[str]:
    """``argv`` wrapped to run confined to ``root`` (both real paths), or refused.

    Raises ``SANDBOX_UNAVAILABLE`` when confinement is impossible and ``unconfined`` is
    False. With ``unconfined`` the command runs without filesystem confinement when
    bubblewrap is unavailable, still without network unless ``network``.
    """
    problem = _bwrap_problem(network)
    if problem is None:
        bwrap = shutil.which("bwrap")
        if bwrap is not None:
            return [*bwrap_argv(bwrap, root, cwd, network=network), *argv]
        problem = "bubblewrap (bwrap) is not installed"
    if not unconfined:
        raise SmithersError(
            "SANDBOX_UNAVAILABLE",
            f"Cannot confine the bash tool to its root directory ({problem}); refusing to"
            f" run it unconfined: {OPT_OUT_HINT}",
        )
    return argv if network else [*unshare_prefix(), *argv]
