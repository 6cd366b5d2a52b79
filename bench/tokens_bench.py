"""The prompt-token estimate's cost per request, by kind of request.

The estimate (``skyroute.router.tokens``) runs once per request inside the
signals. This times it on the decision benchmark's prompt mix (20 to 6,000
characters of English, :mod:`prompt_mix`), on Chinese and Japanese prompts
of the same lengths, and on a tools-only request (two tool schemas), with the
thread's CPU clock (what the estimate costs a core, whatever the neighbours
on a shared machine do), and prints p50 / p99 in µs per kind, next to the old
estimate (characters / 4 over text parts) for scale.

Usage: ``.venv/bin/python bench/tokens_bench.py [--requests N] [--json]``
(run by ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prompt_mix import prompt_mix

from skyroute.cli.demo_report import percentile
from skyroute.router import tokens

ZH = "你好，我上周二订购了一双跑步鞋，但是物流页面仍然显示包裹在仓库等待发货。请问什么时候能送到？"
JA = "先週の火曜日にランニングシューズを注文しましたが、配送状況のページではまだ倉庫で待機中です。"
TOOL = {
    "type": "function",
    "function": {
        "name": "update_shipment",
        "description": "Change the delivery date or address of a shipment.",
        "parameters": {
            "type": "object",
            "properties": {
                "shipment_id": {"type": "string", "description": "The shipment's id"},
                "days": {"type": "integer", "minimum": 0},
            },
            "required": ["shipment_id"],
        },
    },
}
Request = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def _old(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
    chars = 0
    for m in messages:
        c = m.get("content")
        chars += len(c) if isinstance(c, str) else 0
    return chars // 4 + 1


def _requests(n: int) -> dict[str, list[Request]]:
    mix = prompt_mix(n)
    user = [[{"role": "user", "content": p}] for p, _ in mix]
    return {
        "english mix": [(m, []) for m in user],
        "chinese": [([{"role": "user", "content": (ZH * 80)[: len(p)]}], []) for p, _ in mix],
        "japanese": [([{"role": "user", "content": (JA * 80)[: len(p)]}], []) for p, _ in mix],
        "tools only": [([{"role": "user", "content": ""}], [TOOL, TOOL]) for _ in mix],
    }


def _time(
    fn: Callable[[list[dict[str, Any]], list[dict[str, Any]]], int], reqs: list[Request]
) -> list[float]:
    clock = time.CLOCK_THREAD_CPUTIME_ID
    out = []
    for messages, tools in reqs:
        t0 = time.clock_gettime_ns(clock)
        fn(messages, tools)
        out.append((time.clock_gettime_ns(clock) - t0) / 1000.0)
    return out


def run(n: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for kind, reqs in _requests(n).items():
        _time(tokens.estimate, reqs[:50])  # warm up
        new, old = _time(tokens.estimate, reqs), _time(_old, reqs)
        results[kind] = {
            "p50_us": percentile(new, 50),
            "p99_us": percentile(new, 99),
            "old_p50_us": percentile(old, 50),
            "old_p99_us": percentile(old, 99),
        }
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = run(args.requests)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"token estimate, CPU µs per request ({args.requests} requests per kind)")
    print(f"{'kind':12} {'p50':>7} {'p99':>7}   {'old p50':>7} {'old p99':>7}")
    for kind, r in results.items():
        print(
            f"{kind:12} {r['p50_us']:7.1f} {r['p99_us']:7.1f}   "
            f"{r['old_p50_us']:7.1f} {r['old_p99_us']:7.1f}"
        )


if __name__ == "__main__":
    main()
