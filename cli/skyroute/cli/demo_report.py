"""Turn replay outcomes into the case study's before/after figures, and show them.

Every figure is computed from what the replay recorded per request, which in
turn is what the routers returned; nothing is a constant. The definitions
matter as much as the numbers, so here they are:

* **p95 latency** over *all* logical requests of an arm, from the client's
  first send to its final answer or final give-up, retries included. A
  failure is part of what users wait for, so it is not dropped; a client
  retry makes the request slower, which is the point of counting it.
  Nearest-rank percentile (no interpolation: every figure is an observed
  latency).
* **success rate**: logical requests that ended with a 200, over all.
* **cost per 1k requests**: the sum of ``x-skyroute-cost-usd`` over every
  attempt the client made (a retry is paid again), per 1000 logical requests.
* **router mix**: the share of requests the router sent to each pool
  (``x-skyroute-pool``), over the requests that reported one.
* **FAQ cache hit rate**: of the requests the generator labelled ``faq.*``,
  the share the router answered from cache (``x-skyroute-cache: hit``).
* **duplicate tool actions**: re-sends of a tool-carrying request after an
  attempt that may have reached the model (see :mod:`demo_replay`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from skyroute.cli.demo_replay import Outcome


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]) of ``values``; 0.0 when empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass(slots=True)
class ArmSummary:
    """One arm's figures; ``as_json`` is the shape ``--json`` writes."""

    requests: int
    p95_ms: float
    success_rate: float
    cost_per_1k_usd: float
    mix: dict[str, float]
    faq_cache_hit_rate: float
    duplicate_tool_actions: int
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    client_attempts: int = 0
    upstream_attempts: int = 0
    fallback_rate: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    # Share of requests where the router's intent matches the generator's label; None
    # when the policy classifies nothing (the baseline has no intents).
    intent_agreement: float | None = None
    cost_usd: float = 0.0
    pool_p95_ms: dict[str, float] = field(default_factory=dict)  # where the tail comes from

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("p95_ms", "p50_ms", "p99_ms"):
            d[key] = round(d[key], 1)
        for key in ("success_rate", "faq_cache_hit_rate", "fallback_rate", "intent_agreement"):
            d[key] = None if d[key] is None else round(d[key], 4)
        d["cost_per_1k_usd"] = round(d["cost_per_1k_usd"], 4)
        d["cost_usd"] = round(d["cost_usd"], 6)
        d["mix"] = {k: round(v, 4) for k, v in d["mix"].items()}
        d["pool_p95_ms"] = {k: round(v, 1) for k, v in d["pool_p95_ms"].items()}
        return d


def summarize(outcomes: Sequence[Outcome]) -> ArmSummary:
    """The figures of one arm (definitions in the module docstring)."""
    n = len(outcomes)
    if n == 0:
        raise ValueError("cannot summarize an arm with no outcomes")
    latencies = [o.latency_ms for o in outcomes]
    ok = sum(o.ok for o in outcomes)
    cost = sum(o.cost_usd for o in outcomes)
    pools = Counter(o.pool for o in outcomes if o.pool)
    routed = sum(pools.values())
    faq = [o for o in outcomes if o.intent.startswith("faq.")]
    labelled = [o for o in outcomes if o.intent_seen]
    classifies = any(o.intent_seen not in ("", "unknown") for o in labelled)
    errors = Counter(o.error for o in outcomes if not o.ok)
    return ArmSummary(
        requests=n,
        p95_ms=percentile(latencies, 95),
        success_rate=ok / n,
        cost_per_1k_usd=cost / n * 1000.0,
        mix={p: c / routed for p, c in sorted(pools.items(), key=lambda kv: (-kv[1], kv[0]))},
        faq_cache_hit_rate=(sum(o.cache == "hit" for o in faq) / len(faq)) if faq else 0.0,
        duplicate_tool_actions=sum(o.duplicate_tool_actions for o in outcomes),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        client_attempts=sum(o.client_attempts for o in outcomes),
        upstream_attempts=sum(o.router_attempts for o in outcomes),
        fallback_rate=sum(o.fallbacks for o in outcomes) / n,
        errors=dict(sorted(errors.items())),
        intent_agreement=(
            sum(_same_intent(o) for o in labelled) / len(labelled) if classifies else None
        ),
        cost_usd=cost,
        pool_p95_ms={
            p: percentile([o.latency_ms for o in outcomes if o.pool == p], 95) for p in pools
        },
    )


def _same_intent(o: Outcome) -> bool:
    # "support.general" is the catch-all: a router that finds no intent ("unknown")
    # and sends it to the default pool agrees with the generator's label.
    if o.intent == "support.general" and o.intent_seen == "unknown":
        return True
    return o.intent_seen == o.intent


def report_json(baseline: ArmSummary, routed: ArmSummary, **extra: Any) -> dict[str, Any]:
    """The ``--json`` document: ``{"baseline": {...}, "routed": {...}}`` plus context."""
    return {"baseline": baseline.as_json(), "routed": routed.as_json(), **extra}


# --- rendering -------------------------------------------------------------------------


def _change(
    before: float, after: float, better: str, worse: str, lower_is_better: bool = True
) -> Text:
    """``34% faster`` in green, or ``12% slower`` in red; empty when there is no base."""
    if before == 0:
        return Text("")
    delta = (after - before) / before * 100.0
    if abs(delta) < 0.05:
        return Text("same", style="dim")
    good = delta < 0 if lower_is_better else delta > 0
    return Text(f"{abs(delta):.0f}% {better if good else worse}", style="green" if good else "red")


def _pool_p95(s: ArmSummary) -> str:
    return ", ".join(f"{p} {ms / 1000:.2f} s" for p, ms in s.pool_p95_ms.items()) or "-"


def _mix_text(mix: dict[str, float]) -> str:
    return ", ".join(f"{pool} {share:.0%}" for pool, share in mix.items()) or "-"


def comparison_table(baseline: ArmSummary, routed: ArmSummary, baseline_label: str) -> Table:
    t = Table(
        title="AcmeShop support copilot: before and after routing",
        title_style="bold",
        show_lines=False,
    )
    t.add_column("metric")
    t.add_column(f"before\n{baseline_label}", justify="right")
    t.add_column("after\nrouted (acmeshop policy)", justify="right")
    t.add_column("change", justify="right")
    t.add_row(
        "p95 latency",
        f"{baseline.p95_ms / 1000:.2f} s",
        f"{routed.p95_ms / 1000:.2f} s",
        _change(baseline.p95_ms, routed.p95_ms, "faster", "slower"),
    )
    failed = _change(
        1 - baseline.success_rate, 1 - routed.success_rate, "fewer failures", "more failures"
    )
    t.add_row("success rate", f"{baseline.success_rate:.1%}", f"{routed.success_rate:.1%}", failed)
    t.add_row(
        "cost per 1k requests",
        f"${baseline.cost_per_1k_usd:.2f}",
        f"${routed.cost_per_1k_usd:.2f}",
        _change(baseline.cost_per_1k_usd, routed.cost_per_1k_usd, "cheaper", "dearer"),
    )
    t.add_row("router mix", _mix_text(baseline.mix), _mix_text(routed.mix), "")
    t.add_row(
        "cache hit rate (FAQ intents)",
        f"{baseline.faq_cache_hit_rate:.0%}",
        f"{routed.faq_cache_hit_rate:.0%}",
        "",
    )
    t.add_row(
        "duplicate tool actions",
        str(baseline.duplicate_tool_actions),
        str(routed.duplicate_tool_actions),
        "",
    )
    t.add_row("requests", str(baseline.requests), str(routed.requests), "")
    t.add_section()
    t.add_row(
        Text("p50 / p99", style="dim"),
        f"{baseline.p50_ms / 1000:.2f} / {baseline.p99_ms / 1000:.2f} s",
        f"{routed.p50_ms / 1000:.2f} / {routed.p99_ms / 1000:.2f} s",
        "",
    )
    t.add_row(
        Text("calls sent upstream", style="dim"),
        str(baseline.upstream_attempts),
        str(routed.upstream_attempts),
        "",
    )
    t.add_row(
        Text("client retries", style="dim"),
        str(baseline.client_attempts - baseline.requests),
        str(routed.client_attempts - routed.requests),
        "",
    )
    t.add_row(
        Text("answered by a fallback", style="dim"),
        f"{baseline.fallback_rate:.1%}",
        f"{routed.fallback_rate:.1%}",
        "",
    )
    t.add_row(Text("p95 by pool", style="dim"), _pool_p95(baseline), _pool_p95(routed), "")
    return t


def mix_chart(mix: dict[str, float], width: int = 40) -> Group:
    """The routed pool mix as horizontal bars."""
    lines = [Text("Router mix (after)", style="bold")]
    styles = ("cyan", "magenta", "yellow", "green", "blue")
    name_w = max((len(p) for p in mix), default=4)
    for i, (pool, share) in enumerate(mix.items()):
        bar = "█" * max(1, round(share * width)) if share > 0 else ""
        line = Text(f"  {pool:<{name_w}} ")
        line.append(bar, style=styles[i % len(styles)])
        line.append(f" {share:.1%}")
        lines.append(line)
    return Group(*lines)


def render(
    console: Console,
    baseline: ArmSummary,
    routed: ArmSummary,
    baseline_label: str = "single model (gpt-5.2)",
) -> None:
    console.print(comparison_table(baseline, routed, baseline_label))
    console.print(mix_chart(routed.mix))
    if baseline.errors or routed.errors:
        console.print(
            Text(
                f"  failures before: {_counts(baseline.errors)}   after: {_counts(routed.errors)}",
                style="dim",
            )
        )


def _counts(errors: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in errors.items()) or "none"
