"""Drift alerts on a cluster: a model's latency drifts, its ModelPools say so, then recover.

A real ``skyroute operator`` on the test API server, one router connected
to it and the provider simulator. The policy adapts (interval 1 s,
half-life 1 s, 10 samples, drift at 1.5 x baseline) and routes everything
to pool ``fast`` (only ``drift-a``); pool ``mixed`` also holds ``drift-a``
and pool ``calm`` does not. Under steady traffic the operator's learner
sets ``drift-a``'s baseline; the simulator then makes ``drift-a`` four
times slower, and both pools holding it get ``LatencyDrift=True``
(``AboveBaseline``) and a Warning event while ``calm`` gets nothing; back
at normal speed, the condition goes ``False`` (``Recovered``) with a Normal
event. The bounds are stated below and asserted; learned priors re-version
the served snapshot, and the router on it still counts as synced.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import yaml

from skyroute.control.kube.conditions import build_status, condition, drift_conditions
from skyroute.control.kube.fleet import SyncCount
from skyroute.control.kube.world import Key, World
from skyroute.control.kube.writer import events_for

from harness import http_get, wait_until
from kcluster import Cluster
from opstack import Stack

MP, RP = "modelpools", "routingpolicies"
BASELINE_BOUND_S = 10.0  # steady traffic to a drift baseline for drift-a
RAISE_BOUND_S = 8.0  # from the slowdown to LatencyDrift=True on the pools
CLEAR_BOUND_S = 12.0  # from the recovery to LatencyDrift=False (Recovered)

OBJECTS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: fast}
spec:
  models:
    - {name: drift-a, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}, timeoutMs: 3000}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: mixed}
spec:
  models:
    - {name: drift-b, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
    - {name: drift-a, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: calm}
spec:
  models:
    - {name: drift-b, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: drift}
spec:
  default: true
  defaultPool: fast
  selection: {mode: scored}
  adaptation: {enabled: true, halfLifeS: 1, exploration: 0, minSamples: 10, intervalS: 1,
               driftLatencyRatio: 1.5, driftCostRatio: 0}
"""


def test_drift_conditions_events_and_a_silent_restart_without_a_cluster() -> None:
    world = World()
    text = OBJECTS.replace("{SIM}", "http://127.0.0.1:9")
    for i, doc in enumerate(d for d in yaml.safe_load_all(text) if d):
        doc["metadata"].update(namespace="default", uid=f"uid-{i}", generation=1)
        world.observe(doc)
    world.reconcile()
    fast, calm = Key("ModelPool", "default", "fast"), Key("ModelPool", "default", "calm")
    models = world.pool_models()
    assert models[fast] == {"drift-a"} and models[calm] == {"drift-b"}
    state = world.state(fast)
    assert state is not None
    sync = SyncCount(1, 0)
    plain = build_status(state, sync, None, "2026-01-01T00:00:00Z")
    assert condition(plain, "LatencyDrift") is None  # nothing to say before any drift

    drift = {("drift-a", "latency"): (True, "model 'drift-a' latency drift: 90 ms")}
    assert drift_conditions(models[calm], drift) == []
    up = build_status(
        state, sync, plain, "2026-01-01T00:01:00Z", drift_conditions(models[fast], drift)
    )
    cond = condition(up, "LatencyDrift")
    assert cond is not None and (cond["status"], cond["reason"]) == ("True", "AboveBaseline")
    assert cond["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert cond["observedGeneration"] == 1
    assert events_for(state, plain, up) == [
        ("Warning", "LatencyDrift", "model 'drift-a' latency drift: 90 ms")
    ]
    # A restarted operator knows no drift: it carries the condition over, patching nothing.
    assert build_status(state, sync, up, "2026-01-01T00:02:00Z") == up

    drift[("drift-a", "latency")] = (False, "model 'drift-a' latency recovered")
    down = build_status(
        state, sync, up, "2026-01-01T00:03:00Z", drift_conditions(models[fast], drift)
    )
    cond = condition(down, "LatencyDrift")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "Recovered")
    assert cond["lastTransitionTime"] == "2026-01-01T00:03:00Z"
    assert events_for(state, up, down) == [
        ("Normal", "LatencyDriftRecovered", "model 'drift-a' latency recovered")
    ]
    assert events_for(state, down, down) == []


def _scenario(a_ms: int) -> str:
    return f"""\
seed: 5
defaults:
  ttft_ms: {{p50: 30, p95: 35}}
  tokens_per_s: 20000
  completion_tokens: {{p50: 10, p95: 15, min: 5, max: 30}}
  error_rate: 0
models:
  drift-a: {{ttft_ms: {{p50: {a_ms}, p95: {a_ms + 5}}}}}
"""


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(k8s_cluster, tmp_path_factory.mktemp("drift"), webhook=False, prefix="drift")
    try:
        yield s
    finally:
        s.close()


def _put_scenario(stack: Stack, text: str) -> None:
    req = urllib.request.Request(stack.sim + "/_sim/scenario", data=text.encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def _learning(stack: Stack) -> dict[str, Any]:
    code, body = http_get(f"http://{stack.admin}/debug/learning")
    assert code == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


class Traffic:
    """Steady chat traffic to one router from a background thread until ``stop``."""

    def __init__(self, url: str, workers: int = 4) -> None:
        self.url = url
        self.workers = workers
        self.sent = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        body = {"model": "auto", "messages": [{"role": "user", "content": "hello there"}]}
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                while not self._stop.is_set():
                    async with session.post(self.url + "/v1/chat/completions", json=body) as r:
                        text = await r.text()
                        if r.status != 200:
                            self.errors.append(f"{r.status}: {text[:200]}")
                            await asyncio.sleep(0.05)
                    self.sent += 1

            await asyncio.gather(*(worker() for _ in range(self.workers)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _timed(what: str, bound: float, check: Any) -> float:
    t0 = time.monotonic()
    wait_until(check, timeout=bound, interval=0.2, what=what)
    return time.monotonic() - t0


def test_latency_drift_raises_and_clears_pool_conditions(stack: Stack) -> None:
    _put_scenario(stack, _scenario(30))
    stack.apply(OBJECTS.replace("{SIM}", stack.sim))
    for pool in ("fast", "mixed", "calm"):
        stack.wait_condition(MP, pool, "Ready")
    url = stack.start_router("drift-r1")
    traffic = Traffic(url)
    try:
        based = _timed(
            f"drift-a baseline: {_learning(stack)}",
            BASELINE_BOUND_S,
            lambda: "drift-a" in _learning(stack)["baselines"] and _learning(stack)["pushes"] > 0,
        )
        # Learned priors re-version the served snapshot; the router still counts as synced.
        served = stack.operator_status()["version"]
        stack.wait_routers_on(served)
        stack.wait_condition(RP, "drift", "Synced", timeout=5)
        assert not stack.condition(MP, "fast", "LatencyDrift")

        t0 = time.monotonic()
        _put_scenario(stack, _scenario(120))
        raised = stack.wait_condition(
            MP, "fast", "LatencyDrift", "True", timeout=RAISE_BOUND_S, reason="AboveBaseline"
        )
        t_raise = time.monotonic() - t0
        assert "'drift-a' latency drift" in raised["message"], raised
        gen = stack.get(MP, "fast")["metadata"]["generation"]
        assert raised["observedGeneration"] == gen and raised["lastTransitionTime"]
        stack.wait_condition(MP, "mixed", "LatencyDrift", "True", timeout=3)
        assert not stack.condition(MP, "calm", "LatencyDrift")

        t0 = time.monotonic()
        _put_scenario(stack, _scenario(30))
        cleared = stack.wait_condition(
            MP, "fast", "LatencyDrift", "False", timeout=CLEAR_BOUND_S, reason="Recovered"
        )
        t_clear = time.monotonic() - t0
        assert "'drift-a' latency recovered" in cleared["message"], cleared
        stack.wait_condition(MP, "mixed", "LatencyDrift", "False", timeout=3, reason="Recovered")
    finally:
        traffic.stop()
    assert not traffic.errors, traffic.errors[:3]
    print(
        f"baseline in {based:.1f} s, drift raised {t_raise:.1f} s after the slowdown, "
        f"cleared {t_clear:.1f} s after the recovery ({traffic.sent} requests)"
    )

    for pool in ("fast", "mixed"):
        events = [(e["type"], e["reason"]) for e in stack.events(pool)]
        assert events.count(("Warning", "LatencyDrift")) == 1, events
        assert events.count(("Normal", "LatencyDriftRecovered")) == 1, events
    assert not [e for e in stack.events("calm") if "Drift" in e["reason"]]
    assert "drift raised" in stack.operator.output()
    # Drift conditions sit beside the others; Ready is unaffected by them.
    assert stack.condition(MP, "fast", "Ready")["status"] == "True"
