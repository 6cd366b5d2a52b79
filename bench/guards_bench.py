"""Identity and limits at the door: what they add per request, side by side.

Times the door stage alone (``Door.identify`` + ``authorize`` + ``admit`` +
``settle``), in process, for:

1. authentication off (``--allow-anonymous``, no credential);
2. an API key checked in memory, tenant RPM/TPM/concurrency and a daily
   budget in the in-process store;
3. the same limits in Redis (one real redis-server on loopback, started here
   unless ``--redis URL`` is given): one script call to reserve, one to settle.

Usage, from the repository root::

    .venv/bin/python bench/guards_bench.py [--n 5000] [--redis URL]

Writes ``bench-out/guards_bench.json`` and prints p50/p99 in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


async def _run(door: Door, auth: str | None, n: int) -> list[float]:
    out: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        ident = await door.identify(auth)
        door.authorize(ident, "support")
        adm = await door.admit(ident, f"r{i}", "support", "m1", EST, 30_000)
        await door.settle(adm, 300, 150, 0.0002)
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--redis", default=None)
    args = ap.parse_args()
    key = generate()
    snap = _snapshot(key.key_id, key.digest)
    server = None if args.redis else start_redis()
    url = args.redis or (server.url if server else "")
    results: dict[str, dict[str, float]] = {}
    try:

        async def go() -> None:
            cases = {
                "auth off (anonymous)": (Door(allow_anonymous=True), None),
                "key + limits in memory": (Door(), f"Bearer {key.key}"),
                "key + limits in Redis": (
                    Door(Limiter(RedisLimitStore(url))),
                    f"Bearer {key.key}",
                ),
            }
            for name, (door, auth) in cases.items():
                door.apply(snap)
                await _run(door, auth, min(500, args.n))  # warm up
                xs = np.array(await _run(door, auth, args.n))
                results[name] = {
                    "p50_us": float(np.percentile(xs, 50)),
                    "p99_us": float(np.percentile(xs, 99)),
                }

        asyncio.run(go())
    finally:
        if server is not None:
            server.stop()
    out = REPO / "bench-out"
    out.mkdir(exist_ok=True)
    (out / "guards_bench.json").write_text(json.dumps(results, indent=2))
    print(f"{'door stage (identify+authorize+admit+settle)':<46} {'p50 µs':>9} {'p99 µs':>9}")
    for name, r in results.items():
        print(f"{name:<46} {r['p50_us']:>9.1f} {r['p99_us']:>9.1f}")


if __name__ == "__main__":
    main()
