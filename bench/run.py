"""``make bench``: how much time skyroute's router adds, in process and over HTTP.

Two measurements (see decision.py and overhead.py for the method of each):

1. decision latency in process: signals + decide over the AcmeShop traffic
   sample, p50/p99 in microseconds;
2. the router's added latency over calling the provider directly, with a
   zero-latency simulator, at concurrency 1 and 32: p50/p99 side by side and
   throughput.

Results: a rich table on the terminal, ``bench-out/bench.json`` and a chart
``bench-out/bench.svg``. For comparison, the anchors' measurement of the
LiteLLM proxy (one worker) on this kind of 2-core machine: about 10 ms added
at concurrency 1 and about 60 ms at concurrency 10, throughput topping out
near 160 requests/s.

Usage: ``.venv/bin/python bench/run.py [--quick]`` from the repository root.
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

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chart import bar_chart
from decision import decision_latency
from overhead import measure, start_stack

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-out"
LITELLM = {"c1_added_ms": 10.0, "c10_added_ms": 60.0, "max_rps": 160.0}


def _run_overhead(quick: bool) -> dict[str, Any]:
    requests = {1: 300, 32: 1000} if quick else {1: 1500, 32: 5000}
    stack = start_stack(REPO, OUT)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover
            return asyncio.run(measure(stack, (1, 32), requests))
        return uvloop.run(measure(stack, (1, 32), requests))
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
        ("canary_split_us", "canary split (sticky hash, 5% rollout)"),
    ):
        v = d[key]
        t.add_row(label, f"{v['p50']:.1f}", f"{v['p99']:.1f}", f"{v['mean']:.1f}")
    return t


def _overhead_table(o: dict[str, Any]) -> Table:
    t = Table(title="Router added latency (zero-latency provider, closed loop)")
    for col in (
        "concurrency",
        "path",
        "p50 ms",
        "p99 ms",
        "added p50 ms",
        "added p99 ms",
        "throughput rps",
    ):
        t.add_column(col, justify="right" if col != "path" else "left")
    for c, row in o.items():
        for name, v in row.items():
            t.add_row(
                c,
                name,
                f"{v['p50_ms']:.2f}",
                f"{v['p99_ms']:.2f}",
                f"{v['added_p50_ms']:.2f}" if "added_p50_ms" in v else "-",
                f"{v['added_p99_ms']:.2f}" if "added_p99_ms" in v else "-",
                f"{v['throughput_rps']:.0f}",
            )
        t.add_section()
    t.caption = (
        f"LiteLLM proxy, same kind of machine (anchors): ~{LITELLM['c1_added_ms']:.0f} ms "
        f"added at concurrency 1, ~{LITELLM['c10_added_ms']:.0f} ms at concurrency 10, "
        f"~{LITELLM['max_rps']:.0f} rps max"
    )
    return t


def _chart(o: dict[str, Any]) -> str:
    groups = []
    for c, row in o.items():
        b, a = row["router:baseline"], row["router:acmeshop"]
        groups.append(
            (
                f"concurrency {c}",
                [
                    ("baseline p50", b["added_p50_ms"]),
                    ("baseline p99", b["added_p99_ms"]),
                    ("acmeshop p50", a["added_p50_ms"]),
                    ("acmeshop p99", a["added_p99_ms"]),
                ],
            )
        )
    groups.append(
        (
            "LiteLLM proxy (anchors)",
            [("LiteLLM c=1", LITELLM["c1_added_ms"]), ("LiteLLM c=10", LITELLM["c10_added_ms"])],
        )
    )
    return bar_chart(
        "skyroute router: added latency over a direct call (ms); LiteLLM: c=1 and c=10", groups
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    args = p.parse_args(argv)
    console = Console() if Console().is_terminal else Console(width=120)
    OUT.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    console.print("[bold]1/2[/] decision latency in process ...")
    decision = decision_latency(
        REPO / "examples" / "acmeshop",
        requests=500 if args.quick else 2000,
        passes=2 if args.quick else 5,
    )
    console.print(_decision_table(decision))
    console.print(
        "[bold]2/2[/] router added latency over HTTP (control plane, router, "
        "simulator as processes) ..."
    )
    overhead = _run_overhead(args.quick)
    console.print(_overhead_table(overhead))
    doc = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "decision": decision,
        "overhead": overhead,
        "litellm_reference": LITELLM,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    (OUT / "bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    (OUT / "bench.svg").write_text(_chart(overhead))
    console.print(f"results: {OUT / 'bench.json'}, chart: {OUT / 'bench.svg'} ({doc['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
