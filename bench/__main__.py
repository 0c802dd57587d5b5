"""``python -m bench [scenario ...] [--quick]``: run scenarios, write bench/results/<ts>.json,
print a markdown table and draw docs/performance-chart.png."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.common import REPO, raise_nofile
from bench.scenarios import SCENARIOS


def machine() -> dict[str, Any]:
    mem_kib = 0
    cpu = ""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    vers = {}
    dists = ("uvicorn", "uvloop", "httptools", "starlette", "websockets", "h11", "httpx")
    for dist in (*dists, "pydantic", "anyio"):
        try:
            vers[dist] = version(dist)
        except Exception:
            vers[dist] = None
    import sqlite3

    vers["sqlite"] = sqlite3.sqlite_version
    try:
        import subprocess

        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "smithers_core"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        vers["git"] = head + (" (smithers_core modified)" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memoryGiB": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "nofileHard": raise_nofile(),
        "versions": vers,
    }


def fmt(v: Any, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if unit in ("ms", "KiB"):
        return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"
    return f"{v:,.0f}"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | metric | Smithers | baseline | ratio | target | met |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for name, res in results.items():
        if "error" in res:
            lines.append(f"| {name} | failed: {res['error']} | | | | | |")
            continue
        for r in res["rows"]:
            sut, base = fmt(r["sut"], r["unit"]), fmt(r["base"], r["unit"])
            if "p99" in r:
                sut += f" / {fmt(r['p99'][0], 'ms')}"
                base += f" / {fmt(r['p99'][1], 'ms')}" if r["p99"][1] is not None else ""
            ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else "-"
            met = {True: "yes", False: "**no**", None: "-"}[r.get("met")]
            lines.append(
                f"| {name} | {r['metric']} | {sut} | {base} | {ratio} | "
                f"{r.get('target', '')} | {met} |"
            )
    notes = [f"- {name}: {n}" for name, res in results.items() for n in res.get("notes", [])]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no chart", file=sys.stderr)
        return
    labels, ratios, colors, goals = [], [], [], []
    for name, res in results.items():
        for r in res.get("rows", []):
            if r.get("ratio") and r.get("base"):
                labels.append(f"{name}: {r['metric']}")
                ratios.append(r["ratio"])
                goals.append(r.get("goal"))
                colors.append({True: "tab:green", False: "tab:red"}.get(r.get("met"), "tab:gray"))
    if not labels:
        return
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.6))
    y = list(range(len(labels)))[::-1]
    ax.barh(y, ratios, color=colors)
    ax.axvline(1.0, color="black", linewidth=0.8)
    for yi, v, g in zip(y, ratios, goals, strict=True):
        ax.text(v, yi, f" {v:.2f}x", va="center", fontsize=8)
        if g:
            ax.plot([g, g], [yi - 0.4, yi + 0.4], color="black", linewidth=2)
    ax.plot([], [], color="black", linewidth=2, label="target")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("Smithers / baseline (higher is better; memory and latency inverted)")
    ax.set_title(title, fontsize=9, wrap=True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument(
        "scenario",
        nargs="*",
        choices=[*SCENARIOS, []],
        metavar="scenario",
        help=f"any of {', '.join(SCENARIOS)} (default: all)",
    )
    ap.add_argument("--quick", action="store_true", help="fewer and shorter runs (< 3 min)")
    ap.add_argument("--no-chart", action="store_true", help="do not write the PNG chart")
    args = ap.parse_args(argv)
    raise_nofile()
    names = args.scenario or list(SCENARIOS)
    began = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {}
    for name in names:
        t0 = time.monotonic()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = SCENARIOS[name](args.quick)
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["seconds"] = round(time.monotonic() - t0, 1)
        print(f"   {name} took {results[name]['seconds']} s", file=sys.stderr, flush=True)
    total = round(time.monotonic() - began, 1)
    doc = {
        "timestamp": stamp,
        "quick": args.quick,
        "totalSeconds": total,
        "machine": machine(),
        "scenarios": results,
    }
    out = REPO / "bench" / "results" / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    md = table(results)
    print(md)
    print(f"\n{'quick' if args.quick else 'full'} run, {total} s; results: {out}")
    if not args.no_chart:
        m = doc["machine"]
        chart(
            results,
            REPO / "docs" / "performance-chart.png",
            f"Smithers for Python vs bare baselines ({'--quick, ' if args.quick else ''}"
            f"{m['cores']} cores, Python {m['python']}, {stamp})",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
