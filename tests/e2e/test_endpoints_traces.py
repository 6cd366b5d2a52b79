"""Attempt spans name the endpoint of a model with several: an OTLP receiver started here.

The router exports to a loopback OTLP receiver (tests/obs/obskit.py); one
request to a model served by two simulators gives one attempt span whose
``skyroute.endpoint`` is the endpoint's name and whose ``server.address`` and
``server.port`` are that endpoint's simulator.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from skyroute.simulator.harness import SimulatorThread

from harness import Proc, Stack, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "obs"))
from obskit import OTLPReceiver, attrs

POOL = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: spread}
spec:
  models:
    - name: spread
      provider: openai
      endpoints:
        - {name: east, url: "{SIM}/openai/v1"}
        - {name: west, url: "{SIM2}/openai/v1"}
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: p}
spec:
  default: true
  defaultPool: spread
"""


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    yield r
    r.close()


def test_the_attempt_span_names_the_endpoint_it_went_to(
    receiver: OTLPReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    procs: list[Proc] = []
    with SimulatorThread({"defaults": {"ttft_ms": {"p50": 2, "p95": 4}}}) as west:
        try:
            files = {"pools.yaml": POOL.replace("{SIM2}", west.url), "policy.yaml": POLICY}
            stack = Stack(procs, tmp_path, files, "seed: 1\n")
            client = openai.OpenAI(
                base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0
            )
            ports = {"east": stack.sim_port, "west": west.port}
            seen = set()
            for _ in range(12):
                trace_id = secrets.token_bytes(16)
                raw = client.chat.completions.with_raw_response.create(
                    model="auto",
                    messages=[{"role": "user", "content": "hello"}],
                    extra_headers={
                        "traceparent": f"00-{trace_id.hex()}-{secrets.token_hex(8)}-01",
                        "Cache-Control": "no-cache",
                    },
                )
                name = raw.headers["x-skyroute-attempts"].split(";")[0].removeprefix("spread@")

                def attempt_span(tid: bytes = trace_id) -> bool:
                    return any(
                        s.trace_id == tid and s.name == "chat spread" for s in receiver.spans
                    )

                wait_until(attempt_span, timeout=10, what="the attempt span")
                (span,) = [
                    s for s in receiver.spans if s.trace_id == trace_id and s.name == "chat spread"
                ]
                a = attrs(span)
                assert a["skyroute.endpoint"] == name
                assert (a["server.address"], a["server.port"]) == ("127.0.0.1", ports[name])
                seen.add(name)
            assert seen == {"east", "west"}  # 12 draws at 1:1: both, but for 1 in 2048
        finally:
            for p in reversed(procs):
                p.stop()
