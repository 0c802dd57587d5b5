"""Scenarios 1 and 2: HTTP RPC (wrk against the gateway and bare Starlette) and WebSocket
RPC round trips."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import median
from bench.orchestration import (
    GW_TOKEN,
    clients,
    close_all,
    hist_pct,
    merge_hist,
    profiled,
    row,
    split,
    start,
    tokens,
)
from bench.servers import TOKEN

# --------------------------------------------------------------------------- 1. HTTP RPC

WRK_RE = re.compile(r"Requests/sec:\s+([\d.]+)")


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v


def wrk(url: str, token: str, body: str, duration: int, conns: int = 64) -> dict[str, Any]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    script.unlink()
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))  # "1.56s " ends in a space
    count = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(WRK_RE.search(out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(lat.get("50", "")),
        "p99": _ms(lat.get("99", "")),
        "requests": int(count.group(1)) if count else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socketErrors": errors.group(1) if errors else None,
    }


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# issue 14's targets: the gateway / bare Starlette on httptools + uvloop
HTTP_TARGETS = {"getRun": 0.75, "health": 0.85}


def http_rpc(quick: bool) -> dict[str, Any]:
    """The gateway against bare Starlette on uvicorn[standard]'s stack (httptools + uvloop),
    the baseline the targets use, and on h11 + asyncio (an extra, reported row)."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: python3 dev.py bench installs it")
    reps, dur = (2, 2) if quick else (3, 8)
    gw, ready = start("gateway", {"tokens": 2})
    payloads = {"getRun": ready["getRun"], "health": ready["health"]}
    base, bready = start("bare_http", {"payloads": payloads})
    h11, hready = start("bare_http", {"payloads": payloads, "http": "h11", "loop": "asyncio"})
    body = json.dumps({"runId": ready["runId"]})
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for rep in range(reps):
            order = [
                ("sut", gw, ready["url"], GW_TOKEN),
                ("base", base, bready["url"], TOKEN),
                ("h11", h11, hready["url"], TOKEN),
            ]
            for side, srv, url, tok in order if rep % 2 == 0 else order[::-1]:
                for method in ("getRun", "health"):
                    cpu0 = process_cpu(srv.pid)
                    res = wrk(
                        f"{url}/v1/rpc/{method}", tok, body if method == "getRun" else "{}", dur
                    )
                    # server CPU per request: the figure that survives a busy machine
                    cpu = process_cpu(srv.pid) - cpu0
                    res["cpuMsPer1k"] = 1e6 * cpu / res["requests"] if res["requests"] else None
                    runs.setdefault(f"{side}.{method}", []).append(res)
    finally:
        close_all([gw, base, h11])
    rows = []
    for method, target_ratio in HTTP_TARGETS.items():
        s = runs[f"sut.{method}"]
        b = runs[f"base.{method}"]
        srps, brps = median([r["rps"] for r in s]), median([r["rps"] for r in b])
        ratio = srps / brps
        rows.append(
            row(
                f"HTTP {method} req/s (64 conns)",
                srps,
                brps,
                unit="req/s",
                target=f">= {target_ratio}x bare",
                goal=target_ratio,
                met=ratio >= target_ratio,
            )
        )
        rows.append(
            row(
                f"HTTP {method} p50 / p99 ms",
                median([r["p50"] for r in s]),
                median([r["p50"] for r in b]),
                unit="ms",
                higher=False,
            )
        )
        rows[-1]["p99"] = (median([r["p99"] for r in s]), median([r["p99"] for r in b]))
    for method in HTTP_TARGETS:
        rows.append(
            row(
                f"HTTP {method} server CPU ms per 1,000 req",
                median([r["cpuMsPer1k"] or float("nan") for r in runs[f"sut.{method}"]]),
                median([r["cpuMsPer1k"] or float("nan") for r in runs[f"base.{method}"]]),
                unit="ms",
                higher=False,
                target="reported",
            )
        )
    for method in HTTP_TARGETS:
        rows.append(
            row(
                f"HTTP {method} req/s, baseline on h11 + asyncio",
                median([r["rps"] for r in runs[f"sut.{method}"]]),
                median([r["rps"] for r in runs[f"h11.{method}"]]),
                unit="req/s",
                target="reported",
            )
        )
    stacks = {"sut": ready["stack"], "base": bready["stack"], "h11": hready["stack"]}
    return {
        "rows": rows,
        "notes": [
            f"Gateway on {stacks['sut']}; baseline: bare Starlette on {stacks['base']}"
            f" (extra rows: on {stacks['h11']}); wrk -t2 -c64, keep-alive."
        ],
        "details": {
            "stacks": stacks,
            "runs": runs,
            "getRunBytes": ready["getRunBytes"],
            "healthBytes": ready["healthBytes"],
            "reps": reps,
            "seconds": dur,
            "connections": 64,
            "tool": "wrk -t2",
        },
    }


# --------------------------------------------------------------------------- 2. WebSocket RPC


def _ws_round(url: str, toks: list[str], run_id: str, sockets: int, dur: float) -> dict[str, Any]:
    cs = clients(
        "ws_rpc",
        [
            {
                "url": url,
                "tokens": toks,
                "offset": off,
                "sockets": cnt,
                "inflight": 4,
                "duration": dur,
                "runId": run_id,
            }
            for off, cnt in split(sockets)
        ],
    )
    try:
        for c in cs:
            c.expect("READY", 120)
        for c in cs:
            c.send("go")
        res = [c.expect("RESULT", dur + 90) for c in cs]
    finally:
        close_all(cs)
    hist = merge_hist([r["hist"] for r in res])
    return {
        "rps": sum(r["responses"] / r["elapsed"] for r in res),
        "p50": hist_pct(hist, 0.5),
        "p99": hist_pct(hist, 0.99),
        "errors": sum(r["errors"] for r in res),
        "deflate": sum(r.get("deflate", 0) for r in res),
    }


def ws_rpc(quick: bool) -> dict[str, Any]:
    reps, dur, n = (1, 3, 200) if quick else (3, 8, 200)
    gw, ready = start("gateway", {"tokens": 8})
    hello = {"protocol": 1, "features": ["streaming", "runs"], "policy": {"heartbeatMs": 15000}}
    base, bready = start("bare_ws", {"getRun": ready["getRun"], "hello": hello})
    runs: dict[str, list[dict[str, Any]]] = {"sut": [], "base": []}
    try:
        for rep in range(reps):
            order = [("sut", ready["url"], tokens(8)), ("base", bready["url"], [TOKEN])]
            for side, url, toks in order if rep % 2 == 0 else order[::-1]:
                runs[side].append(_ws_round(url, toks, ready["runId"], n, dur))
        # an extra, unmeasured round under pyinstrument for the report
        _, profile = profiled(
            gw, "ws", lambda: _ws_round(ready["url"], tokens(8), ready["runId"], n, min(dur, 3))
        )
    finally:
        close_all([gw, base])
    s, b = median([r["rps"] for r in runs["sut"]]), median([r["rps"] for r in runs["base"]])
    r1 = row(
        f"WS getRun responses/s ({n} sockets x 4)",
        s,
        b,
        unit="resp/s",
        target=">= 1.0x bare",
        goal=1.0,
        met=s / b >= 1.0,
    )
    r2 = row(
        "WS getRun p50 ms",
        median([r["p50"] for r in runs["sut"]]),
        median([r["p50"] for r in runs["base"]]),
        unit="ms",
        higher=False,
    )
    r2["p99"] = (median([r["p99"] for r in runs["sut"]]), median([r["p99"] for r in runs["base"]]))
    neg = {side: max(r["deflate"] for r in runs[side]) for side in runs}
    return {
        "rows": [r1, r2],
        "notes": [
            f"Gateway on {ready['stack']}; baseline: bare {bready['stack']}. Clients offer"
            f" permessage-deflate; negotiated on {neg['sut']} of {n} gateway sockets and"
            f" {neg['base']} of {n} baseline sockets."
        ],
        "details": {
            "stacks": {"sut": ready["stack"], "base": bready["stack"]},
            "deflateNegotiated": neg,
            "runs": runs,
            "profile": profile,
            "reps": reps,
            "seconds": dur,
            "clientProcesses": 2,
        },
    }
