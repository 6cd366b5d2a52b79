"""Decision time on realistic prompts: the embedding classifier's worst case, measured.

:mod:`decision` times the AcmeShop demo traffic, short support questions
that mostly hit a keyword. Real traffic is longer and mostly misses: it
falls through the keywords and patterns to the embedding classifier, which
embeds the prompt's first characters. This times signals + decide over
:func:`prompt_mix.prompt_mix` (tens to thousands of characters, a quarter
keyword hits, rare words in every prompt) against the AcmeShop policy as
the control plane compiles it, and reports p50/p99 overall, by how the
intent was found, and by prompt length. The bar: p99 at most 100 µs.

Two clocks per decision: the wall clock, and the thread's CPU time
(``CLOCK_THREAD_CPUTIME_ID``: time the decision ran on a core, not time the
scheduler gave the core to another process). On a shared two-core machine
the wall-clock p99 measures the neighbours; the bar is checked on CPU time,
and both are printed.

Usage: ``.venv/bin/python bench/decision_mix.py [--requests N]`` (also run by
``bench/run.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prompt_mix import prompt_mix

from skyroute.cli.demo_report import percentile
from skyroute.control.policy.compiler import compile_folder
from skyroute.router.decide import decide, signals_from_messages
from skyroute.router.table import build_table

REPO = Path(__file__).resolve().parents[1]
P99_BAR_US = 100.0
_LENGTHS = ((0, 100), (100, 400), (400, 1500), (1500, 10**9))


def reference_loop_ms() -> float:
    """CPU ms of a fixed pure-Python loop: how fast this machine runs Python right now."""
    best = float("inf")
    for _ in range(3):
        t0 = time.thread_time_ns()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, (time.thread_time_ns() - t0) / 1e6)
    return best


def _summary(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50": percentile(xs, 50), "p99": percentile(xs, 99)}


def decision_mix_latency(requests: int = 4000, passes: int = 3) -> dict[str, Any]:
    """p50/p99 µs (CPU time) of signals + decide over the mix, by source and length."""
    table = build_table(compile_folder(REPO / "examples" / "acmeshop"))
    policy = table.policy("acmeshop")
    assert policy is not None
    prompts = prompt_mix(requests)
    convs = [[{"role": "user", "content": text}] for text, _ in prompts]
    times: list[float] = []
    walls: list[float] = []
    by_source: dict[str, list[float]] = defaultdict(list)
    by_length: dict[str, list[float]] = defaultdict(list)
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    # What reading the CPU clock itself costs, taken off every sample.
    probe = [-(cpu() - cpu()) for _ in range(1000)]
    overhead = sorted(probe)[len(probe) // 2]
    gc.collect()
    gc.disable()  # a collection in the middle of one sample is not the decision's cost
    try:
        for p in range(passes):
            for messages in convs:
                t0, c0 = clock(), cpu()
                d = decide(policy, signals_from_messages(messages, False))
                c1, t1 = cpu(), clock()
                if p == 0:
                    continue  # the first pass fills the per-word memos: steady state only
                us = max(0.0, (c1 - c0 - overhead) / 1000.0)
                times.append(us)
                walls.append((t1 - t0) / 1000.0)
                by_source[d.intent_source.split(":", 1)[0]].append(us)
                chars = len(messages[0]["content"])
                lo, hi = next(b for b in _LENGTHS if b[0] <= chars < b[1])
                by_length[f"{lo}-{hi if hi < 10**9 else ''} chars"].append(us)
    finally:
        gc.enable()
    all_ = _summary(times)
    return {
        "requests": len(times),
        "prompt_chars": {
            "p50": percentile([len(t) for t, _ in prompts], 50),
            "max": max(len(t) for t, _ in prompts),
        },
        "all_us": all_,
        "all_wall_us": _summary(walls),
        "by_source_us": {k: _summary(v) for k, v in sorted(by_source.items())},
        "by_length_us": {k: _summary(v) for k, v in by_length.items()},
        "bar_p99_us": P99_BAR_US,
        "reference_loop_ms": reference_loop_ms(),
        "meets_bar": all_["p99"] <= P99_BAR_US,
    }


def report_lines(r: dict[str, Any]) -> list[str]:
    a = r["all_us"]
    lines = [
        f"decision on a realistic prompt mix ({r['requests']} decisions, prompt median "
        f"{r['prompt_chars']['p50']:.0f} chars, max {r['prompt_chars']['max']}): "
        f"CPU p50 {a['p50']:.1f} µs, p99 {a['p99']:.1f} µs "
        f"(bar p99 <= {r['bar_p99_us']:.0f} µs: {'met' if r['meets_bar'] else 'MISSED'}); "
        f"wall clock p50 {r['all_wall_us']['p50']:.1f} µs, p99 {r['all_wall_us']['p99']:.1f} µs",
        f"  machine: a 1e6-step Python loop took {r['reference_loop_ms']:.0f} ms of CPU "
        "(figures scale with it)",
    ]
    for group in ("by_source_us", "by_length_us"):
        for k, v in r[group].items():
            lines.append(f"  {k:>16}: n={v['n']:<6} p50 {v['p50']:6.1f} µs  p99 {v['p99']:6.1f} µs")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    r = decision_mix_latency(args.requests)
    print(json.dumps(r, indent=2) if args.json else "\n".join(report_lines(r)))


if __name__ == "__main__":
    main()
