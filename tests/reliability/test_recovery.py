"""Recovery in seconds: half-open probes, time-decayed estimates, per-endpoint retry budgets.

The outage test runs the real engine in process against the real provider
simulator, both ten times faster than real time: the simulator through its
scenario's ``time_scale``, the engine through its clock seam (ejections,
probes and decay all read ``clock``). A 20 s outage of the primary (a
scenario burst of 500s) and 30 s after it take 6 s of wall time instead of
50 s, with the same ratios of every duration the router reasons about.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from skyroute.control.policy.compiler import compile_folder
from skyroute.router.decide import decide, signals_from_messages
from skyroute.router.engine import Engine, RequestContext
from skyroute.router.engine.health import (
    FAILURE_HALF_LIFE_S,
    LATENCY_WINDOW_S,
    EndpointHealth,
    RetryBudget,
)
from skyroute.router.providers.types import ChatRequest
from skyroute.router.table import build_table

from harness import Proc, free_port, http_get, wait_until

SCALE = 10.0
OUTAGE = (20.0, 40.0)  # scenario seconds
END = 70.0

SCENARIO = f"""\
seed: 5
time_scale: {SCALE}
defaults:
  ttft_ms: {{p50: 40, p95: 80}}
  tokens_per_s: 4000
  completion_tokens: {{p50: 20, p95: 30, min: 5, max: 60}}
  error_rate: 0
bursts:
  - models: [r-primary]
    start_s: {OUTAGE[0]}
    duration_s: {OUTAGE[1] - OUTAGE[0]}
    error_rate: 1.0
    errors: {{server_error: 1}}
"""

POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: recover}
spec:
  models:
    - name: r-primary
      provider: openai
      endpoint: SIM/openai/v1
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
      quality: {"*": 0.9}
      timeoutMs: 2000
    - name: r-backup
      provider: anthropic
      endpoint: SIM/anthropic
      pricing: {inputPerMTok: 3.0, outputPerMTok: 12.0}
      quality: {"*": 0.85}
      timeoutMs: 2000
---
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: recover}
spec:
  default: true
  defaultPool: recover
  limits: {maxAttempts: 3, requestTimeoutMs: 8000, firstTokenTimeoutMs: 2000}
  reliability:
    outlierDetection: {consecutiveFailures: 3, baseEjectionMs: 10000, maxEjectionPercent: 50}
"""


def _window(rows: list[tuple[float, str, bool]], lo: float, hi: float) -> tuple[float, float]:
    """(primary share, success rate) of the requests sent in [lo, hi) scenario seconds."""
    inside = [r for r in rows if lo <= r[0] < hi]
    assert len(inside) >= 10, (lo, hi, len(inside))
    share = sum(1 for _, model, _ in inside if model == "r-primary") / len(inside)
    return share, sum(1 for *_, ok in inside if ok) / len(inside)


def test_primary_regains_its_share_within_30s_of_an_outage(
    procs: list[Proc], tmp_path: Path
) -> None:
    port = free_port()
    sim = f"http://127.0.0.1:{port}"
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    procs.append(
        Proc(
            "providers",
            [
                "providers",
                "--listen",
                f"127.0.0.1:{port}",
                "--scenario",
                str(tmp_path / "scenario.yaml"),
            ],
        )
    )
    wait_until(lambda: http_get(sim + "/healthz")[0] == 200, what="simulator")
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "recover.yaml").write_text(POLICY.replace("SIM", sim))
    table = build_table(compile_folder(folder)).policy("recover")
    assert table is not None

    async def drive() -> tuple[list[tuple[float, str, bool]], Engine]:
        rows: list[tuple[float, str, bool]] = []
        async with aiohttp.ClientSession() as session:
            notes.clear()
            t0 = time.monotonic()
            engine = Engine(session, lambda _: None, clock=lambda: (time.monotonic() - t0) * SCALE)
            async with session.post(sim + "/_sim/reset") as r:  # the burst clock starts now
                assert r.status == 200
            t0 = time.monotonic()
            n = 0
            while (now := (time.monotonic() - t0) * SCALE) < END:
                s = signals_from_messages([{"role": "user", "content": f"question {n}"}], False)
                d = decide(table, s, engine.health)
                served = await engine.complete(
                    d,
                    s,
                    ChatRequest(messages=[{"role": "user", "content": f"question {n}"}]),
                    RequestContext(),
                )
                rows.append((now, served.model, served.error is None))
                notes.extend(served.notes)
                n += 1
                await asyncio.sleep(0.01)
        return rows, engine

    notes: list[str] = []
    rows, engine = asyncio.run(drive())
    before, ok_before = _window(rows, 5.0, OUTAGE[0])
    assert before >= 0.9 and ok_before == 1.0, (before, ok_before)
    # The outage ejects the primary, and no request fails for it.
    assert engine.health.ejected_total >= 1
    during, ok_during = _window(rows, OUTAGE[0] + 2.0, OUTAGE[1])
    assert during <= 0.2 and ok_during == 1.0, (during, ok_during)
    # Back within 30 s of recovering: the first 5 s window with >= 80% of the share it had.
    regained = next(
        (
            hi
            for lo in range(int(OUTAGE[1]), int(END) - 4)
            if _window(rows, lo, (hi := lo + 5))[0] >= 0.8 * before
        ),
        None,
    )
    assert regained is not None and regained <= OUTAGE[1] + 30.0, regained
    # A half-open probe brought it back, not the end of its ejection; the requests' notes
    # say when the primary was passed over and when it was probed.
    assert engine.health.returned_total >= 1
    assert "r-primary: ejected, moved last" in notes
    assert "r-primary: half-open probe of an ejected endpoint" in notes
    assert "r-backup: fallback to another endpoint" in notes
    # No success-rate dip at any time.
    assert all(ok for *_, ok in rows)


def test_failure_rate_and_latency_decay_with_time_not_only_with_calls() -> None:
    from skyroute.router.table import ReliabilitySettings

    now = [0.0]
    health = EndpointHealth(clock=lambda: now[0])
    table_pool = _candidates()
    bad, good = table_pool
    for _ in range(40):
        health.failure(
            bad,
            "server_error",
            None,
            ReliabilitySettings(outlier_consecutive_failures=1000),
            table_pool,
        )
        health.success(good, 3.0)
    high = health.failures(bad)
    assert high > 0.8
    assert health.p95_s(good) == 3.0
    now[0] = 3 * FAILURE_HALF_LIFE_S  # no calls at all in between
    assert abs(health.failures(bad) - high / 8) < 1e-9
    now[0] = LATENCY_WINDOW_S + 1.0
    # The slow samples are older than the window: back to the prior (unknown here).
    assert health.p95_s(good) is None


def _candidates():  # type: ignore[no-untyped-def]
    from skyroute.router.providers.types import Target
    from skyroute.router.table import Candidate

    def one(name: str, endpoint: str) -> Candidate:
        return Candidate(
            name,
            "openai",
            name,
            Target("openai", endpoint, name, None),
            0,
            0,
            0,
            True,
            0,
            1.0,
            {},
            0.0,
            0.0,
            0.0,
        )

    return (one("bad", "http://a"), one("good", "http://b"))


def test_retry_budgets_are_per_endpoint() -> None:
    from skyroute.router.table import ReliabilitySettings

    rel = ReliabilitySettings(retry_budget_ratio=0.0, retry_budget_min_concurrency=2)
    budget = RetryBudget()
    assert budget.allow("http://a", rel) and budget.allow("http://a", rel)
    assert not budget.allow("http://a", rel)  # a's budget is spent...
    assert budget.allow("http://b", rel)  # ...which never stops retries at b
    budget.release("http://a")
    assert budget.allow("http://a", rel)
    assert budget.by_endpoint() == {
        "http://a": {"retrying": 2, "denied": 1},
        "http://b": {"retrying": 1, "denied": 0},
    }
