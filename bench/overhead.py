"""The router's added latency: the same requests through a router and straight to the provider.

Method (the fair one from the anchors): one mock upstream (the provider
simulator with zero latency and no errors, so that any time measured is the
software's own), one load generator, one machine; send identical requests
(a) straight to the simulator's OpenAI endpoint and (b) through a real
``skyroute router`` process fed by a real control plane, at a fixed number of
closed-loop workers; report the latency difference at p50 and p99 and the
throughput.

Two router configurations are measured:

* ``baseline`` policy: one gpt-5.2 candidate on the OpenAI wire, so the
  upstream call is exactly the direct one and the difference is pure proxy
  overhead (parse, decide, call, translate back, report the outcome);
* ``acmeshop`` policy with the cache bypassed (``Cache-Control: no-cache``):
  full routing, classification and the mixed provider families (Gemini and
  Anthropic wire formats included).

Everything runs as separate processes on 127.0.0.1; the pools are copied to a
temporary folder with their endpoints pointed at the simulator's free port.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from skyroute.cli.demo_report import percentile
from skyroute.cli.demo_stack import Stack, free_port
from skyroute.cli.demo_traffic import TrafficRequest, generate_traffic

#: A provider that answers at once and never fails: what remains is software time.
ZERO_SCENARIO: dict[str, Any] = {
    "seed": 1,
    "defaults": {
        "ttft_ms": {"p50": 0.001, "p95": 0.001},
        "tokens_per_s": 1e9,
        "completion_tokens": {"p50": 20, "p95": 20, "min": 1, "max": 64},
        "error_rate": 0.0,
    },
}


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    url: str
    bodies: tuple[bytes, ...]
    headers: dict[str, str]


def prepare_source(src: Path, dst: Path, sim_port: int) -> None:
    """Copy the example policies and pools, pointing every endpoint at the simulator."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("policy.yaml", "pools.yaml"):
        text = (src / name).read_text().replace("127.0.0.1:8790", f"127.0.0.1:{sim_port}")
        (dst / name).write_text(text)


def _bodies(traffic: list[TrafficRequest], model: str) -> tuple[bytes, ...]:
    return tuple(orjson.dumps(r.body(model)) for r in traffic)


async def _run(
    session: aiohttp.ClientSession, target: Target, concurrency: int, total: int
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    next_index = 0

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < total:
            i = next_index
            next_index += 1
            body = target.bodies[i % len(target.bodies)]
            t0 = time.perf_counter()
            async with session.post(target.url, data=body, headers=target.headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - t0) * 1000.0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "throughput_rps": len(latencies) / wall,
        "requests": len(latencies),
        "errors": errors,
    }


async def measure(
    stack: Stack, concurrencies: tuple[int, ...], requests: dict[int, int], warmup: int = 200
) -> dict[str, Any]:
    traffic = generate_traffic(400, seed=11)
    json_headers = {"content-type": "application/json"}
    router = f"http://{stack.router_http[0]}/v1/chat/completions"
    targets = [
        Target(
            "direct",
            f"http://{stack.simulator}/openai/v1/chat/completions",
            _bodies(traffic, "gpt-5.2"),
            json_headers,
        ),
        Target("router:baseline", router, _bodies(traffic, "baseline"), json_headers),
        Target(
            "router:acmeshop",
            router,
            _bodies(traffic, "acmeshop"),
            {**json_headers, "cache-control": "no-cache"},
        ),
    ]
    await stack.wait_ready()
    out: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for target in targets:
            await _run(session, target, 8, warmup)
        for c in concurrencies:
            row: dict[str, Any] = {}
            for target in targets:
                row[target.name] = await _run(session, target, c, requests[c])
                if row[target.name]["errors"]:
                    raise SystemExit(
                        f"{target.name} at concurrency {c}: "
                        f"{row[target.name]['errors']} requests failed"
                    )
            direct = row["direct"]
            for name in ("router:baseline", "router:acmeshop"):
                row[name]["added_p50_ms"] = row[name]["p50_ms"] - direct["p50_ms"]
                row[name]["added_p99_ms"] = row[name]["p99_ms"] - direct["p99_ms"]
            out[str(c)] = row
    return out


def start_stack(repo: Path, out_dir: Path) -> Stack:
    sim_port = free_port()
    source = out_dir / "source"
    prepare_source(repo / "examples" / "acmeshop", source, sim_port)
    scenario = out_dir / "zero-scenario.yaml"
    scenario.write_text(yaml.safe_dump(ZERO_SCENARIO))
    stack = Stack(source=source, scenario=scenario, out_dir=out_dir, simulator_port=sim_port)
    stack.start(routers=1)
    return stack
