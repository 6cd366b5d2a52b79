"""Decision latency in process: what the router's per-request routing work costs.

The router's promise is that deciding is microseconds: everything that can be
prepared per snapshot is prepared in the routing table, and a request only
extracts its signals (one pass over the messages) and runs
:func:`skyroute.router.decide.decide` (keywords, patterns, the rules of one
intent, the pool's chain). This measures exactly that, through the router's
public API, over the demo's AcmeShop traffic sample, with no network, JSON or
event loop in the way; the HTTP overhead is measured separately in
:mod:`overhead`.

The snapshot is compiled from ``examples/acmeshop`` by the control plane's own
compiler, as a router would receive it.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from pathlib import Path
from typing import Any

from skyroute.cli.demo_report import percentile
from skyroute.cli.demo_traffic import generate_traffic
from skyroute.control.policy.compiler import compile_folder
from skyroute.router.canary import choose
from skyroute.router.decide import decide
from skyroute.router.signals import signals_from_messages
from skyroute.router.table import build_table
from skyroute.v1 import snapshot_pb2


def _with_canary(snapshot: snapshot_pb2.Snapshot, name: str) -> snapshot_pb2.Snapshot:
    """``snapshot`` with ``name`` on a 5% canary of a copy of itself (what a rollout serves)."""
    out = snapshot_pb2.Snapshot()
    out.CopyFrom(snapshot)
    stable = next(p for p in out.policies if p.name == name)
    candidate = out.policies.add()
    candidate.CopyFrom(stable)
    candidate.name, candidate.candidate_of = name + "~candidate", name
    stable.canary.CopyFrom(
        snapshot_pb2.Canary(policy=candidate.name, weight_bp=500, salt=stable.version)
    )
    return out


def _thompson(snapshot: snapshot_pb2.Snapshot) -> snapshot_pb2.Snapshot:
    """``snapshot`` with every policy Thompson-sampling quality (exploration 0)."""
    out = snapshot_pb2.Snapshot()
    out.CopyFrom(snapshot)
    for p in out.policies:
        p.adaptation.enabled, p.adaptation.exploration = True, 0.0
        p.adaptation.quality_sampling = "thompson"
    return out


def decision_latency(source: Path, requests: int = 2000, passes: int = 5) -> dict[str, Any]:
    """p50/p99 in microseconds of signals + decide, and of decide alone."""
    snapshot = compile_folder(source)
    table = build_table(snapshot)
    policy = table.policy("acmeshop")
    if policy is None:
        raise SystemExit(f"{source}: no RoutingPolicy named 'acmeshop'")
    # The same policy with the embedding classifier off, to show what it costs.
    for p in snapshot.policies:
        p.intent_min_similarity = 0.0
    plain = build_table(snapshot).policy("acmeshop")
    assert plain is not None
    traffic = generate_traffic(requests)
    prepared = [(r.messages, bool(r.tools), r.locale, r.user_tier, r.tenant) for r in traffic]
    signals = [
        signals_from_messages(m, t, locale=loc, user_tier=tier, tenant=ten)
        for m, t, loc, tier, ten in prepared
    ]
    pools = Counter(decide(policy, s).pool for s in signals)

    full: list[float] = []
    only: list[float] = []
    no_embed: list[float] = []
    split: list[float] = []
    sampled: list[float] = []
    thompson = build_table(_thompson(snapshot)).policy("acmeshop")
    assert thompson is not None
    ids = [f"req-{i}" for i in range(len(signals))]
    canary = build_table(_with_canary(snapshot, "acmeshop")).policy("acmeshop")
    assert canary is not None and canary.canary is not None
    users = [r.user for r in traffic]
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()  # a collection in the middle of one sample is not the decision's cost
    try:
        for _ in range(passes):
            for m, t, loc, tier, ten in prepared:
                t0 = clock()
                decide(policy, signals_from_messages(m, t, locale=loc, user_tier=tier, tenant=ten))
                full.append((clock() - t0) / 1000.0)
            for s in signals:
                t0 = clock()
                decide(policy, s)
                only.append((clock() - t0) / 1000.0)
            for s in signals:
                t0 = clock()
                decide(plain, s)
                no_embed.append((clock() - t0) / 1000.0)
            for s, rid in zip(signals, ids, strict=True):
                t0 = clock()
                decide(thompson, s, request_id=rid)
                sampled.append((clock() - t0) / 1000.0)
            for (m, _, _, _, ten), user in zip(prepared, users, strict=True):
                t0 = clock()
                choose(canary, user=user, tenant=ten, messages=m)
                split.append((clock() - t0) / 1000.0)
    finally:
        gc.enable()
    return {
        "requests": len(full),
        "signals_and_decide_us": {
            "p50": percentile(full, 50),
            "p99": percentile(full, 99),
            "mean": sum(full) / len(full),
        },
        "decide_only_us": {
            "p50": percentile(only, 50),
            "p99": percentile(only, 99),
            "mean": sum(only) / len(only),
        },
        "decide_no_embedding_us": {
            "p50": percentile(no_embed, 50),
            "p99": percentile(no_embed, 99),
            "mean": sum(no_embed) / len(no_embed),
        },
        "decide_thompson_us": {
            "p50": percentile(sampled, 50),
            "p99": percentile(sampled, 99),
            "mean": sum(sampled) / len(sampled),
        },
        "canary_split_us": {
            "p50": percentile(split, 50),
            "p99": percentile(split, 99),
            "mean": sum(split) / len(split),
        },
        "intents": len(policy.intents),
        "models": sum(len(c) for c in policy.pools.values()),
        "pool_mix": {p: c / len(signals) for p, c in pools.most_common()},
    }
