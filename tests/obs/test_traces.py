"""Traces: an OTLP receiver started here gets the router's spans, in the caller's trace.

One request span per request, a child per cache lookup and per upstream
attempt, with the GenAI attributes; the client's ``traceparent`` (HTTP header
or gRPC metadata) is continued, and the upstream (a recording proxy in front
of the simulator) receives a ``traceparent`` naming the attempt span.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import grpc
import openai
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Proc, Stack, keys_cli, wait_until
from obskit import OTLPReceiver, RecordingProxy, attrs
from policies import FAILING_PRIMARY, FILES


@pytest.fixture
def stack(
    receiver: OTLPReceiver,
    proxy: RecordingProxy,
    procs: list[Proc],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Stack:
    # procs after receiver: the processes stop (and flush their spans) before it closes.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "500")
    files = {name: text.replace("{SIM}", proxy.url) for name, text in FILES.items()}
    # The primary model always fails with a 500: two attempts per FAQ request.
    st = Stack(procs, tmp_path, files, FAILING_PRIMARY.replace("KIND", "server_error"))
    proxy.target = st.sim
    return st


def _spans(
    receiver: OTLPReceiver, trace_id: bytes, n: int, parent: bytes | None = None
) -> list[trace_pb2.Span]:
    """At least ``n`` spans of the trace, one of them ``parent``'s child when given.

    The request span ends after its attempts', so it can come in a later export
    batch than they do: waiting for a count alone may see only the children.
    """

    def enough() -> bool:
        got = [s for s in receiver.spans if s.trace_id == trace_id]
        return len(got) >= n and (parent is None or any(s.parent_span_id == parent for s in got))

    wait_until(enough, timeout=10, what=f"{n} spans of trace {trace_id.hex()}")
    return [s for s in receiver.spans if s.trace_id == trace_id]


def test_request_span_has_one_child_per_attempt_in_the_callers_trace(
    stack: Stack, receiver: OTLPReceiver, proxy: RecordingProxy
) -> None:
    trace_id, parent_id = secrets.token_bytes(16), secrets.token_bytes(8)
    c = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0)
    raw = c.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "how do I reset my password?"}],
        extra_headers={"traceparent": f"00-{trace_id.hex()}-{parent_id.hex()}-01"},
    )
    assert raw.headers["x-skyroute-model"] == "backup-model"

    spans = _spans(receiver, trace_id, 4, parent_id)
    roots = [s for s in spans if s.parent_span_id == parent_id]
    assert len(roots) == 1, [s.name for s in spans]
    root = roots[0]
    ra = attrs(root)
    assert root.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert ra["skyroute.pool"] == "fast" and ra["skyroute.policy"] == "support"
    assert ra["gen_ai.response.model"] == "backup-model" and ra["skyroute.attempts"] == 2
    children = [s for s in spans if s.parent_span_id == root.span_id]
    cache = [s for s in children if s.name == "cache lookup"]
    attempts = sorted(
        (s for s in children if s.name.startswith("chat ")), key=lambda s: s.start_time_unix_nano
    )
    assert len(cache) == 1 and attrs(cache[0])["skyroute.cache"] == "miss"
    assert len(attempts) == 2
    first, second = (attrs(s) for s in attempts)
    assert first["gen_ai.request.model"] == "primary-model"
    assert first["gen_ai.provider.name"] == "openai" and first["skyroute.pool"] == "fast"
    assert first["error.type"] == "server_error"
    # server.address/port name the upstream each attempt went to (here the proxy).
    upstream = ("127.0.0.1", proxy.port)
    assert (first["server.address"], first["server.port"]) == upstream
    assert (second["server.address"], second["server.port"]) == upstream
    assert second["gen_ai.response.model"] == "backup-model"
    assert "gen_ai.response.model" not in first
    assert attempts[0].status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert second["gen_ai.request.model"] == "backup-model"
    assert second["gen_ai.provider.name"] == "anthropic" and "error.type" not in second

    # Each upstream call carried the trace, naming its own attempt span as parent.
    sent = [h["traceparent"] for h in proxy.headers if "traceparent" in h]
    assert sent == [f"00-{trace_id.hex()}-{s.span_id.hex()}-01" for s in attempts]


def test_grpc_metadata_trace_is_continued(stack: Stack, receiver: OTLPReceiver) -> None:
    trace_id, parent_id = secrets.token_bytes(16), secrets.token_bytes(8)
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        resp = stub.Complete(
            router_pb2.CompletionRequest(
                messages=[
                    router_pb2.Message(role="user", content="compare the premium and basic tiers")
                ]
            ),
            metadata=(("traceparent", f"00-{trace_id.hex()}-{parent_id.hex()}-01"),),
            timeout=10,
        )
    assert resp.model == "smart-model"
    spans = _spans(receiver, trace_id, 2, parent_id)
    root = next(s for s in spans if s.parent_span_id == parent_id)
    assert attrs(root)["skyroute.pool"] == "smart"
    attempt = [s for s in spans if s.parent_span_id == root.span_id]
    assert [attrs(s)["gen_ai.request.model"] for s in attempt] == ["smart-model"]
    # The GenAI conventions' name for the Gemini API (Vertex AI would be gcp.vertex_ai).
    assert attrs(attempt[0])["gen_ai.provider.name"] == "gcp.gemini"


def test_a_keyed_request_span_names_who_pays_and_what_it_cost(
    stack: Stack, receiver: OTLPReceiver
) -> None:
    """The spend attributes: the tenant billed, its key's public id (never the secret), cost."""
    stack.write(
        "tenants.yaml",
        "apiVersion: skyroute.io/v1alpha1\nkind: Tenant\nmetadata: {name: payer}\n"
        'spec:\n  policies: ["*"]\n',
    )
    key = keys_cli("create", "--tenant", "payer", "--source", str(stack.source))
    wait_until(lambda: stack.router_status()["door"]["keys"] == 1, what="the key pushed")
    trace_id, parent_id = secrets.token_bytes(16), secrets.token_bytes(8)
    c = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key=key, max_retries=0)
    raw = c.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "how do I reset my password?"}],
        extra_headers={
            "traceparent": f"00-{trace_id.hex()}-{parent_id.hex()}-01",
            "x-skyroute-tenant": "someone-else",  # not a delegating tenant: ignored
        },
    )
    cost = float(raw.headers["x-skyroute-cost-usd"])
    assert cost > 0
    spans = _spans(receiver, trace_id, 2, parent_id)
    (root,) = [s for s in spans if s.parent_span_id == parent_id]
    ra = attrs(root)
    assert ra["skyroute.account"] == "payer"
    assert ra["skyroute.key_id"] == key.split("-")[2]
    assert abs(ra["skyroute.cost_usd"] - cost) < 1e-9
    secret = key.rsplit("-", 1)[1]
    assert all(secret not in str(attrs(s)) for s in spans)
