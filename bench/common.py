"""Shared plumbing: file limits, child processes speaking a line protocol, statistics."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
BATCH = 64  # sockets opened per batch: the gateway's max_pre_auth_connections


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE to its hard limit (every bench process does this first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; nan for an empty list."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


def median(values: list[float]) -> float:
    vals = [v for v in values if v == v]
    return statistics.median(vals) if vals else float("nan")


def emit(tag: str, data: Any = None) -> None:
    """Write one protocol line (``TAG {json}``) to stdout for the parent."""
    sys.stdout.write(f"{tag} {json.dumps(data)}\n")
    sys.stdout.flush()


class Child:
    """A bench child process (server or client) speaking ``TAG {json}`` lines on stdout and
    reading command lines on stdin. Every wait is bounded."""

    def __init__(self, module: str, kind: str, opts: dict[str, Any], *, name: str = "") -> None:
        self.name = name or kind
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [PY, "-m", module, kind, json.dumps(opts)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, tag: str, timeout: float = 60.0) -> Any:
        """Read lines until one tagged ``tag``; fail on EOF or after ``timeout`` seconds."""
        import selectors

        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no {tag} within {timeout}s")
                if not sel.select(left):
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.name} exited (rc={self.proc.poll()}) before {tag}")
                head, _, rest = line.rstrip("\n").partition(" ")
                if head == tag:
                    return json.loads(rest) if rest else None
                if head == "ERROR":
                    raise RuntimeError(f"{self.name}: {rest}")
        finally:
            sel.close()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def call(self, command: str, timeout: float = 60.0) -> Any:
        self.send(command)
        return self.expect("OK", timeout)

    def rss_kib(self) -> int:
        return rss_kib(self.proc.pid)

    def close(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def thread_cpu() -> dict[str, float]:
    """CPU seconds per Python thread of this process (name -> utime+stime), from /proc."""
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for th in threading.enumerate():
        tid = th.native_id
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick
        out[th.name] = out.get(th.name, 0.0) + cpu
    return out


def command_loop(handlers: dict[str, Any]) -> None:
    """Serve stdin commands from a thread: ``name args`` -> ``OK {json}``. ``quit`` or EOF
    calls handlers['quit']. Handlers are plain callables (they hop to the loop themselves)."""
    for line in sys.stdin:
        name, _, arg = line.strip().partition(" ")
        if not name:
            continue
        if name == "quit":
            break
        try:
            emit("OK", handlers[name](arg))
        except Exception as exc:  # reported to the parent, never fatal
            emit("ERROR", f"{name}: {type(exc).__name__}: {exc}")
    handlers["quit"]("")
