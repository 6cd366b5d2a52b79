"""Replay bench for the learned signal: quality recovered against strong-model share.

A replay of the learning loop with the real parts in process: the control
plane's compiler builds the snapshot of a policy with ``spec.learnedSignal``
(strong and weak in their own pools; a rule sends a prompt to the strong
pool when its win probability is at least 0.5, with 10% exploration); the
router's table and ``decide`` route each prompt of the simulator's
hidden-quality set (:mod:`skyroute.simulator.hidden_quality`: the gap
depends on what a prompt asks and its length, not on its intent, which is
the same for all); the answer's feedback is drawn from the hidden quality of
the model that served it; the control plane's fitter
(:mod:`skyroute.control.learning.winmodel`) learns from the outcome's
reported features and that feedback, and every ``PUSH_EVERY`` events its
weights are compiled into a new snapshot and a new routing table, as the
learning loop pushes them.

At checkpoints (0 feedback events: "before learning", then more) the
held-out prompts' win probabilities (without exploration) are ranked and the
top share sent to the strong model, for shares from 0 to 100%: quality
recovered is ``(Q - Q_weak) / (Q_strong - Q_weak)``; random routing at the
same share recovers the share itself. Writes ``bench-out/learned_signal.json``
and ``.svg``. Nothing is trained, tuned or tested on RouteLLM's published
per-prompt evaluation files.

    .venv/bin/python bench/learned_signal.py [--quick] [--docs]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from skyroute.control.learning.winmodel import WinModels
from skyroute.control.limits import SeriesCap
from skyroute.control.policy.compiler import compile_folder, snapshot_version
from skyroute.learned import quantize
from skyroute.router.decide import decide
from skyroute.router.signals import signals_from_messages
from skyroute.router.table import PolicyTable, build_table
from skyroute.simulator.hidden_quality import Prompt, curve, prompts
from skyroute.v1 import distribution_pb2, snapshot_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart import line_chart

try:
    from rich.console import Console
    from rich.table import Table
except ImportError:  # pragma: no cover - rich is a dependency; plain columns without it
    from plaintable import Console, Table  # type: ignore[assignment]

OUT = Path(__file__).resolve().parents[1] / "bench-out"
PUSH_EVERY = 100
SHARES = [i / 20 for i in range(21)]

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: strong}
spec:
  models:
    - {name: strong, provider: openai, endpoint: "http://127.0.0.1:9/openai/v1",
       pricing: {inputPerMTok: 10.0, outputPerMTok: 30.0}, quality: {"*": 0.92}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: weak}
spec:
  models:
    - {name: weak, provider: openai, endpoint: "http://127.0.0.1:9/openai/v1",
       pricing: {inputPerMTok: 0.5, outputPerMTok: 1.5}, quality: {"*": 0.6}}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: learned}
spec:
  default: true
  defaultPool: weak
  rules:
    - {name: strong-when-it-wins, match: {minWinProbability: 0.5}, pool: strong}
  adaptation: {enabled: true, intervalS: 1}
  learnedSignal: {strong: strong, weak: weak, exploration: 0.2, minFeedback: 50}
"""


def _policy(snapshot: snapshot_pb2.Snapshot) -> PolicyTable:
    table = build_table(snapshot).policy("learned")
    assert table is not None
    return table


def _wins(table: PolicyTable, ps: list[Prompt]) -> list[float]:
    out = []
    for p in ps:
        s = signals_from_messages([{"role": "user", "content": p.text}], False)
        out.append(decide(table, s, draw=lambda: 1.0).win_probability)
    return out


def _decide_us(table: PolicyTable, ps: list[Prompt], passes: int = 5) -> float:
    """p50 microseconds of ``decide`` per prompt (signals extracted and embedded first,
    as the intent classifier or the cache would have; the embedding is shared)."""
    asks = [signals_from_messages([{"role": "user", "content": p.text}], False) for p in ps]
    for s in asks:
        decide(table, s, draw=lambda: 1.0)  # embeds once per request, as a router does
    times = []
    for _ in range(passes):
        for s in asks:
            t = time.perf_counter()
            decide(table, s, draw=lambda: 1.0)
            times.append(time.perf_counter() - t)
    times.sort()
    return round(times[len(times) // 2] * 1e6, 2)


def replay(events: int, checkpoints: list[int], seed: int = 7, test_n: int = 600) -> dict[str, Any]:
    """Route, feed back and refit for ``events`` events; the curve at each checkpoint."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "pools.yaml").write_text(POOLS)
        (Path(d) / "policy.yaml").write_text(POLICY)
        base = compile_folder(d)
    train, test = prompts(events, seed), prompts(test_n, seed + 1)
    fits = WinModels(SeriesCap())
    table = _policy(base)
    rng = random.Random(seed)
    curves: dict[int, list[tuple[float, float]]] = {}
    strong_served = 0
    t0 = time.perf_counter()
    for i in range(events + 1):
        if i in checkpoints:
            curves[i] = curve(_wins(table, test), test, SHARES)
        if i == events:
            break
        p = train[i]
        s = signals_from_messages([{"role": "user", "content": p.text}], False)
        d = decide(table, s, draw=rng.random)
        model = d.chain[0].model
        strong_served += model == "strong"
        assert d.embedding is not None
        o = distribution_pb2.Outcome(
            request_id=str(i),
            policy="learned",
            model=model,
            intent=d.intent,
            prompt_tokens_estimate=s.prompt_tokens,
            prompt_embedding=quantize(d.embedding),
        )
        good = rng.random() < p.quality(model == "strong")
        fits.example(base, o, [distribution_pb2.Feedback(request_id=str(i), good=good)])
        if (i + 1) % PUSH_EVERY == 0 and fits.refit(base):
            pushed = snapshot_pb2.Snapshot()
            pushed.CopyFrom(base)
            fits.apply(pushed)
            pushed.version = snapshot_version(pushed)
            table = _policy(pushed)
    oracle = [p.quality(True) - p.quality(False) for p in test]
    plain = snapshot_pb2.Snapshot()
    plain.CopyFrom(base)
    plain.policies[0].ClearField("learned_signal")
    cost = {
        "with_signal_us": _decide_us(table, test),
        "without_us": _decide_us(_policy(plain), test),
    }
    return {
        "oracle": curve(oracle, test, SHARES),
        "decide_p50_us": cost,
        "events": events,
        "seed": seed,
        "test_prompts": test_n,
        "strong_share_while_learning": strong_served / max(1, events),
        "seconds": round(time.perf_counter() - t0, 2),
        "curves": {str(k): v for k, v in curves.items()},
    }


def margin(points: list[tuple[float, float]], lo: float = 0.2, hi: float = 0.6) -> float:
    """Mean of (recovered - share) over shares in [lo, hi]: the gain over random there."""
    gains = [r - s for s, r in points if lo <= s <= hi]
    return sum(gains) / len(gains)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench/learned_signal.py", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--quick", action="store_true", help="fewer events (a smoke run)")
    ap.add_argument(
        "--docs", action="store_true", help="also write the curve to docs/learned-signal.svg"
    )
    args = ap.parse_args(argv)
    checkpoints = [0, 200, 600] if args.quick else [0, 200, 600, 2000]
    result = replay(checkpoints[-1], checkpoints)
    console = Console() if Console().is_terminal else Console(width=140)
    table = Table(
        title="learned signal: quality recovered vs strong-model share (held-out prompts)"
    )
    table.add_column("strong share", justify="right")
    table.add_column("random", justify="right")
    table.add_column("oracle", justify="right")
    for k in checkpoints:
        table.add_column("before learning" if k == 0 else f"after {k} feedback", justify="right")
    curves = result["curves"]
    for j, share in enumerate(SHARES):
        if j % 2:
            continue
        cells = [f"{share:.0%}", f"{share:.0%}", f"{result['oracle'][j][1]:.0%}"]
        cells += [f"{curves[str(k)][j][1]:.0%}" for k in checkpoints]
        table.add_row(*cells)
    result["margin_20_60"] = {k: round(margin(v), 4) for k, v in curves.items()}
    table.caption = (
        "gain over random, mean over shares 20-60%: "
        + ", ".join(f"{k} events {v:+.0%}" for k, v in result["margin_20_60"].items())
        + f"; strong share while learning {result['strong_share_while_learning']:.0%}"
        + f"; decide p50 {result['decide_p50_us']['with_signal_us']} us with the fitted signal, "
        + f"{result['decide_p50_us']['without_us']} us without"
    )
    console.print(table)
    OUT.mkdir(exist_ok=True)
    (OUT / "learned_signal.json").write_text(json.dumps(result, indent=2) + "\n")
    series = [("random", [(s, s) for s in SHARES]), ("oracle (hidden gap)", result["oracle"])]
    series += [
        ("before learning" if k == 0 else f"after {k} feedback events", curves[str(k)])
        for k in checkpoints
    ]
    svg = line_chart(
        "learned signal: quality recovered vs strong-model share",
        series,
        "share of prompts sent to the strong model",
        "quality gap recovered",
    )
    (OUT / "learned_signal.svg").write_text(svg)
    if args.docs:
        (OUT.parent / "docs" / "learned-signal.svg").write_text(svg)
    console.print(f"wrote {OUT / 'learned_signal.json'} and {OUT / 'learned_signal.svg'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
