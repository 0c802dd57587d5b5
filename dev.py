#!/usr/bin/env python3
"""Set up and run the project: ``python3 dev.py run``, ``python3 dev.py test`` or
``python3 dev.py bench [--quick] [scenario ...]``.

Each creates ``.venv`` (if needed) and installs smithers-core plus every plugin distribution in
editable mode, then runs the main job, the quality gates and the whole test suite, or the
benchmarks (after installing the ``bench`` extra and wrk). Only Python 3.11+ with pip is assumed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".dev-stamp"


def plugin_dirs() -> list[Path]:
    """Every plugin distribution: the named top-level folders and each folder under plugins/."""
    named = [ROOT / n for n in ("smithers_auth_token", "smithers_auth_jwt", "smithers_ui")]
    more = sorted(p for p in (ROOT / "plugins").glob("*") if p.is_dir())
    return [p for p in named + more if (p / "pyproject.toml").is_file()]


def run(*cmd: str | Path, check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT)
    if check and code != 0:
        sys.exit(code)
    return code


def check_system() -> None:
    """Say what the system lacks: bubblewrap (``bwrap``), which the bash tool confines with."""
    if sys.platform.startswith("linux") and shutil.which("bwrap") is None:
        print(
            "note: bubblewrap (bwrap) is missing: the bash tool refuses to run without it"
            " (and its tests fail). Install it: apt-get install bubblewrap",
            file=sys.stderr,
            flush=True,
        )


def setup() -> None:
    """Create .venv and install everything editable; skipped when nothing changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit("Python 3.11 or newer is required")
    check_system()
    projects = [ROOT, *plugin_dirs()]
    digest = hashlib.sha256()
    for project in projects:
        digest.update(str(project.relative_to(ROOT)).encode())
        digest.update((project / "pyproject.toml").read_bytes())
    wanted = digest.hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PY.exists():
        print(f"creating {VENV.name}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    args: list[str | Path] = [PY, "-m", "pip", "install", "--quiet", "-e", ".[dev]"]
    for project in projects[1:]:
        args += ["-e", str(project.relative_to(ROOT))]
    run(*args)
    STAMP.write_text(wanted)


def test(extra: list[str]) -> int:
    setup()
    src = ["smithers_core", "tests", "dev.py"] + [str(p.relative_to(ROOT)) for p in plugin_dirs()]
    for p in ("bench", "examples"):
        if (ROOT / p).is_dir():
            src.append(p)
    run(BIN / "ruff", "check", *src)
    run(BIN / "ruff", "format", "--check", *src)
    mypy_targets = ["smithers_core"] + [
        str(p.relative_to(ROOT) / "src") for p in plugin_dirs() if (p / "src").is_dir()
    ]
    run(BIN / "mypy", *mypy_targets)
    # Branch coverage of core and the plugins, with `[tool.coverage.report] fail_under` as the
    # floor. Exit code 5 ("no tests collected") is a failure too: the suite is never empty.
    return run(PY, "-m", "pytest", "-q", "--cov", "--cov-report=term", *extra, check=False)


WRK_HELP = (
    "wrk, the HTTP load generator of the bench's http scenario, is not installed. Install it"
    " from your distribution's packages (Debian/Ubuntu: sudo apt-get install -y wrk; macOS:"
    " brew install wrk), or run other scenarios (python3 dev.py bench ws fanout)."
)


def ensure_wrk() -> bool:
    """wrk on PATH, installed from Debian packages when missing and running as root."""
    if shutil.which("wrk"):
        return True
    apt = shutil.which("apt-get")
    if not (apt and hasattr(os, "geteuid") and os.geteuid() == 0):
        return False
    # a fresh image often has no package lists yet: update once if the install fails
    if run(apt, "install", "-y", "wrk", check=False) != 0:
        run(apt, "update", check=False)
        run(apt, "install", "-y", "wrk", check=False)
    return shutil.which("wrk") is not None


def bench(extra: list[str]) -> int:
    """Install the ``bench`` extra and wrk, then ``python -m bench`` with ``extra``."""
    setup()
    stamp = VENV / ".bench-stamp"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        run(PY, "-m", "pip", "install", "--quiet", "-e", ".[bench]")
        stamp.write_text(wanted)
    scenarios = [a for a in extra if not a.startswith("-")]
    if not ensure_wrk():
        print(WRK_HELP, file=sys.stderr, flush=True)
        if not scenarios or "http" in scenarios:
            return 2
    return run(PY, "-m", "bench", *extra, check=False)


def main_job(extra: list[str]) -> int:
    """The main job: a gateway with the example workflows on the embedded SQLite store."""
    setup()
    args = extra or ["--config", "examples/smithers.toml", "--session-token"]
    return run(BIN / "smithers", "gateway", *args, check=False)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0 if argv else 2
    command, extra = argv[0], argv[1:]
    if command == "setup":
        setup()
        return 0
    if command == "test":
        return test(extra)
    if command == "run":
        return main_job(extra)
    if command == "bench":
        return bench(extra)
    print(f"unknown command {command!r}; use run, test, bench or setup", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
