"""The router's added latency: the same requests through a router and straight to the provider.

Method (the fair one from the anchors): one mock upstream (the provider
simulator with zero latency and no errors, so that any time measured is the
software's own), one load generator, one machine; send identical requests
(a) straight to the simulator's OpenAI endpoint and (b) through a real
``skyroute router`` process fed by a real control plane, at a fixed number of
closed-loop workers; report the latency difference at p50 and p99 and the
throughput, at 1, 10, 32 and 64 concurrent clients, through both doors: the
OpenAI-compatible HTTP door and the gRPC ``Complete`` call (whose added
latency is also taken over the direct HTTP call: the upstream is the same).

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
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import yaml

from skyroute.cli.demo_report import percentile
from skyroute.cli.demo_stack import Stack, free_port
from skyroute.cli.demo_traffic import TrafficRequest, generate_traffic
from skyroute.v1 import router_pb2, router_pb2_grpc

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


#: The concurrency levels of the table: one client, a few, the saturation point, past it.
CONCURRENCIES = (1, 10, 32, 64)
#: The doors measured, each through the same router: (target name, door, policy, no-cache).
ROUTED = (
    ("http:baseline", "http", "baseline", False),
    ("grpc:baseline", "grpc", "baseline", False),
    ("http:acmeshop", "http", "acmeshop", True),
    ("grpc:acmeshop", "grpc", "acmeshop", True),
)


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to load: a URL and its bodies, or the router's gRPC ``Complete``."""

    name: str
    url: str
    bodies: tuple[bytes, ...] = ()
    headers: dict[str, str] | None = None
    requests: tuple[router_pb2.CompletionRequest, ...] = ()


def prepare_source(src: Path, dst: Path, sim_port: int) -> None:
    """Copy the example policies and pools, pointing every endpoint at the simulator."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("policy.yaml", "pools.yaml"):
        text = (src / name).read_text().replace("127.0.0.1:8790", f"127.0.0.1:{sim_port}")
        (dst / name).write_text(text)


def _bodies(traffic: list[TrafficRequest], model: str) -> tuple[bytes, ...]:
    return tuple(orjson.dumps(r.body(model)) for r in traffic)


def _grpc_requests(
    traffic: list[TrafficRequest], policy: str, no_cache: bool
) -> tuple[router_pb2.CompletionRequest, ...]:
    """The same requests as the HTTP bodies, as ``CompletionRequest`` messages."""
    out = []
    for r in traffic:
        req = router_pb2.CompletionRequest(
            policy=policy, max_tokens=r.max_tokens, user=r.user, no_cache=no_cache
        )
        for m in r.messages:
            req.messages.add(role=m["role"], content=str(m.get("content") or ""))
        for t in r.tools:
            f = t["function"]
            req.tools.add(
                name=f["name"],
                description=f.get("description", ""),
                parameters=orjson.dumps(f.get("parameters") or {}).decode(),
            )
        out.append(req)
    return tuple(out)


async def _closed_loop(
    call: Callable[[int], Awaitable[bool]], concurrency: int, total: int
) -> dict[str, float]:
    """``concurrency`` workers calling ``call(i)`` back to back until ``total`` calls."""
    latencies: list[float] = []
    errors = 0
    next_index = 0

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < total:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            if not await call(i):
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


def _caller(
    target: Target, session: aiohttp.ClientSession, stub: router_pb2_grpc.RouterStub
) -> Callable[[int], Awaitable[bool]]:
    if target.requests:
        reqs = target.requests

        async def grpc_call(i: int) -> bool:
            try:
                await stub.Complete(reqs[i % len(reqs)], timeout=30)
            except grpc.aio.AioRpcError:
                return False
            return True

        return grpc_call
    bodies, url, headers = target.bodies, target.url, target.headers

    async def http_call(i: int) -> bool:
        async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as resp:
            await resp.read()
            return resp.status == 200

    return http_call


def targets(stack: Stack, traffic: list[TrafficRequest]) -> list[Target]:
    json_headers = {"content-type": "application/json"}
    out = [
        Target(
            "direct",
            f"http://{stack.simulator}/openai/v1/chat/completions",
            _bodies(traffic, "gpt-5.2"),
            json_headers,
        )
    ]
    for name, door, policy, no_cache in ROUTED:
        if door == "grpc":
            out.append(
                Target(
                    name, stack.router_grpc[0], requests=_grpc_requests(traffic, policy, no_cache)
                )
            )
            continue
        headers = {**json_headers, "cache-control": "no-cache"} if no_cache else json_headers
        out.append(
            Target(
                name,
                f"http://{stack.router_http[0]}/v1/chat/completions",
                _bodies(traffic, policy),
                headers,
            )
        )
    return out


def _router_pids(stack: Stack) -> list[int]:
    """The router processes: each ``skyroute router`` and, with --workers, its workers."""
    pids = []
    for p in stack.procs:
        if p.name.startswith("router") and p.popen is not None:
            pid = p.popen.pid
            pids.append(pid)
            with contextlib.suppress(OSError):
                pids += [
                    int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                ]
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (``/proc/PID/stat`` fields 14 and 15)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def measure(
    stack: Stack, concurrencies: tuple[int, ...], requests: dict[int, int], warmup: int = 300
) -> dict[str, Any]:
    """{concurrency: {target: figures}}, each router target with its added p50/p99."""
    traffic = generate_traffic(400, seed=11)
    await stack.wait_ready()
    out: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        grpc.aio.insecure_channel(stack.router_grpc[0]) as channel,
    ):
        stub = router_pb2_grpc.RouterStub(channel)
        tgts = targets(stack, traffic)
        pids = _router_pids(stack)
        callers = {t.name: _caller(t, session, stub) for t in tgts}
        for t in tgts:
            await _closed_loop(callers[t.name], 8, warmup)
        for c in concurrencies:
            row: dict[str, Any] = {}
            for t in tgts:
                cpu0 = cpu_seconds(pids)
                row[t.name] = fig = await _closed_loop(callers[t.name], c, requests[c])
                # The router's own CPU per request: robust to a machine shared with others.
                fig["router_cpu_us"] = (cpu_seconds(pids) - cpu0) / fig["requests"] * 1e6
                if row[t.name]["errors"]:
                    raise SystemExit(
                        f"{t.name} at concurrency {c}: {row[t.name]['errors']} requests failed"
                    )
            direct = row["direct"]
            for name, *_ in ROUTED:
                row[name]["added_p50_ms"] = row[name]["p50_ms"] - direct["p50_ms"]
                row[name]["added_p99_ms"] = row[name]["p99_ms"] - direct["p99_ms"]
            out[str(c)] = row
    return out


def verdict(overhead: dict[str, Any]) -> dict[str, Any]:
    """The bars of the concurrency table, per router target and between the doors.

    ``drop_after_peak``: how far throughput falls below its peak at any higher
    concurrency (bar: at most 10%); ``added_p50_c1_ms``: latency added at one
    client (bar: at most 0.5 ms); ``grpc_vs_http``: the gRPC door's throughput
    over the HTTP door's at each concurrency (bar: at least 1).
    """
    levels = sorted(overhead, key=int)
    out: dict[str, Any] = {}
    for name, *_ in ROUTED:
        rps = [overhead[c][name]["throughput_rps"] for c in levels]
        peak_i = max(range(len(rps)), key=rps.__getitem__)
        after = rps[peak_i:]
        out[name] = {
            "peak_rps": rps[peak_i],
            "peak_at": int(levels[peak_i]),
            "drop_after_peak": 1.0 - min(after) / rps[peak_i],
            "added_p50_c1_ms": overhead[levels[0]][name]["added_p50_ms"],
        }
    for policy in ("baseline", "acmeshop"):
        out[f"grpc_vs_http:{policy}"] = {
            c: overhead[c][f"grpc:{policy}"]["throughput_rps"]
            / overhead[c][f"http:{policy}"]["throughput_rps"]
            for c in levels
        }
    return out


def start_stack(repo: Path, out_dir: Path, workers: int = 1) -> Stack:
    sim_port = free_port()
    source = out_dir / "source"
    prepare_source(repo / "examples" / "acmeshop", source, sim_port)
    scenario = out_dir / "zero-scenario.yaml"
    scenario.write_text(yaml.safe_dump(ZERO_SCENARIO))
    stack = Stack(
        source=source,
        scenario=scenario,
        out_dir=out_dir,
        simulator_port=sim_port,
        # acmeshop declares no Tenant: open (routers are closed by default).
        router_args=("--workers", str(workers), "--open-without-tenants"),
    )
    stack.start(routers=1)
    return stack
