"""What the scenarios share: the system-under-test and client child processes, the
orchestrator's own HTTP/RPC calls, histograms and result rows (issue 8's targets)."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from bench.common import Child
from bench.servers import TOKEN

GW_TOKEN = f"{TOKEN}-0"


def tokens(n: int) -> list[str]:
    return [f"{TOKEN}-{i}" for i in range(n)]


def merge_hist(hists: list[dict[str, int]]) -> Counter[int]:
    out: Counter[int] = Counter()
    for h in hists:
        for k, v in h.items():
            out[int(k)] += v
    return out


def hist_pct(h: Counter[int], q: float) -> float:
    """q-quantile of a 0.1 ms histogram, in milliseconds."""
    total = sum(h.values())
    if not total:
        return float("nan")
    rank, seen = q * total, 0
    for k in sorted(h):
        seen += h[k]
        if seen >= rank:
            return (k + 0.5) / 10
    return max(h) / 10


def row(
    metric: str,
    sut: float,
    base: float | None = None,
    *,
    unit: str = "",
    target: str = "",
    met: bool | None = None,
    higher: bool = True,
    goal: float | None = None,
) -> dict[str, Any]:
    ratio = None
    if base:
        ratio = sut / base if higher else base / sut if sut else None
    return {
        "metric": metric,
        "sut": sut,
        "base": base,
        "ratio": ratio,
        "unit": unit,
        "target": target,
        "met": met,
        "goal": goal,  # the target as a ratio in the chart's units, if it is one
    }


def start(kind: str, opts: dict[str, Any] | None = None, timeout: float = 60) -> tuple[Child, Any]:
    child = Child("bench.servers", kind, opts or {})
    try:
        return child, child.expect("READY", timeout)
    except BaseException:
        child.close()
        raise


def clients(kind: str, opts_list: list[dict[str, Any]]) -> list[Child]:
    return [Child("bench.clients", kind, o, name=f"{kind}#{i}") for i, o in enumerate(opts_list)]


def close_all(children: list[Child]) -> None:
    for c in children:
        c.close()


def split(n: int, procs: int = 2) -> list[tuple[int, int]]:
    """(offset, count) of ``n`` sockets over ``procs`` client processes."""
    base, extra = divmod(n, procs)
    out, off = [], 0
    for i in range(procs):
        cnt = base + (1 if i < extra else 0)
        if cnt:
            out.append((off, cnt))
        off += cnt
    return out


_HTTP: httpx.Client | None = None


def http() -> httpx.Client:
    """One keep-alive client for the orchestrator's own calls (building a client costs tens
    of milliseconds, which must not land inside a timed interval)."""
    global _HTTP
    if _HTTP is None:
        _HTTP = httpx.Client(timeout=30)
    return _HTTP


def rpc(url: str, method: str, params: Any, token: str = GW_TOKEN) -> Any:
    r = http().post(
        f"{url}/v1/rpc/{method}", json=params, headers={"authorization": f"Bearer {token}"}
    )
    body = r.json()
    if not body.get("ok"):
        raise RuntimeError(f"{method}: {body}")
    return body["payload"]


def wait_status(url: str, run_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rpc(url, "getRun", {"runId": run_id})["status"] == status:
            return
        time.sleep(0.02)
    raise TimeoutError(f"run {run_id} never reached {status}")


def profiled(srv: Child, label: str, fn: Any) -> tuple[Any, str]:
    """Run ``fn()`` with pyinstrument on the server's event-loop thread."""
    path = Path(tempfile.gettempdir()) / f"bench-{label}-{int(time.time())}.txt"
    srv.call("prof_start")
    try:
        out = fn()
    finally:
        srv.call(f"prof_stop {path}", 120)
    return out, path.read_text() if path.exists() else ""


# --------------------------------------------------------------------------- stores

PG_VAR = "SMITHERS_BENCH_POSTGRES_URL"
PG_SKIPPED = f"PostgreSQL rows skipped: ${PG_VAR} is unset (python3 dev.py bench sets it)"


def stores() -> list[str]:
    """The stores to measure: ``sqlite`` always, ``postgres`` when ``$PG_VAR`` is set."""
    return ["sqlite", "postgres"] if os.environ.get(PG_VAR) else ["sqlite"]


STORE_LABEL = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def postgres_url() -> str:
    """``$PG_VAR`` with a fresh ``?schema=bench_<hex>`` (the store creates it on open)."""
    parts = urlsplit(os.environ[PG_VAR])
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", f"bench_{uuid.uuid4().hex[:12]}"))
    return urlunsplit((*parts[:3], urlencode(query), parts.fragment))


def drop_schema(url: str) -> None:
    """Drop the schema a bench pass created (``bench_*`` only); best effort."""
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    schema = q.pop("schema", "")
    if not schema.startswith("bench_"):
        return
    try:
        import psycopg
        from psycopg import sql

        conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(q), ""))
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    except Exception as exc:  # a leftover schema is harmless
        print(f"note: could not drop schema {schema}: {exc}")
