"""Identity and limits at the door: what they add per request, side by side.

Times the door stage alone (``Door.identify`` + ``authorize`` + ``admit`` +
``settle``), in process, for:

1. authentication off (``--allow-anonymous``, no credential);
2. an API key checked in memory, tenant RPM/TPM/concurrency and a daily
   budget in the in-process store;
3. the same limits in Redis (one real redis-server on loopback, started here
   unless ``--redis URL`` is given): one script call to reserve, one to settle.

Each request is timed twice: wall time (``perf_counter``: includes waiting
for Redis, and whatever else the shared machine runs) and this thread's CPU
time (``thread_time``: the work the door itself does, steadier on a loaded
machine; for the Redis case it leaves out the wait on the socket).

Usage, from the repository root::

    .venv/bin/python bench/guards_bench.py [--n 5000] [--redis URL] [--profile]

Writes ``bench-out/guards_bench.json`` and prints p50/p99 in microseconds.
``--profile`` runs the in-memory case under cProfile and prints where it spends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from skyroute.router.ingress.guards.door import Door  # noqa: E402
from skyroute.router.ingress.guards.keys import generate  # noqa: E402
from skyroute.router.ingress.guards.limits_guard import Limiter  # noqa: E402
from skyroute.router.ingress.guards.limits_redis import RedisLimitStore  # noqa: E402
from skyroute.router.ingress.guards.tenants import Estimate  # noqa: E402
from skyroute.v1 import snapshot_pb2  # noqa: E402

from redis_server import start_redis  # noqa: E402

EST = Estimate(300, 200, input_price=0.15, output_price=0.6)


def _snapshot(key_id: str, digest: str) -> snapshot_pb2.Snapshot:
    t = snapshot_pb2.Tenant(name="acme", tier="standard", policies=["*"], fail_open=True)
    t.rate_limits.append(
        snapshot_pb2.TenantRateLimit(
            scope="tenant",
            requests_per_minute=10_000_000,
            tokens_per_minute=1_000_000_000,
            concurrent_requests=100_000,
        )
    )
    t.budgets.append(snapshot_pb2.TenantBudget(name="daily", usd=1e7, period="day"))
    t.keys.append(snapshot_pb2.ApiKey(id=key_id, digest=digest))
    return snapshot_pb2.Snapshot(tenants=[t])


async def _run(door: Door, auth: str | None, n: int) -> tuple[list[float], list[float]]:
    wall: list[float] = []
    cpu: list[float] = []
    for i in range(n):
        rid = f"r{i}"
        t0, c0 = time.perf_counter(), time.thread_time()
        ident = await door.identify(auth)
        door.authorize(ident, "support")
        adm = await door.admit(ident, rid, "support", "m1", EST, 30_000)
        await door.settle(adm, 300, 150, 0.0002)
        c1, t1 = time.thread_time(), time.perf_counter()
        wall.append((t1 - t0) * 1e6)
        cpu.append((c1 - c0) * 1e6)
    return wall, cpu


def _profile(snap: snapshot_pb2.Snapshot, auth: str, n: int) -> None:
    import cProfile
    import pstats

    door = Door()
    door.apply(snap)
    asyncio.run(_run(door, auth, 500))
    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(_run(door, auth, n))
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--redis", default=None)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--cases", default="anonymous,memory,redis", help="comma-separated: anonymous,memory,redis"
    )
    args = ap.parse_args()
    key = generate()
    snap = _snapshot(key.key_id, key.digest)
    if args.profile:
        _profile(snap, f"Bearer {key.key}", args.n)
        return
    wanted = set(args.cases.split(","))
    server = None if args.redis or "redis" not in wanted else start_redis()
    url = args.redis or (server.url if server else "")
    results: dict[str, dict[str, float]] = {}
    try:

        async def go() -> None:
            cases = {
                "auth off (anonymous)": ("anonymous", None, None),
                "key + limits in memory": ("memory", None, f"Bearer {key.key}"),
                "key + limits in Redis": ("redis", url, f"Bearer {key.key}"),
            }
            for name, (case, redis_url, auth) in cases.items():
                if case not in wanted:
                    continue
                if case == "anonymous":
                    door = Door(allow_anonymous=True)
                else:
                    door = Door(Limiter(RedisLimitStore(redis_url) if redis_url else None))
                door.apply(snap)
                await _run(door, auth, min(500, args.n))  # warm up
                wall, cpu = (np.array(x) for x in await _run(door, auth, args.n))
                # A Redis call that failed would have been served from memory (fail-open):
                # such a run measures the wrong thing.
                if door.limiter.redis_errors or door.limiter.settle_errors:
                    raise SystemExit(f"{name}: Redis calls failed, figures discarded")
                results[name] = {
                    "p50_us": float(np.percentile(wall, 50)),
                    "p99_us": float(np.percentile(wall, 99)),
                    "cpu_p50_us": float(np.percentile(cpu, 50)),
                    "cpu_p99_us": float(np.percentile(cpu, 99)),
                }

        asyncio.run(go())
    finally:
        if server is not None:
            server.stop()
    out = REPO / "bench-out"
    out.mkdir(exist_ok=True)
    (out / "guards_bench.json").write_text(json.dumps(results, indent=2))
    head = ("wall p50", "wall p99", "CPU p50", "CPU p99")
    print(
        f"{'door stage (identify+authorize+admit+settle)':<46}" + "".join(f"{h:>10}" for h in head)
    )
    for name, r in results.items():
        figs = (r["p50_us"], r["p99_us"], r["cpu_p50_us"], r["cpu_p99_us"])
        print(f"{name:<46}" + "".join(f"{x:>10.1f}" for x in figs))
    print(f"(µs per request; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
