"""SIGTERM drains a router: every request and stream in flight completes.

A real router process, a slow simulated upstream (3 s to the first token,
then a few seconds of streaming), and requests of every kind in flight on
both doors when SIGTERM arrives: HTTP (the official openai SDK, streamed and
not) and gRPC (``Complete`` and ``StreamComplete``). The router must report
NOT_SERVING and fail ``/readyz`` at once, still accept during
``--drain-delay``, and then finish every one of them before it exits.
"""

from __future__ import annotations

import signal
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import openai
from grpc_health.v1 import health_pb2, health_pb2_grpc

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Proc, Stack, http_get, wait_until

POOL = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata:
  name: slow
spec:
  models:
    - name: slow-model
      provider: openai
      endpoint: {SIM}/openai/v1
      pricing: {inputPerMTok: 1.0, outputPerMTok: 4.0}
      timeoutMs: 20000
"""

POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata:
  name: slow
spec:
  default: true
  defaultPool: slow
  limits: {maxAttempts: 1, requestTimeoutMs: 25000, firstTokenTimeoutMs: 20000}
"""

# Every answer takes ~3 s to its first token and ~2 s more to stream 40 tokens.
SCENARIO = """\
seed: 3
defaults:
  ttft_ms: {p50: 3000, p95: 3001}
  tokens_per_s: 20
  completion_tokens: {p50: 40, p95: 41, min: 40, max: 41}
  error_rate: 0
"""

DELAY_S = 3.0


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def http_complete(url: str) -> str:
    done = sdk(url).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "a long answer please"}]
    )
    return done.choices[0].message.content or ""


def http_stream(url: str) -> str:
    chunks = list(
        sdk(url).chat.completions.create(
            model="auto",
            stream=True,
            messages=[{"role": "user", "content": "a long streamed answer please"}],
        )
    )
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "stop"
    return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)


def _req() -> router_pb2.CompletionRequest:
    return router_pb2.CompletionRequest(
        messages=[router_pb2.Message(role="user", content="a long answer over gRPC")]
    )


def grpc_complete(addr: str) -> str:
    with grpc.insecure_channel(addr) as ch:
        resp = router_pb2_grpc.RouterStub(ch).Complete(_req(), timeout=60)
        return str(resp.message.content)


def grpc_stream(addr: str) -> str:
    with grpc.insecure_channel(addr) as ch:
        chunks = list(router_pb2_grpc.RouterStub(ch).StreamComplete(_req(), timeout=60))
    assert chunks[-1].HasField("done"), chunks[-1]
    return "".join(c.delta for c in chunks)


def router_health(addr: str) -> int:
    with grpc.insecure_channel(addr) as ch:
        req = health_pb2.HealthCheckRequest(service="skyroute.v1.Router")
        return int(health_pb2_grpc.HealthStub(ch).Check(req, timeout=2).status)


def test_sigterm_lets_every_request_and_stream_in_flight_finish(
    procs: list[Proc], tmp_path: Path
) -> None:
    stack = Stack(
        procs,
        tmp_path,
        {"pools.yaml": POOL, "policy.yaml": POLICY},
        SCENARIO,
        router_args=["--drain-delay", str(DELAY_S), "--drain-grace", "5"],
    )
    router, grpc_addr, url = stack.routers[0]
    assert router_health(grpc_addr) == health_pb2.HealthCheckResponse.SERVING
    calls = [http_complete] * 3 + [http_stream] * 2
    rpcs = [grpc_complete] * 3 + [grpc_stream] * 2
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures: list[Future[str]] = [pool.submit(f, url) for f in calls]
        futures += [pool.submit(f, grpc_addr) for f in rpcs]
        wait_until(
            lambda: stack.router_status()["inflight"] == len(futures),
            timeout=10,
            what="all ten requests in flight",
        )
        assert router.p is not None
        router.p.send_signal(signal.SIGTERM)
        # At once: not ready on either door, while it still accepts new work.
        wait_until(lambda: http_get(url + "/readyz")[0] == 503, timeout=2, what="/readyz 503")
        assert router_health(grpc_addr) == health_pb2.HealthCheckResponse.NOT_SERVING
        late = [pool.submit(http_complete, url), pool.submit(grpc_complete, grpc_addr)]
        texts = [f.result(timeout=60) for f in futures + late]
    assert all(t.startswith("[slow-model]") and len(t) > 40 for t in texts), texts
    assert router.p.wait(timeout=30) == 0, router.output()
    (stopping,) = router.events("stopping")
    assert stopping["inflight"] == 0
    # The grace was the longest request deadline served (25 s) + 1, not the flag's 5 s.
    assert stopping["grace_s"] == 26.0
    assert [e["delay_s"] for e in router.events("draining")] == [DELAY_S]
