"""``make bench``: how much time skyroute's router adds, in process and over HTTP.

Two measurements (see decision.py and overhead.py for the method of each):

1. decision latency in process: signals + decide over the AcmeShop traffic
   sample, p50/p99 in microseconds, then over a realistic prompt mix (see
   decision_mix.py; bar: p99 at most 100 µs);
2. the router's added latency over calling the provider directly, with a
   zero-latency simulator, through both doors (HTTP chat completions and gRPC
   ``Complete``) at 1, 10, 32 and 64 concurrent clients: req/s and added
   p50/p99 side by side, and the bars (throughput after the peak falls by at
   most 10%, at most 0.5 ms added p50 at one client, gRPC at least as fast as
   HTTP) checked and printed.

Results: a rich table on the terminal, ``bench-out/bench.json`` and a chart
``bench-out/bench.svg``. For comparison, the anchors' measurement of the
LiteLLM proxy (one worker) on this kind of 2-core machine: about 10 ms added
at concurrency 1 and about 60 ms at concurrency 10, throughput topping out
near 160 requests/s.

Usage: ``.venv/bin/python bench/run.py [--quick] [--workers N] [--only overhead]``
from the repository root (``--workers`` is the router's, see ``skyroute router``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

try:
    from rich.console import Console
    from rich.table import Table
except ImportError:  # pragma: no cover - rich is a dependency; plain text without it
    from plaintable import Console, Table  # type: ignore[assignment]

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decision_mix import decision_mix_latency, report_lines

from chart import bar_chart
from decision import decision_latency
from overhead import CONCURRENCIES, ROUTED, measure, start_stack, verdict

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-out"
LITELLM = {"c1_added_ms": 10.0, "c10_added_ms": 60.0, "max_rps": 160.0}


def _run_overhead(quick: bool, workers: int) -> dict[str, Any]:
    per_level = 1000 if quick else 4000
    requests = {c: (per_level // 3 if c == 1 else per_level) for c in CONCURRENCIES}
    stack = start_stack(REPO, OUT, workers)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover
            return asyncio.run(measure(stack, CONCURRENCIES, requests))
        return uvloop.run(measure(stack, CONCURRENCIES, requests))
    finally:
        stack.stop()


def _decision_table(d: dict[str, Any]) -> Table:
    t = Table(title=f"Decision latency in process ({d['requests']} decisions)")
    t.add_column("work")
    t.add_column("p50 µs", justify="right")
    t.add_column("p99 µs", justify="right")
    t.add_column("mean µs", justify="right")
    for key, label in (
        ("signals_and_decide_us", "signals + decide"),
        ("decide_only_us", "decide only"),
        ("decide_no_embedding_us", "decide, embedding classifier off"),
        ("decide_thompson_us", "decide, Thompson sampling over quality"),
        ("canary_split_us", "canary split (sticky hash, 5% rollout)"),
    ):
        v = d[key]
        t.add_row(label, f"{v['p50']:.1f}", f"{v['p99']:.1f}", f"{v['mean']:.1f}")
    return t


def _overhead_table(o: dict[str, Any], workers: int) -> Table:
    t = Table(
        title=f"Router throughput and added latency, both doors ({workers} worker(s); "
        "zero-latency provider, closed loop)"
    )
    cols = ("clients", "path", "req/s", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms")
    for col in (*cols, "router CPU µs/req"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for c, row in o.items():
        for name, v in row.items():
            t.add_row(
                c,
                name,
                f"{v['throughput_rps']:.0f}",
                f"{v['p50_ms']:.2f}",
                f"{v['p99_ms']:.2f}",
                f"{v['added_p50_ms']:.2f}" if "added_p50_ms" in v else "-",
                f"{v['added_p99_ms']:.2f}" if "added_p99_ms" in v else "-",
                f"{v['router_cpu_us']:.0f}" if "added_p99_ms" in v else "-",
            )
        t.add_section()
    t.caption = (
        "added: over calling the provider directly over HTTP (for gRPC too); router CPU: "
        "user+system time of the router process(es) per request. "
        f"LiteLLM proxy, same kind of machine (anchors): ~{LITELLM['c1_added_ms']:.0f} ms "
        f"added at 1 client, ~{LITELLM['c10_added_ms']:.0f} ms at 10, "
        f"~{LITELLM['max_rps']:.0f} rps max"
    )
    return t


def _verdict_table(v: dict[str, Any]) -> Table:
    t = Table(title="Bars: drop after peak <= 10%, added p50 at 1 client <= 0.5 ms, gRPC >= HTTP")
    cols = ("path", "peak req/s (clients)", "drop after peak", "added p50 @1 ms", "gRPC/HTTP req/s")
    for col in cols:
        t.add_column(col, justify="left" if col == "path" else "right")
    for name, *_ in ROUTED:
        r = v[name]
        ratios = v.get(f"grpc_vs_http:{name.split(':')[1]}", {}) if name.startswith("grpc") else {}
        t.add_row(
            name,
            f"{r['peak_rps']:.0f} ({r['peak_at']})",
            _mark(f"{100 * r['drop_after_peak']:.1f}%", r["drop_after_peak"] <= 0.10),
            _mark(f"{r['added_p50_c1_ms']:.2f}", r["added_p50_c1_ms"] <= 0.5),
            " ".join(_mark(f"{c}:{x:.2f}", x >= 1.0) for c, x in ratios.items()),
        )
    return t


def _mark(text: str, ok: bool) -> str:
    return f"[green]{text}[/]" if ok else f"[red]{text} ✗[/]"


def _chart(o: dict[str, Any]) -> str:
    groups = []
    for c, row in o.items():
        groups.append(
            (
                f"{c} clients",
                [(f"{name} p50", row[name]["added_p50_ms"]) for name, *_ in ROUTED],
            )
        )
    groups.append(
        (
            "LiteLLM proxy (anchors)",
            [("LiteLLM c=1", LITELLM["c1_added_ms"]), ("LiteLLM c=10", LITELLM["c10_added_ms"])],
        )
    )
    return bar_chart(
        "skyroute router: added p50 over a direct call (ms); LiteLLM: c=1 and c=10", groups
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    p.add_argument("--workers", type=int, default=1, help="router worker processes (default 1)")
    p.add_argument(
        "--only", choices=["decision", "overhead"], default=None, help="run one measurement"
    )
    args = p.parse_args(argv)
    console = Console() if Console().is_terminal else Console(width=120)
    OUT.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    decision: dict[str, Any] = {}
    overhead: dict[str, Any] = {}
    bars: dict[str, Any] = {}
    if args.only in (None, "decision"):
        console.print("[bold]1/2[/] decision latency in process ...")
        decision = decision_latency(
            REPO / "examples" / "acmeshop",
            requests=500 if args.quick else 2000,
            passes=2 if args.quick else 5,
        )
        console.print(_decision_table(decision))
        decision["realistic_mix"] = decision_mix_latency(1000 if args.quick else 4000)
        console.print("\n".join(report_lines(decision["realistic_mix"])), markup=False)
    if args.only in (None, "overhead"):
        console.print(
            "[bold]2/2[/] router added latency, HTTP and gRPC doors (control plane, router, "
            "simulator as processes) ..."
        )
        overhead = _run_overhead(args.quick, args.workers)
        bars = verdict(overhead)
        console.print(_overhead_table(overhead, args.workers))
        console.print(_verdict_table(bars))
    doc = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "decision": decision,
        "workers": args.workers,
        "overhead": overhead,
        "bars": bars,
        "litellm_reference": LITELLM,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    (OUT / "bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    if overhead:
        (OUT / "bench.svg").write_text(_chart(overhead))
    console.print(f"results: {OUT / 'bench.json'}, chart: {OUT / 'bench.svg'} ({doc['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
