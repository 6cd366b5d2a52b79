"""``make bench-feedback``: quality learned from feedback, replayed through the real processes.

A provider simulator, ``skyroute control`` on a folder and one router, as
deployed; requests through the official openai SDK, feedback through
``POST /v1/feedback``. Two models, two intents, and a hidden quality per
(model, intent) that the offline evals get wrong by a known amount: each
eval overrates the truly worse model by :data:`EVAL_ERROR` and underrates
the better one by as much, so before any feedback every intent is routed to
its worse model. Each answer is rated good with its (model, intent)'s hidden
probability.

Three arms run interleaved, one request each per round, so they share time
and load; each has its own copies of the two models (``static-qa``,
``mean-qa``, ``thompson-qa``, ...: the learner keeps posteriors per (model,
intent), so arms must not read each other's feedback):

- ``static``: no adaptation; the offline evals decide forever (no feedback
  sent: it would change nothing);
- ``mean``: posterior means with epsilon-greedy exploration 0.1;
- ``thompson``: ``qualitySampling: thompson``, exploration 0.

Per round and arm it records which model served which intent, whether that
was the truly better one, and the regret (the better model's hidden quality
minus the served one's: pseudo-regret, free of the verdicts' noise). The
summary is the share of the truly better model over the last
:data:`WINDOW` requests of each intent, as it evolves, and the cumulative
regret. ``bench-out/feedback-replay.json`` holds every figure and
``bench-out/feedback-share.svg`` plots the shares; ``--docs`` also writes the
plot to ``docs/feedback-share.svg`` for the README.

Usage: ``.venv/bin/python bench/feedback_replay.py [--rounds N] [--seed S] [--docs]``.
``tests/e2e/test_quality_learning.py`` runs the same arms, with a restart.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Hidden quality per (base model, intent): what the verdicts are drawn from.
HIDDEN = {("qa", "code"): 0.5, ("qb", "code"): 0.85, ("qa", "chat"): 0.85, ("qb", "chat"): 0.5}
EVAL_ERROR = 0.3  # each eval overrates the truly worse model, underrates the better one
INTENTS = ("code", "chat")
PROMPTS = {"code": "write python to sort a list", "chat": "hello, how are you"}
WINDOW = 40  # requests of one intent the share is measured over
PRIOR_WEIGHT = 5  # adaptation.qualityPriorWeight of the learning arms
ARMS = ("static", "mean", "thompson")
SCENARIO = """\
seed: 5
defaults:
  ttft_ms: {p50: 3, p95: 5}
  tokens_per_s: 50000
  completion_tokens: {p50: 5, p95: 8, min: 2, max: 10}
  error_rate: 0
"""


def better(intent: str) -> str:
    """The truly better base model for ``intent``."""
    return max(("qa", "qb"), key=lambda m: HIDDEN[(m, intent)])


def offline_eval(base: str, intent: str) -> float:
    """The wrong offline eval: off by EVAL_ERROR in the worse model's favour."""
    q = HIDDEN[(base, intent)]
    return round(q - EVAL_ERROR if base == better(intent) else q + EVAL_ERROR, 2)


def _pool(arm: str) -> str:
    models = []
    for base in ("qa", "qb"):
        quality = ", ".join(f"{i}: {offline_eval(base, i)}" for i in INTENTS)
        models.append(
            f'    - {{name: {arm}-{base}, provider: openai, endpoint: "{{SIM}}/openai/v1", '
            f"family: fam-{base},\n"
            f"       pricing: {{inputPerMTok: 1.0, outputPerMTok: 2.0}}, quality: {{{quality}}}}}"
        )
    return (
        "apiVersion: skyroute.io/v1alpha1\nkind: ModelPool\n"
        f"metadata: {{name: {arm}}}\nspec:\n  models:\n" + "\n".join(models) + "\n"
    )


def _policy(arm: str) -> str:
    adaptation = {
        "static": "{enabled: false}",
        "mean": "{enabled: true, exploration: 0.1, intervalS: 1, minSamples: 1000000, "
        f"driftLatencyRatio: 0, driftCostRatio: 0, qualityPriorWeight: {PRIOR_WEIGHT}}}",
        "thompson": "{enabled: true, exploration: 0, intervalS: 1, minSamples: 1000000, "
        f"driftLatencyRatio: 0, driftCostRatio: 0, qualityPriorWeight: {PRIOR_WEIGHT}, "
        "qualitySampling: thompson}",
    }[arm]
    return f"""\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {{name: {arm}}}
spec:
  default: {"true" if arm == "static" else "false"}
  defaultPool: {arm}
  intents:
    - {{name: code, keywords: ["python"]}}
    - {{name: chat, keywords: ["hello"]}}
  weights: {{cost: 0, latency: 0, success: 0, quality: 1.0}}
  selection: {{mode: scored}}
  adaptation: {adaptation}
"""


def files(arms: Sequence[str] = ARMS) -> dict[str, str]:
    """The source folder: a pool and a policy per arm."""
    out = {}
    for arm in arms:
        out[f"pool-{arm}.yaml"] = _pool(arm)
        out[f"policy-{arm}.yaml"] = _policy(arm)
    return out


@dataclass(slots=True)
class Arm:
    """One arm's record: per request, intent, served base model, regret."""

    name: str
    served: dict[str, list[str]] = field(default_factory=lambda: {i: [] for i in INTENTS})
    regret: list[float] = field(default_factory=list)
    shares: list[float] = field(default_factory=list)  # after each of its requests

    def share(self, intent: str) -> float:
        """The truly better model's share of the last WINDOW requests of ``intent``."""
        last = self.served[intent][-WINDOW:]
        return last.count(better(intent)) / len(last) if last else 0.0

    def add(self, intent: str, base: str) -> None:
        self.served[intent].append(base)
        self.regret.append(HIDDEN[(better(intent), intent)] - HIDDEN[(base, intent)])
        self.shares.append(sum(self.share(i) for i in INTENTS) / len(INTENTS))

    def converged(self, level: float) -> bool:
        return all(len(self.served[i]) >= WINDOW and self.share(i) > level for i in INTENTS)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


class Replayer:
    """Rounds of one request per arm through a router, the learning arms' answers rated."""

    def __init__(self, router_url: str, seed: int, arms: Sequence[str] = ARMS) -> None:
        from openai import OpenAI

        self.url = router_url
        self.client = OpenAI(base_url=router_url + "/v1", api_key="unused", max_retries=0)
        self.rng = random.Random(seed)
        self.arms = {a: Arm(a) for a in arms}
        self.rounds = 0
        self.feedback = 0

    def ask(self, arm: str, intent: str) -> tuple[str, str]:
        """One completion on ``arm``'s policy: (base model, feedback id)."""
        raw = self.client.chat.completions.with_raw_response.create(
            model=arm, messages=[{"role": "user", "content": PROMPTS[intent]}]
        )
        h = raw.headers
        if h["x-skyroute-intent"] != intent:
            raise RuntimeError(f"the router classified {PROMPTS[intent]!r} as {h}")
        return h["x-skyroute-model"].removeprefix(arm + "-"), h["x-skyroute-feedback-id"]

    def round(self) -> None:
        intent = INTENTS[self.rounds % len(INTENTS)]
        for name, arm in self.arms.items():
            base, fid = self.ask(name, intent)
            arm.add(intent, base)
            if name != "static":
                good = self.rng.random() < HIDDEN[(base, intent)]
                _post(self.url + "/v1/feedback", {"request_id": fid, "value": good})
                self.feedback += 1
        self.rounds += 1

    def summary(self) -> dict[str, Any]:
        return {
            name: {
                "requests": len(arm.regret),
                "cumulative_regret": round(sum(arm.regret), 3),
                "final_share": {i: arm.share(i) for i in INTENTS},
                "share_over_time": [round(s, 4) for s in arm.shares],
            }
            for name, arm in self.arms.items()
        }


def plot(report: dict[str, Any]) -> str:
    """The share of the truly better model over time, per arm, as SVG."""
    sys.path.insert(0, str(ROOT / "bench"))
    from chart import line_chart

    arms = report["arms"]
    return line_chart(
        f"Share of the truly better model (last {report['window']} requests per intent), "
        "evals wrong by 0.3",
        [
            (
                f"{name} (regret {arm['cumulative_regret']:.0f})",
                [(float(t + 1), s) for t, s in enumerate(arm["share_over_time"])],
            )
            for name, arm in arms.items()
        ],
        x_label="requests per arm (the learning arms rate every answer)",
        y_label="share",
        x_max=float(report["rounds"]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=400, help="requests per arm")
    parser.add_argument("--seed", type=int, default=11, help="seeds the verdicts")
    parser.add_argument("--out", default=str(ROOT / "bench-out"), help="output folder")
    parser.add_argument("--docs", action="store_true", help="also write docs/feedback-share.svg")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))  # the test suite's process harness
    from harness import Proc, Stack

    procs: list[Proc] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="skyroute-feedback-") as tmp:
        try:
            stack = Stack(procs, Path(tmp), files(), SCENARIO)
            replay = Replayer(stack.routers[0][2], args.seed)
            for _ in range(args.rounds):
                replay.round()
        finally:
            for p in reversed(procs):
                p.stop()
    summary = replay.summary()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "rounds": args.rounds,
        "seed": args.seed,
        "hidden_quality": {f"{m}/{i}": q for (m, i), q in HIDDEN.items()},
        "offline_evals": {f"{m}/{i}": offline_eval(m, i) for (m, i) in HIDDEN},
        "prior_weight": PRIOR_WEIGHT,
        "window": WINDOW,
        "feedback_events": replay.feedback,
        "seconds": round(time.monotonic() - started, 1),
        "arms": summary,
    }
    (out / "feedback-replay.json").write_text(json.dumps(report, indent=2) + "\n")
    svg = plot(report)
    (out / "feedback-share.svg").write_text(svg)
    if args.docs:
        (ROOT / "docs" / "feedback-share.svg").write_text(svg)
    for name, s in summary.items():
        print(
            f"{name:9} regret {s['cumulative_regret']:7.2f}  final share "
            + ", ".join(f"{i} {v:.2f}" for i, v in s["final_share"].items())
        )
    print(f"results: {out / 'feedback-replay.json'}, chart: {out / 'feedback-share.svg'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
