#!/usr/bin/env python3
"""Set up and run the project: ``python3 dev.py run``, ``python3 dev.py test`` or
``python3 dev.py bench [--quick] [scenario ...]``.

Each creates ``.venv`` (if needed) and installs smithers-core plus every plugin distribution in
editable mode, then runs the main job, the quality gates and the whole test suite, or the
benchmarks (after installing the ``bench`` extra and wrk). Only Python 3.11+ with pip is assumed.
When PostgreSQL's server binaries are present, ``test`` and ``bench`` start a throwaway cluster
on 127.0.0.1 and pass its URL on (``SMITHERS_TEST_POSTGRES_URL``, ``SMITHERS_BENCH_POSTGRES_URL``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import venv
from collections.abc import Iterator
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


def run(*cmd: str | Path, check: bool = True, env: dict[str, str] | None = None) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)
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


# --- throwaway PostgreSQL ------------------------------------------------------------------------

PG_SERVER = ("initdb", "pg_ctl", "postgres")
PG_USER, PG_DB = "smithers", "smithers_test"
TEST_PG_VAR, BENCH_PG_VAR = "SMITHERS_TEST_POSTGRES_URL", "SMITHERS_BENCH_POSTGRES_URL"
PG_SKIPPED = (
    "PostgreSQL server binaries not found: the PostgreSQL test suites are SKIPPED"
    " (install postgresql to run them, e.g. apt-get install postgresql)"
)
PG_MISSING_IN_CI = (
    "error: PostgreSQL server binaries (initdb, pg_ctl, postgres) not found and CI is set:"
    " CI never skips the PostgreSQL test suites. Install them: apt-get install postgresql"
)
PG_SETTINGS = {  # a throwaway cluster: durability off, room for many test connections
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
}


class PostgresError(Exception):
    """The throwaway cluster could not be set up."""


def postgres_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: found on PATH, else ``pg_config
    --bindir``, else the newest ``/usr/lib/postgresql/*/bin``; None when there is none."""
    candidates: list[Path] = []
    found = [shutil.which(name) for name in PG_SERVER]
    if found[0] and all(found):
        candidates += [Path(found[0]).resolve().parent, Path(found[0]).parent]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))

    def version(path: Path) -> tuple[int, ...]:
        parts = path.parent.name.split(".")
        return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in PG_SERVER):
            return folder
    return None


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def as_server_user(cmd: list[str]) -> list[str]:
    """``cmd`` as the unprivileged ``postgres`` OS user when running as root (initdb, pg_ctl
    and postgres refuse to run as root), else unchanged."""
    if not is_root():
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd]
    raise PostgresError("running as root needs runuser or setpriv to drop to the postgres user")


def pg_run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program without the caller's PG* variables; output is captured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    try:
        return subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PostgresError(f"{cmd[-1]!r}... timed out after {timeout:.0f} s") from exc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_cluster(bindir: Path, tmp: Path) -> str:
    data, log = tmp / "data", tmp / "postgres.log"
    if is_root():
        import pwd  # Unix only

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresError(
                "running as root needs the 'postgres' OS user (the postgresql package creates it)"
            ) from None
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER]
    initdb += ["--no-sync", "-E", "UTF8", "--locale=C"]
    done = pg_run(as_server_user(initdb), tmp, 120)
    if done.returncode != 0:
        raise PostgresError(f"initdb failed:\n{done.stdout}{done.stderr}")
    settings = dict(PG_SETTINGS, unix_socket_directories=f"'{tmp}'")
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\n# dev.py: throwaway test cluster\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60"]
    for _attempt in range(3):  # the port may be taken between picking and binding it
        port = free_port()
        done = pg_run(as_server_user([*pg_ctl, "-o", f"-p {port}", "start"]), tmp, 90)
        if done.returncode == 0:
            break
    else:
        logged = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise PostgresError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}{logged}")
    createdb = str(bindir / "createdb") if (bindir / "createdb").exists() else "createdb"
    cmd = [createdb, "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, PG_DB]
    done = pg_run(cmd, tmp, 60)
    if done.returncode != 0:
        raise PostgresError(f"createdb failed:\n{done.stdout}{done.stderr}")
    return f"postgresql://{PG_USER}@127.0.0.1:{port}/{PG_DB}"


def _stop_cluster(bindir: Path, tmp: Path) -> None:
    """Stop the cluster if it runs (fast, then immediate, then SIGKILL); never raises."""
    data = tmp / "data"
    pidfile = data / "postmaster.pid"
    for mode in ("fast", "immediate"):
        if not pidfile.exists():
            return
        cmd = [str(bindir / "pg_ctl"), "-D", str(data), "stop", "-m", mode, "-w", "-t", "30"]
        with contextlib.suppress(PostgresError, OSError):
            if pg_run(as_server_user(cmd), tmp, 45).returncode == 0:
                return
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind, so the cluster is stopped and removed


@contextlib.contextmanager
def postgres_cluster(bindir: Path | None = None) -> Iterator[str | None]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a free port, in a fresh temporary folder;
    yields its URL (None without server binaries). On exit, also on errors, Ctrl+C and SIGTERM,
    the cluster is stopped and the folder removed."""
    bindir = bindir or postgres_bindir()
    if bindir is None:
        yield None
        return
    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    tmp = Path(tempfile.mkdtemp(prefix="smithers-pg-"))
    try:
        print(f"+ postgres: starting a throwaway cluster ({bindir}) in {tmp}", flush=True)
        url = _start_cluster(bindir, tmp)
        print(f"+ postgres: {url}", flush=True)
        yield url
    finally:
        _stop_cluster(bindir, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"+ postgres: cluster stopped, {tmp} removed", flush=True)
        if main_thread and old is not None:
            signal.signal(signal.SIGTERM, old)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def test(extra: list[str]) -> int:
    env = dict(os.environ)
    preset = env.pop(TEST_PG_VAR, "")
    bindir = None if preset else postgres_bindir()
    if not preset and bindir is None and in_ci():
        sys.exit(PG_MISSING_IN_CI)
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
    pytest: list[str | Path] = [PY, "-m", "pytest", "-q", "--cov", "--cov-report=term", *extra]
    if preset:  # the caller's own PostgreSQL: used as is, nothing is started
        print(f"+ postgres: {TEST_PG_VAR} is set, using it", flush=True)
        return run(*pytest, check=False, env={**env, TEST_PG_VAR: preset})
    if bindir is None:
        print(f"\n*** {PG_SKIPPED} ***\n", file=sys.stderr, flush=True)
        code = run(*pytest, check=False, env=env)
        print(f"\n*** {PG_SKIPPED} ***", file=sys.stderr, flush=True)
        return code
    try:
        with postgres_cluster(bindir) as url:
            return run(*pytest, check=False, env={**env, TEST_PG_VAR: url or ""})
    except PostgresError as exc:
        sys.exit(f"error: the throwaway PostgreSQL cluster could not be started: {exc}")


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
    cmd: list[str | Path] = [PY, "-m", "bench", *extra]
    if os.environ.get(BENCH_PG_VAR):  # the caller's own PostgreSQL: used as is
        return run(*cmd, check=False)
    env = {k: v for k, v in os.environ.items() if k != BENCH_PG_VAR}
    try:
        with postgres_cluster() as url:
            if url is None:
                print("note: no PostgreSQL server binaries: benchmarking without PostgreSQL")
            return run(*cmd, check=False, env={**env, BENCH_PG_VAR: url} if url else env)
    except PostgresError as exc:
        print(f"note: no PostgreSQL for the bench, its cluster failed to start: {exc}")
        return run(*cmd, check=False, env=env)


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
