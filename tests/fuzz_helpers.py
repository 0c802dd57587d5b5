"""Fuzzing a live HTTP host from its OpenAPI document with schemathesis, and reading its logs.

- :func:`run_schemathesis` runs schemathesis's CLI (``st run``) against a document URL with a
  bounded number of examples per operation and a fixed seed, and returns the exit code, the
  printed output and the JSON report; :func:`assert_clean_fuzz` fails with that output unless
  every operation was tested and no check failed.
- :func:`assert_clean_log` fails when a host's log text holds a traceback or an error line;
  :func:`captured_logs` collects that text for a host running in this process.

A sketch, for a gateway started by the test (``url`` and the token are the test's)::

    result = run_schemathesis(f"{url}/v1/api/openapi.json", tmp_path,
                              headers={"Authorization": "Bearer op-token"})
    assert_clean_fuzz(result)
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.processes import run

ST = Path(sys.executable).with_name("st")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
"""The default checks: no 5xx; every status, content type and body is the documented one."""
PHASES = ("examples", "coverage", "fuzzing", "stateful")
"""The default phases: the document's examples, boundary values, random cases, then sequences
of calls linked by the ids one answer gives the next (links schemathesis infers)."""

_TROUBLE = re.compile(
    r"Traceback \(most recent call last\)"
    r"|Exception in ASGI application"
    r"|Task exception was never retrieved"
    r"|exception was never retrieved"
    r"|^(ERROR|CRITICAL)\b",
    re.MULTILINE,
)


@dataclass
class FuzzResult:
    """One ``st run``: its exit code, what it printed and its JSON report."""

    returncode: int
    output: str
    report: dict[str, Any]

    def summary(self) -> str:
        """The exit code and the output, for an assertion message."""
        return f"st run exited {self.returncode}\n--- output ---\n{self.output}"


def run_schemathesis(
    schema_url: str,
    workdir: Path,
    *,
    headers: Mapping[str, str] | None = None,
    max_examples: int = 20,
    seed: int = 1,
    checks: Sequence[str] = CHECKS,
    phases: Sequence[str] = PHASES,
    config: str | None = None,
    request_timeout: float = 10,
    timeout: float = 120,
    include_document: bool = True,
    extra_args: Sequence[str] = (),
) -> FuzzResult:
    """Fuzz every operation of the document at ``schema_url`` (served by the host under test,
    whose origin is the base URL) with ``st run``; ``workdir`` receives the report.

    Deterministic as far as the host is: a fixed ``seed``, one worker, no example database.
    ``headers`` go with every request (``{"Authorization": "Bearer <token>"}``); ``config``
    is the text of a ``schemathesis.toml`` (dictionaries of known ids, per-operation
    settings); ``extra_args`` are more ``st run`` options. schemathesis leaves out the
    operation that serves the document itself unless a filter names it: with
    ``include_document`` (the default) every path is named, so it is fuzzed too. A run slower
    than ``timeout`` seconds fails with what it printed (:class:`~tests.processes.ChildFailed`).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "schemathesis-report.json"
    args: list[str | Path] = [ST, "--no-color"]
    if config is not None:
        config_file = workdir / "schemathesis.toml"
        config_file.write_text(config)
        args += ["--config-file", config_file]
    args += [
        "run",
        schema_url,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--phases",
        ",".join(phases),
        "--checks",
        ",".join(checks),
        "--generation-database",
        "none",
        "--request-timeout",
        str(request_timeout),
        "--report",
        "json",
        "--report-json-path",
        report,
        *(["--include-path-regex", "^/"] if include_document else []),
        *extra_args,
    ]
    for name, value in (headers or {}).items():
        args += ["--header", f"{name}: {value}"]
    done = run(args, cwd=workdir, timeout=timeout)
    output = done.stdout + done.stderr
    data: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {}
    return FuzzResult(done.returncode, output, data)


def assert_clean_fuzz(result: FuzzResult, *, operations: int | None = None) -> None:
    """Every operation tested (``operations`` of them when given), none errored, every check
    passed; the message is schemathesis's own account of what failed."""
    assert result.report, f"no schemathesis report\n{result.summary()}"
    ops = result.report["operations"]
    cases = result.report["test_cases"]
    assert result.returncode == 0, result.summary()
    assert result.report["complete"] and result.report["stop_reason"] == "completed", (
        result.summary()
    )
    assert ops["tested"] == ops["selected"] == ops["total"], result.summary()
    if operations is not None:
        assert ops["total"] == operations, result.summary()
    assert ops["errored"] == 0 and cases["errored"] == 0, result.summary()
    assert cases["with_failures"] == 0 and not result.report["failures"], result.summary()
    assert not result.report["errors"], result.summary()


def assert_clean_log(text: str) -> None:
    """No traceback, unretrieved task exception or ``ERROR`` line in a host's log ``text``
    (warnings, such as a refused malformed request, are fine)."""
    found = _TROUBLE.search(text)
    if found is not None:
        start = max(0, found.start() - 2000)
        raise AssertionError(f"the host logged a failure:\n{text[start : found.start() + 4000]}")


class LogCapture(logging.Handler):
    """Every record at WARNING and above, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        """Everything captured so far, one record after another."""
        return "\n".join(self.lines)


@contextmanager
def captured_logs(*names: str) -> Iterator[LogCapture]:
    """Capture WARNING+ records of the root logger and of ``names`` (uvicorn's loggers by
    default, which do not propagate) while a host runs in this process."""
    capture = LogCapture()
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names or ("uvicorn",))]
    for logger in loggers:
        logger.addHandler(capture)
    try:
        yield capture
    finally:
        for logger in loggers:
            logger.removeHandler(capture)


__all__ = [
    "CHECKS",
    "PHASES",
    "FuzzResult",
    "LogCapture",
    "assert_clean_fuzz",
    "assert_clean_log",
    "captured_logs",
    "run_schemathesis",
]
