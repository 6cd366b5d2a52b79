"""One client sending 10 MB prompts: what it does to another client's p95.

Starts the provider simulator, a control plane and one router (the demo
stack, ``skyroute.cli.demo_stack``) with a one-model policy, then measures a
small client's sequential latency (``--requests`` calls) alone, and again
while a second client sends a 10 MB prompt back to back, for ``--rounds``
alternating rounds. ``--window`` is the model's ``contextWindow``: the
default (128,000 tokens) has the router refuse the prompt as
``context_length_exceeded`` after reading it; 10,000,000 lets it through to
the upstream. Prints p50/p95 per phase and the ratio of the loaded p95 to
the alone p95 (the issue's bar: below 1.2).

Usage: ``.venv/bin/python bench/big_prompt.py [--window 10000000] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from skyroute.cli.demo_stack import Stack, free_port

POOL = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: base}}
spec:
  models:
    - name: base-model
      provider: openai
      endpoint: "http://127.0.0.1:{port}/openai/v1"
      contextWindow: {window}
      pricing: {{inputPerMTok: 1.0, outputPerMTok: 2.0}}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: big}
spec:
  default: true
  defaultPool: base
  selection: {mode: ordered}
"""
SCENARIO = {
    "seed": 1,
    "defaults": {
        "ttft_ms": {"p50": 20, "p95": 30},
        "tokens_per_s": 5000,
        "completion_tokens": {"p50": 20, "p95": 20, "min": 20, "max": 20},
        "error_rate": 0,
    },
}
SMALL = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "my order?"}]})
BIG_TEXT = "how do returns work for shoes " * (10_000_000 // 30)


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


def _latencies(url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        assert _post(url, SMALL.encode()) == 200
        out.append(time.perf_counter() - t)
    return sorted(out)


def _pct(xs: list[float], q: float) -> float:
    return xs[max(0, int(q * len(xs)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=128_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--requests", type=int, default=150)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="big-prompt-"))
    port = free_port()
    source = out / "source"
    source.mkdir()
    (source / "pools.yaml").write_text(POOL.format(port=port, window=args.window))
    (source / "policy.yaml").write_text(POLICY)
    scenario = out / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    stack = Stack(
        source=source,
        scenario=scenario,
        out_dir=out,
        simulator_port=port,
        router_args=("--open-without-tenants",),
    )
    stack.start(routers=1)
    asyncio.run(stack.wait_ready(60.0))
    url = f"http://{stack.router_http[0]}/v1/chat/completions"
    big = json.dumps({"model": "auto", "messages": [{"role": "user", "content": BIG_TEXT}]})
    big_body = big.encode()
    try:
        for r in range(args.rounds):
            alone = _latencies(url, args.requests)
            stop = threading.Event()
            sent: list[int] = []

            def flood(stop: threading.Event = stop, sent: list[int] = sent) -> None:
                while not stop.is_set():
                    sent.append(_post(url, big_body))

            th = threading.Thread(target=flood)
            th.start()
            time.sleep(1.0)
            loaded = _latencies(url, args.requests)
            stop.set()
            th.join()
            print(
                f"round {r + 1}: alone p50 {_pct(alone, 0.5) * 1000:.1f} ms p95 "
                f"{_pct(alone, 0.95) * 1000:.1f} ms; with 10 MB prompts ({len(sent)} sent, "
                f"statuses {sorted(set(sent))}) p50 {_pct(loaded, 0.5) * 1000:.1f} ms p95 "
                f"{_pct(loaded, 0.95) * 1000:.1f} ms; p95 ratio "
                f"{_pct(loaded, 0.95) / _pct(alone, 0.95):.2f} (bar < 1.2)"
            )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
