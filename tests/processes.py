"""Child processes in tests: wait for a line OR the child's exit, never for the test timeout.

``spawn`` starts a child with stdin from /dev/null and stdout + stderr captured by a reader
thread. Every failure (a deadline passed, the child exited before printing what was awaited,
an unexpected exit code) raises :class:`ChildFailed` with everything the child printed, and
the child is killed on the way out of the ``with`` block, so a broken child fails its test
in seconds and shows why.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

SMITHERS = [sys.executable, "-m", "smithers_core"]


class ChildFailed(AssertionError):
    """A child process did not do what the test waited for; the message holds its output."""


class Child:
    """A running child process and everything it has printed so far."""

    def __init__(self, proc: subprocess.Popen[bytes], label: str) -> None:
        self.proc = proc
        self.label = label
        self._chunks: list[bytes] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"child:{label}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            with self._changed:
                if data:
                    self._chunks.append(data)
                else:
                    self._eof = True
                self._changed.notify_all()
            if not data:
                return

    @property
    def output(self) -> str:
        """stdout and stderr so far, interleaved as the child wrote them."""
        with self._changed:
            return b"".join(self._chunks).decode(errors="replace")

    def fail(self, why: str) -> ChildFailed:
        """A :class:`ChildFailed` naming the child, ``why``, its exit code and its output."""
        code = self.proc.poll()
        state = "still running" if code is None else f"exit code {code}"
        return ChildFailed(f"{self.label} ({state}): {why}\n--- output ---\n{self.output}")

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first match of ``pattern`` in the output; fails fast if the child exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = regex.search(b"".join(self._chunks).decode(errors="replace"))
                if match:
                    return match
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._changed.wait(min(left, 1.0))
        if self._eof:  # the pipe closed: the exit code follows at once
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        why = "exited" if self._eof else f"still silent after {timeout:g} s"
        raise self.fail(f"{why} before printing {pattern!r}")

    def check_running(self) -> None:
        """Fail with the output if the child has already exited."""
        if self.proc.poll() is not None:
            self._reader.join(5)
            raise self.fail("exited early")

    def wait(self, timeout: float = 30) -> int:
        """The exit code; kills the child and fails with its output if it outlives ``timeout``."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self.fail(f"did not exit within {timeout:g} s (killed)") from None
        self._reader.join(5)
        return code

    def expect_exit(self, code: int, timeout: float = 30) -> None:
        """Wait for the exit and fail with the output unless it is ``code``."""
        got = self.wait(timeout)
        if got != code:
            raise self.fail(f"expected exit code {code}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send ``sig`` and return the exit code (fails with the output on a timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the child if it still runs and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def spawn(
    args: Sequence[str | Path],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    label: str | None = None,
    sigint_ignored: bool = False,
) -> Iterator[Child]:
    """Start ``args``; the child is killed when the block ends, however it ends.

    ``sigint_ignored`` starts it the way a shell starts a background job (``cmd &``): with
    SIGINT ignored until the child installs its own handler.
    """
    proc = subprocess.Popen(
        [str(a) for a in args],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )
    child = Child(proc, label or " ".join(str(a) for a in args[:6]))
    try:
        yield child
    finally:
        child.kill()
        assert proc.stdout is not None
        proc.stdout.close()


def run(
    args: Sequence[str | Path],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` with text output captured; a timeout fails with what was printed."""
    try:
        return subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        raise ChildFailed(
            f"{' '.join(str(a) for a in args[:6])} did not exit within {timeout:g} s (killed)"
            f"\n--- stdout ---\n{out or ''}\n--- stderr ---\n{err or ''}"
        ) from None


__all__ = ["SMITHERS", "Child", "ChildFailed", "run", "spawn"]
