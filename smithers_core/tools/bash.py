"""The ``bash`` tool (D9): a shell command in ``root_dir`` with a timeout and an output cap.

The command runs confined to ``root_dir`` (bubblewrap, see :mod:`smithers_core.tools.sandbox`
for exactly what it sees): read-write only under the root, system paths read-only, the rest
absent. Without network access (the default, and whatever the host's ``allow_network`` says)
it also gets a fresh network namespace. Where confinement is unavailable it raises
``SANDBOX_UNAVAILABLE`` and never runs, unless the operator opted out with
``unconfined_tools`` (host option / ``--unconfined-tools`` / ``SMITHERS_UNCONFINED_TOOLS=1``):
then it runs unconfined, still without network. It runs in its own process group (and pid
namespace), killed whole on timeout. All this covers this tool only, not the task's own
Python code.

Inside a task, pass the task context so the host's and the run's settings apply::

    def build(t):
        result = bash("make test", ctx=t, timeout_ms=60_000)

A run launched with ``toolTimeoutMs`` / ``maxOutputBytes`` (``launchRun`` options) sets the
default timeout and output cap of every call with that context, and caps explicit values:
the operator's limit wins over the workflow's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

import anyio.to_thread

from smithers_core.errors import SmithersError
from smithers_core.tools.sandbox import confine, unconfined_from_env

DEFAULT_TIMEOUT_MS = 60_000
DEFAULT_MAX_OUTPUT_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class BashResult:
    """``exitCode`` (None when killed by the timeout), captured output and flags."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool
    duration_ms: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "exitCode": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "timedOut": self.timed_out,
            "truncated": self.truncated,
            "durationMs": self.duration_ms,
        }


def _drain(stream: IO[bytes], sink: bytearray, cap: int, over: list[bool]) -> None:
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            break
        room = cap - len(sink)
        if room > 0:
            sink.extend(chunk[:room])
        if len(chunk) > max(room, 0):
            over[0] = True
    stream.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def effective_limit(explicit: int | None, run_limit: Any, default: int) -> int:
    """A tool limit: the call's value capped by the run's, else the run's, else the default."""
    cap = run_limit if isinstance(run_limit, int) and not isinstance(run_limit, bool) else None
    if explicit is None:
        return cap if cap is not None else default
    return explicit if cap is None else min(explicit, cap)


def _root_and_cwd(root_dir: str | None, cwd: str | None) -> tuple[str, str]:
    """The sandbox root and working directory, as real paths; ``cwd`` must lie in the root."""
    root = os.path.realpath(root_dir or cwd or os.getcwd())
    workdir = os.path.realpath(os.path.join(root, cwd)) if cwd and root_dir else root
    if os.path.commonpath([root, workdir]) != root:
        raise SmithersError("INVALID_INPUT", "bash cwd must be inside the root directory")
    if root == os.path.dirname(root):
        raise SmithersError("INVALID_INPUT", "bash cannot use / as its root directory")
    if not os.path.isdir(workdir):
        raise SmithersError("INVALID_INPUT", "bash cwd is not a directory")
    return root, workdir


def bash(
    cmd: str,
    timeout_ms: int | None = None,
    max_output_bytes: int | None = None,
    *,
    ctx: Any = None,
    cwd: str | None = None,
    allow_network: bool | None = None,
    env: dict[str, str] | None = None,
) -> BashResult:
    """Run ``cmd`` with ``bash -c`` (blocking; use :func:`bash_async` from async tasks).

    The root is ``ctx.root_dir``, else ``cwd``, else the working directory; ``cwd`` (inside
    the root) defaults to the root. ``allow_network`` defaults to ``ctx.allow_network``, else
    False; ``ctx.unconfined_tools`` is the operator's opt-out of confinement. ``timeout_ms``
    (default 60 s) and ``max_output_bytes`` (default 1 MiB, per stream) are capped by the run's
    ``ctx.tool_timeout_ms`` / ``ctx.max_output_bytes``, which are also the defaults when set.
    """
    if not isinstance(cmd, str) or not cmd.strip():
        raise SmithersError("INVALID_INPUT", "bash needs a non-empty command")
    timeout_ms = effective_limit(
        timeout_ms, getattr(ctx, "tool_timeout_ms", None), DEFAULT_TIMEOUT_MS
    )
    max_output_bytes = effective_limit(
        max_output_bytes, getattr(ctx, "max_output_bytes", None), DEFAULT_MAX_OUTPUT_BYTES
    )
    if timeout_ms <= 0 or max_output_bytes < 0:
        raise SmithersError("INVALID_INPUT", "timeout_ms must be > 0, max_output_bytes >= 0")
    network = allow_network
    if network is None:
        network = bool(getattr(ctx, "allow_network", False))
    root, workdir = _root_and_cwd(getattr(ctx, "root_dir", None), cwd)
    unconfined = bool(getattr(ctx, "unconfined_tools", False)) or unconfined_from_env()
    argv = confine(["bash", "-c", cmd], root, workdir, network=network, unconfined=unconfined)
    began = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    out, err = bytearray(), bytearray()
    over = [False]
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, out, max_output_bytes, over)),
        threading.Thread(target=_drain, args=(proc.stderr, err, max_output_bytes, over)),
    ]
    for t in readers:
        t.daemon = True
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout_ms / 1000)
    except subprocess.TimeoutExpired:
        timed_out = True
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        # the whole group goes: children that kept the pipes open must not outlive the call
        _kill_group(proc)
        proc.wait()
    for t in readers:
        t.join(5)
    return BashResult(
        exit_code=None if timed_out else proc.returncode,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        timed_out=timed_out,
        truncated=over[0],
        duration_ms=int((time.monotonic() - began) * 1000),
    )


async def bash_async(
    cmd: str,
    timeout_ms: int | None = None,
    max_output_bytes: int | None = None,
    **kwargs: Any,
) -> BashResult:
    """:func:`bash` on a worker thread, for async tasks."""
    return await anyio.to_thread.run_sync(lambda: bash(cmd, timeout_ms, max_output_bytes, **kwargs))
