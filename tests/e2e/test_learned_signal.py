"""The learned signal end to end: ``skyroute control`` on a folder, a router, the simulator.

The prompts are the simulator's hidden-quality set
(:mod:`skyroute.simulator.hidden_quality`): all of one intent, but the weak
model's chance of a good answer depends on what a prompt asks (0.25 on
proofs, 0.6 on explanations, 0.9 on rewording) and its length (0.2 less on
long prompts); the strong model's is 0.92 everywhere. The policy sends a
prompt to the strong pool when its ``win_probability`` is at least 0.6
(before learning the offline evals say 0.575 for every prompt: all to the
weak model), with 20% explicit exploration.

Training: requests through the official openai SDK, each answer rated through
``POST /v1/feedback`` with a verdict drawn from the hidden quality of the model
that served it. The router reports the prompt's features with each outcome;
the control plane joins them to the feedback, fits and pushes the weights.

Then held-out prompts are ranked by the win probability the router's Explain
gives (explored draws asked again) and the top share sent to the strong
model: the quality recovered (RouteLLM's "performance gap recovered") beats
random routing at the same share, which recovers the share itself. The
margin is stated and asserted with headroom; Explain shows the prediction
and its inputs.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from skyroute.simulator.hidden_quality import curve, prompts

from harness import REPO, Proc, Stack, http_get, wait_until

TRAIN = 500  # feedback events
TEST = 200  # held-out prompts
SHARES = [0.2, 0.3, 0.4, 0.5, 0.6]
# Mean gain over random at those shares; the in-process replay of this setup
# (bench/learned_signal.py's parts, seeds 21-23) measured 0.18 to 0.25.
MIN_GAIN = 0.08

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: strong}
spec:
  models:
    - {name: big, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 10.0, outputPerMTok: 30.0}, quality: {"*": 0.9}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: weak}
spec:
  models:
    - {name: small, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 0.5, outputPerMTok: 1.5}, quality: {"*": 0.75}}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: learned}
spec:
  default: true
  defaultPool: weak
  rules:
    - {name: strong-when-it-wins, match: {minWinProbability: 0.6}, pool: strong}
  adaptation: {enabled: true, intervalS: 1, minSamples: 1000000,
               driftLatencyRatio: 0, driftCostRatio: 0}
  learnedSignal: {strong: big, weak: small, exploration: 0.2, minFeedback: 40}
"""
SCENARIO = """\
seed: 9
defaults:
  ttft_ms: {p50: 2, p95: 4}
  tokens_per_s: 50000
  completion_tokens: {p50: 4, p95: 6, min: 2, max: 8}
  error_rate: 0
"""


@pytest.fixture
def stack(procs: list[Proc], tmp_path: Path) -> Iterator[Stack]:
    yield Stack(procs, tmp_path, {"pools.yaml": POOLS, "policy.yaml": POLICY}, SCENARIO)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())  # type: ignore[no-any-return]


def _explain(url: str, text: str) -> dict[str, Any]:
    body = {"model": "learned", "messages": [{"role": "user", "content": text}]}
    return _post(url + "/v1/explain", body)


def _win(url: str, text: str) -> float:
    """The router's win probability for ``text``, asked again while exploration drew it."""
    for _ in range(20):
        d = _explain(url, text)
        line = next(r for r in d["reasons"] if r.startswith("win probability"))
        if "exploring" not in line:
            return float(d["signals"].get("win_probability", 0.0))
    raise AssertionError(f"explored 20 times in a row: {text[:60]!r}")


def test_the_learned_signal_recovers_more_of_the_gap_than_random(stack: Stack) -> None:
    url = stack.routers[0][2]
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    rng = random.Random(21)
    train, test = prompts(TRAIN, 21), prompts(TEST, 22)

    # Before learning: every prompt gets the offline evals' 0.5 + (0.9 - 0.75) / 2.
    before = [_win(url, p.text) for p in test[:20]]
    assert all(w == pytest.approx(0.575) for w in before), before

    served = {"big": 0, "small": 0}
    t0 = time.monotonic()
    for p in train:
        raw = client.chat.completions.with_raw_response.create(
            model="learned", messages=[{"role": "user", "content": p.text}]
        )
        model = raw.headers["x-skyroute-model"]
        served[model] += 1
        good = rng.random() < p.quality(model == "big")
        _post(
            url + "/v1/feedback",
            {
                "request_id": raw.headers["x-skyroute-feedback-id"],
                "value": good,
                "source": "evaluator",
            },
        )
    print(f"{TRAIN} requests and ratings in {time.monotonic() - t0:.1f} s; served {served}")
    assert served["big"] > 20 and served["small"] > 20, served

    def fitted() -> bool:
        fits = json.loads(http_get(stack.admin + "/debug/learning")[1])["learned_signal"]["fits"]
        pending = sum(f["pending"] for f in fits.values())
        n = sum(f["n"] for f in fits.values())
        pushed = all(fits.get(f"learned/{m}", {}).get("pushed") for m in ("big", "small"))
        return bool(pushed and pending == 0 and n >= TRAIN * 0.98)

    wait_until(fitted, timeout=20, what="both fits on (nearly) every rating")
    n_of = {
        m: f["n"]
        for m, f in json.loads(http_get(stack.admin + "/debug/learning")[1])["learned_signal"][
            "fits"
        ].items()
    }

    def router_has_it() -> bool:
        line = next(r for r in _explain(url, test[0].text)["reasons"] if "win probability" in r)
        return (
            f"big n={n_of['learned/big']:g}" in line
            and f"small n={n_of['learned/small']:g}" in line
        )

    wait_until(router_has_it, timeout=20, what="the router serving the last fit")

    wins = [_win(url, p.text) for p in test]
    points = curve(wins, test, SHARES)
    gains = [r - s for s, r in points]
    mean_gain = sum(gains) / len(gains)
    print(
        "strong share -> quality recovered (random recovers the share): "
        + ", ".join(f"{s:.0%} -> {r:.1%}" for s, r in points)
        + f"; mean gain {mean_gain:+.3f}"
    )
    assert mean_gain > MIN_GAIN, points
    assert all(g > 0 for g in gains), points

    # Explain shows the prediction and its inputs: each model's predicted quality.
    hard = next(p for p in test if p.kind == "hard" and not p.long)
    easy = next(p for p in test if p.kind == "easy" and not p.long)
    assert _win(url, hard.text) > _win(url, easy.text)
    d = _explain(url, hard.text)
    line = next(r for r in d["reasons"] if r.startswith("win probability"))
    assert "q(big)" in line and "q(small)" in line and "embedding" in line, line

    # skyroute policy explain (the real CLI over gRPC) prints it too.
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "policy",
            "explain",
            "--router",
            stack.routers[0][1],
            hard.text,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "learned:   win probability" in cli.stdout, cli.stdout
    assert "q(big)" in cli.stdout and "fits: big n=" in cli.stdout, cli.stdout
