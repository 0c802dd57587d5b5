"""Scenarios 3 and 6: event fan-out to WebSocket subscribers (with signals) and SSE
fan-out, each against its baseline."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Child, median
from bench.orchestration import (
    PG_SKIPPED,
    clients,
    close_all,
    drop_schema,
    hist_pct,
    http,
    merge_hist,
    postgres_url,
    profiled,
    row,
    rpc,
    split,
    start,
    stores,
    tokens,
    wait_status,
)
from bench.servers import TOKEN

# --------------------------------------------------------------------------- 3. fan-out


def _fan_round(
    side: str,
    srv: Child,
    url: str,
    toks: list[str],
    subs: int,
    n: int,
    timeout: float,
    rate: int = 0,
) -> dict[str, Any]:
    if side == "sut":
        inp = {"n": n, "rate": rate}
        run_id = rpc(url, "launchRun", {"workflow": "logger", "input": inp})["runId"]
        wait_status(url, run_id, "waiting-event")
    else:
        run_id = "bare-run"
    cs = clients(
        "fanout",
        [
            {
                "url": url,
                "tokens": toks,
                "offset": off,
                "sockets": cnt,
                "runId": run_id,
                "expect": n,
                "timeout": timeout,
            }
            for off, cnt in split(subs)
        ],
    )
    try:
        for c in cs:
            c.expect("READY", 120)
        t0 = time.time()
        if side == "sut":
            rpc(url, "submitSignal", {"runId": run_id, "signalName": "go", "data": {}})
        else:
            srv.call(f"broadcast {n} {rate}")
        res = [c.expect("RESULT", timeout + 60) for c in cs]
    finally:
        close_all(cs)
    hist = merge_hist([r["hist"] for r in res])
    first = min(r["first"] for r in res if r["first"]) if any(r["first"] for r in res) else t0
    last = max(r["last"] for r in res)
    total = sum(r["deliveries"] for r in res)
    return {
        "deliveriesPerS": total / max(1e-6, last - first),
        "deliveries": total,
        "expected": subs * n,
        "p50": hist_pct(hist, 0.5),
        "p99": hist_pct(hist, 0.99),
        "resyncs": sum(r["resyncs"] for r in res),
        "streamErrors": [e for r in res for e in r["streamErrors"]],
        "completeSubscribers": sum(r["complete"] for r in res),
        "spanS": last - first,
        "triggerToLastS": last - t0,
        "deflate": sum(r.get("deflate", 0) for r in res),
    }


def _signal_round(
    url: str, toks: list[str], subs: int, prof: Child | None = None, out: Any = None
) -> list[float]:
    """Latency from submitSignal to each subscriber holding run.completed; with ``prof``
    the server is profiled from just before the signal to the last receipt (text in out)."""
    run_id = rpc(url, "launchRun", {"workflow": "sig", "input": {}})["runId"]
    wait_status(url, run_id, "waiting-event")
    cs = clients(
        "fanout",
        [
            {
                "url": url,
                "tokens": toks,
                "offset": off,
                "sockets": cnt,
                "runId": run_id,
                "mode": "subscribe",
                "timeout": 30,
            }
            for off, cnt in split(subs)
        ],
    )
    try:
        for c in cs:
            c.expect("READY", 120)
        time.sleep(0.2)
        path = Path(tempfile.gettempdir()) / f"bench-signal-{int(time.time())}.txt"
        if prof is not None:
            prof.call("prof_start")
        t0 = time.time()
        rpc(url, "submitSignal", {"runId": run_id, "signalName": "go", "data": {}})
        res = [c.expect("RESULT", 90) for c in cs]
        if prof is not None:
            prof.call(f"prof_stop {path}", 120)
            out["text"] = path.read_text()
    finally:
        close_all(cs)
    return sorted((t - t0) * 1000 for r in res for t in r["completed"])


def fanout(quick: bool) -> dict[str, Any]:
    div = 10 if quick else 1
    reps = 1 if quick else 3
    caps = 1024
    n100, n1000 = 10_000 // div, 1_000 // div
    rate, n_paced = 100, (150 if quick else 500)
    toks = tokens(40)
    queue_limit = 16_384  # a burst of 10,000 events must not trip the slow-consumer cut-off
    # nor the gateway-wide outbound budget: 100 subscribers x 10,000 frames of about 300 bytes
    # can queue about 300 MB while the clients, on the same two cores, catch up; the default
    # 128 MiB would close the slowest readers (1013), which is what it is for
    outbound_total = 1024 * 1024 * 1024
    gw_opts = {
        "tokens": 40,
        "stream_caps": caps,
        "queue_limit": queue_limit,
        "outbound_total": outbound_total,
        "seed": False,
    }
    gw, ready = start("gateway", gw_opts)
    base, bready = start("bare_ws", {"hello": {"protocol": 1}})
    keys = ("sut", "base", "sutPaced", "basePaced", "sut1000", "base1000")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    sig: list[list[float]] = []
    sig1: list[float] = []
    profiles: dict[str, str] = {}
    sides = (("sut", gw, ready["url"], toks), ("base", base, bready["url"], [TOKEN]))
    try:
        for rep in range(reps):
            for side, srv, url, tk in sides if rep % 2 == 0 else sides[::-1]:
                runs[side].append(_fan_round(side, srv, url, tk, 100, n100, 60 + n100 / 100))
                runs[side + "Paced"].append(
                    _fan_round(side, srv, url, tk, 100, n_paced, 60 + n_paced / rate, rate)
                )
        for side, srv, url, tk in sides:
            runs[side + "1000"].append(_fan_round(side, srv, url, tk, 1000, n1000, 60 + n1000 / 20))
        for _ in range(reps if not quick else 2):
            sig.append(_signal_round(ready["url"], toks, 100))
        _, profiles["burst100"] = profiled(
            gw, "fanout", lambda: _fan_round("sut", gw, ready["url"], toks, 100, 500, 60)
        )
        box: dict[str, str] = {}
        _signal_round(ready["url"], toks, 100, gw, box)
        profiles["signal100"] = box.get("text", "")
        sig1 += [_signal_round(ready["url"], toks, 1)[0] for _ in range(3)]
    finally:
        close_all([gw, base])

    def med(key: str, side: str) -> float:
        return median([r[key] for r in runs[side]])

    s, b = med("deliveriesPerS", "sut"), med("deliveriesPerS", "base")
    p99 = med("p99", "sutPaced")
    sig_p50 = median([lat[len(lat) // 2] for lat in sig if lat])
    sig_p99 = median([lat[min(len(lat) - 1, int(len(lat) * 0.99))] for lat in sig if lat])
    s1000, b1000 = med("deliveriesPerS", "sut1000"), med("deliveriesPerS", "base1000")
    neg = {side: max(r["deflate"] for r in runs[side]) for side in ("sut1000", "base1000")}
    rows = [
        row(
            f"Fan-out deliveries/s (100 subs, burst of N={n100})",
            s,
            b,
            unit="deliv/s",
            target=">= 0.5x bare",
            goal=0.5,
            met=s / b >= 0.5,
        ),
        row(
            "Fan-out p99 ms at that burst (queueing)",
            med("p99", "sut"),
            med("p99", "base"),
            unit="ms",
            higher=False,
            target="reported",
        ),
        row(
            f"Fan-out p99 emit-to-receipt ms (100 subs, {rate} events/s)",
            p99,
            med("p99", "basePaced"),
            unit="ms",
            target="< 25 ms (issue 8)",
            met=p99 < 25,
            higher=False,
        ),
        row(
            f"Fan-out deliveries/s (1,000 subs, burst of N={n1000})",
            s1000,
            b1000,
            unit="deliv/s",
            target=">= 0.5x bare",
            goal=0.5,
            met=s1000 / b1000 >= 0.5,
        ),
        row(
            "Fan-out p99 ms (1,000 subs, burst)",
            med("p99", "sut1000"),
            med("p99", "base1000"),
            unit="ms",
            target="reported",
            higher=False,
        ),
        row(
            "submitSignal -> run.completed p50 ms (100 subs)",
            sig_p50,
            None,
            unit="ms",
            target="< 20 ms (upstream 94)",
            met=sig_p50 < 20,
        ),
    ]
    rows[2]["p50"] = (med("p50", "sutPaced"), med("p50", "basePaced"))
    rows[-1]["p99"] = (sig_p99, None)
    rows.append(
        row(
            "submitSignal -> run.completed ms (1 subscriber)",
            median(sig1),
            None,
            unit="ms",
            target="reported",
        )
    )
    for r in rows:
        r["store"] = "sqlite"
    notes = [
        f"Gateway on {ready['stack']}; baseline: bare {bready['stack']} broadcast. Clients"
        f" offer permessage-deflate; negotiated on {neg['sut1000']} of 1,000 gateway"
        f" sockets and {neg['base1000']} of 1,000 baseline sockets."
    ]
    pg: dict[str, Any] = {}
    if "postgres" in stores():
        sizes = {"n100": n100, "nPaced": n_paced, "rate": rate, "n1000": n1000}
        base = {k: med(k.split(".")[1], k.split(".")[0]) for k in BASE_KEYS}
        pg_rows, pg = _fan_postgres(gw_opts, toks, reps, sizes, base)
        rows += pg_rows
    else:
        print(f"note: {PG_SKIPPED}", file=sys.stderr, flush=True)
        notes.append(PG_SKIPPED)
    return {
        "rows": rows,
        "notes": notes,
        "details": {
            "postgres": pg,
            "stacks": {"sut": ready["stack"], "base": bready["stack"]},
            "deflateNegotiated": neg,
            "runs": runs,
            "signalLatencyMs": sig,
            "signalLatency1SubMs": sig1,
            "streamCaps": caps,
            "tokensPer": 32,
            "clientProcesses": 2,
            "queueLimit": queue_limit,
            "n100": n100,
            "n1000": n1000,
            "pacedRate": rate,
            "pacedN": n_paced,
            "profiles": profiles,
        },
    }


BASE_KEYS = ("base.deliveriesPerS", "base.p99", "basePaced.p99", "base1000.deliveriesPerS")


def _fan_postgres(
    gw_opts: dict[str, Any],
    toks: list[str],
    reps: int,
    sz: dict[str, int],
    base: dict[str, float],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The fan-out rounds again on a gateway whose store is a fresh PostgreSQL schema; the
    baselines (no store) are the SQLite pass's, from the same invocation."""
    url = postgres_url()
    runs: dict[str, list[dict[str, Any]]] = {"sut": [], "sutPaced": [], "sut1000": []}
    sig: list[list[float]] = []
    sig1: list[float] = []
    try:
        gw, ready = start("gateway", {**gw_opts, "db": url})
        u = ready["url"]
        try:
            n100, n_paced, rate, n1000 = sz["n100"], sz["nPaced"], sz["rate"], sz["n1000"]
            for _ in range(reps):
                runs["sut"].append(_fan_round("sut", gw, u, toks, 100, n100, 60 + n100 / 100))
                runs["sutPaced"].append(
                    _fan_round("sut", gw, u, toks, 100, n_paced, 60 + n_paced / rate, rate)
                )
            runs["sut1000"].append(_fan_round("sut", gw, u, toks, 1000, n1000, 60 + n1000 / 20))
            for _ in range(max(reps, 2)):
                sig.append(_signal_round(u, toks, 100))
            sig1 += [_signal_round(u, toks, 1)[0] for _ in range(3)]
        finally:
            gw.close()
    finally:
        drop_schema(url)

    def med(key: str, side: str) -> float:
        return median([r[key] for r in runs[side]])

    lab = "PostgreSQL"
    s, s1000 = med("deliveriesPerS", "sut"), med("deliveriesPerS", "sut1000")
    rows = [
        row(
            f"Fan-out deliveries/s (100 subs, burst of N={n100}, {lab})",
            s,
            base["base.deliveriesPerS"],
            unit="deliv/s",
            target=">= 0.5x bare",
            goal=0.5,
            met=s / base["base.deliveriesPerS"] >= 0.5,
        ),
        row(
            f"Fan-out p99 ms at that burst ({lab})",
            med("p99", "sut"),
            base["base.p99"],
            unit="ms",
            higher=False,
        ),
        row(
            f"Fan-out p99 emit-to-receipt ms (100 subs, {rate} events/s, {lab})",
            med("p99", "sutPaced"),
            base["basePaced.p99"],
            unit="ms",
            higher=False,
        ),
        row(
            f"Fan-out deliveries/s (1,000 subs, burst of N={n1000}, {lab})",
            s1000,
            base["base1000.deliveriesPerS"],
            unit="deliv/s",
            target=">= 0.5x bare",
            goal=0.5,
            met=s1000 / base["base1000.deliveriesPerS"] >= 0.5,
        ),
        row(
            f"submitSignal -> run.completed p50 ms (100 subs, {lab})",
            median([lat[len(lat) // 2] for lat in sig if lat]),
            None,
            unit="ms",
        ),
        row(
            f"submitSignal -> run.completed ms (1 subscriber, {lab})",
            median(sig1),
            None,
            unit="ms",
        ),
    ]
    rows[2]["p50"] = (med("p50", "sutPaced"), None)
    rows[-2]["p99"] = (
        median([lat[min(len(lat) - 1, int(len(lat) * 0.99))] for lat in sig if lat]),
        None,
    )
    for r in rows:
        r["store"] = "postgres"
    return rows, {"runs": runs, "signalLatencyMs": sig, "signalLatency1SubMs": sig1}


# --------------------------------------------------------------------------- 6. SSE fan-out


def _sse_round(side: str, srv: Child, url: str, subs: int, n: int, rate: int = 0) -> dict[str, Any]:
    port = int(url.rsplit(":", 1)[1])
    if side == "sut":
        h = {"authorization": f"Bearer {TOKEN}"}
        r = http().post(
            f"{url}/v1/runs",
            json={"workflowPath": "wf/sse_logger.py", "input": {"n": n, "rate": rate}},
            headers=h,
            timeout=30,
        )
        run_id = r.json()["runId"]
        deadline = time.monotonic() + 30
        while (
            http().get(f"{url}/v1/runs/{run_id}", headers=h).json().get("status")
            != "waiting-approval"
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("SSE run never parked on its approval")
            time.sleep(0.02)
    else:
        run_id = "bare-run"
    cs = clients(
        "sse",
        [
            {
                "port": port,
                "path": f"/v1/runs/{run_id}/events",
                "sockets": cnt,
                "expect": n,
                "token": TOKEN,
                "timeout": 120,
            }
            for _off, cnt in split(subs)
        ],
    )
    try:
        for c in cs:
            c.expect("READY", 120)
        t0 = time.time()
        if side == "sut":
            http().post(
                f"{url}/v1/runs/{run_id}/nodes/gate/approve",
                json={},
                headers={"authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
        else:
            srv.call(f"broadcast {n} {rate}")
        res = [c.expect("RESULT", 200) for c in cs]
    finally:
        close_all(cs)
    hist = merge_hist([r["hist"] for r in res])
    total = sum(r["deliveries"] for r in res)
    last = max(r["last"] for r in res)
    return {
        "deliveriesPerS": total / max(1e-6, last - t0),
        "deliveries": total,
        "expected": subs * n,
        "p50": hist_pct(hist, 0.5),
        "p99": hist_pct(hist, 0.99),
        "completeSubscribers": sum(r["complete"] for r in res),
    }


def sse(quick: bool) -> dict[str, Any]:
    reps, n, subs = (1, 200, 200) if quick else (3, 1000, 200)
    rate, n_paced = 100, (100 if quick else 300)
    srv, ready = start("server")
    base, bready = start("bare_sse")
    runs: dict[str, list[dict[str, Any]]] = {"sut": [], "base": [], "sutPaced": [], "basePaced": []}
    try:
        for rep in range(reps):
            order = [("sut", srv, ready["url"]), ("base", base, bready["url"])]
            for side, child, url in order if rep % 2 == 0 else order[::-1]:
                runs[side].append(_sse_round(side, child, url, subs, n))
                runs[side + "Paced"].append(_sse_round(side, child, url, subs, n_paced, rate))
    finally:
        close_all([srv, base])

    def med(key: str, side: str) -> float:
        return median([r[key] for r in runs[side]])

    rows = [
        row(
            f"SSE deliveries/s ({subs} clients, burst of N={n})",
            med("deliveriesPerS", "sut"),
            med("deliveriesPerS", "base"),
            unit="deliv/s",
            target="reported",
        ),
        row(
            "SSE p99 ms at that burst (queueing)",
            med("p99", "sut"),
            med("p99", "base"),
            unit="ms",
            higher=False,
            target="reported",
        ),
        row(
            f"SSE p99 emit-to-receipt ms ({subs} clients, {rate} events/s)",
            med("p99", "sutPaced"),
            med("p99", "basePaced"),
            unit="ms",
            higher=False,
            target="reported",
        ),
    ]
    rows[-1]["p50"] = (med("p50", "sutPaced"), med("p50", "basePaced"))
    details = {
        "runs": runs,
        "reps": reps,
        "n": n,
        "clients": subs,
        "pacedRate": rate,
        "pacedN": n_paced,
        "stacks": {"sut": ready["stack"], "base": bready["stack"]},
    }
    note = f"start_server against bare Starlette SSE on {bready['stack']}."
    return {"rows": rows, "notes": [note], "details": details}
