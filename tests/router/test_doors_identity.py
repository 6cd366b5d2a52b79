"""The door's identity-and-limits stage is one pipeline stage: both doors ask the same.

A real control plane with two Tenants in its folder, keys made by ``skyroute
keys create``, one real router: a missing key, a key over ``Authorization:
Bearer`` / ``x-api-key`` / gRPC ``authorization`` metadata, a policy the
tenant may not use and a spent rate limit get the same answer through the
HTTP door (the official ``openai`` SDK) and the gRPC door (the generated
stub), and the key's tenant, never the client's header, is the tenant signal.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import openai
import pytest

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import BASE_POOL, Proc, Stack, keys_cli, wait_until

FILES = {
    "pool.yaml": BASE_POOL
    + """\
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: cheap}
spec:
  models:
    - name: cheap-model
      provider: openai
      endpoint: "{SIM}/openai/v1"
      pricing: {inputPerMTok: 0.1, outputPerMTok: 0.2}
""",
    "policies.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: shop}
spec:
  default: true
  defaultPool: base
  rules:
    - {name: klingon, match: {locales: [tlh]}, pool: cheap}
---
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: internal}
spec:
  defaultPool: base
""",
    "tenants.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: shop}
spec:
  tier: standard
  policies: [shop]
  rateLimits: {requestsPerMinute: 600}
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: tiny}
spec:
  policies: [shop]
  rateLimits: {requestsPerMinute: 2}
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: meter}
spec:
  policies: [shop]
  rateLimits: {tokensPerMinute: 1000000}
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: thrifty}
spec:
  policies: [shop]
  budgets:
    - {name: daily, usd: 0.01, period: day, action: route, pool: cheap, softShare: 0.01}
""",
}
SCENARIO = """\
seed: 5
defaults:
  ttft_ms: {p50: 2, p95: 4}
  tokens_per_s: 20000
  completion_tokens: {p50: 8, p95: 8, min: 8, max: 8}
  error_rate: 0
"""
ASK = [{"role": "user", "content": "hello"}]


def _key(stack: Stack, tenant: str) -> str:
    return keys_cli("create", "--tenant", tenant, "--source", str(stack.source))


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, str]]]:
    procs: list[Proc] = []
    try:
        stack = Stack(procs, tmp_path_factory.mktemp("door"), FILES, SCENARIO)
        keys = {t: _key(stack, t) for t in ("shop", "tiny", "meter", "thrifty")}
        wait_until(lambda: stack.router_status()["door"]["keys"] == 4, what="keys pushed")
        yield stack, keys
    finally:
        for p in reversed(procs):
            p.stop()


def _http(stack: Stack, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key=key, max_retries=0, timeout=20
    )


def _grpc(
    stack: Stack, key: str | None, **fields: str | int
) -> tuple[grpc.RpcError | None, object]:
    req = router_pb2.CompletionRequest(
        messages=[router_pb2.Message(role="user", content="hello")], **fields
    )
    md = (("authorization", f"Bearer {key}"),) if key else ()
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        try:
            return None, stub.Complete.with_call(req, metadata=md, timeout=20)
        except grpc.RpcError as e:
            return e, None


def test_a_router_with_tenants_asks_for_a_key_at_both_doors(
    keyed: tuple[Stack, dict[str, str]],
) -> None:
    stack, _ = keyed
    assert stack.router_status()["door"]["open"] is False
    with pytest.raises(openai.AuthenticationError) as e:
        _http(stack, "sk-not-a-skyroute-key").chat.completions.create(model="auto", messages=ASK)
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    err, _ = _grpc(stack, None)
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "didn't provide an API key" in (err.details() or "")
    err, _ = _grpc(stack, "sk-not-a-skyroute-key")
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.details() == e.value.body["message"]  # type: ignore[index]


def test_a_key_is_its_tenant_on_both_doors_whatever_the_header_says(
    keyed: tuple[Stack, dict[str, str]],
) -> None:
    stack, keys = keyed
    spoof = {"x-skyroute-tenant": "tiny", "x-skyroute-user-tier": "enterprise"}
    resp = _http(stack, keys["shop"]).chat.completions.with_raw_response.create(
        model="auto", messages=ASK, extra_headers=spoof
    )
    assert resp.parse().model == "base-model"
    assert resp.headers["x-ratelimit-limit-requests"] == "600"
    err, got = _grpc(stack, keys["shop"], tenant="tiny", user_tier="enterprise")
    assert err is None
    answer, call = got  # type: ignore[misc]
    trailers = dict(call.trailing_metadata())
    assert trailers["x-ratelimit-limit-requests"] == "600"
    assert answer.decision.signals.tenant == "shop"
    assert answer.decision.signals.user_tier == "standard"
    # x-api-key (Anthropic clients' header) is as good as a Bearer token.
    explained = _http(stack).post(
        "/explain",
        body={"model": "auto", "messages": ASK},
        cast_to=object,
        options={"headers": {"x-api-key": keys["shop"], "Authorization": "", **spoof}},
    )
    assert explained["signals"]["tenant"] == "shop"  # type: ignore[index]


def test_a_policy_the_tenant_may_not_use_is_forbidden_on_both_doors(
    keyed: tuple[Stack, dict[str, str]],
) -> None:
    stack, keys = keyed
    with pytest.raises(openai.PermissionDeniedError) as e:
        _http(stack, keys["shop"]).chat.completions.create(model="internal", messages=ASK)
    assert e.value.code == "permission_denied"
    err, _ = _grpc(stack, keys["shop"], policy="internal")
    assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == e.value.body["message"]  # type: ignore[index]


def test_a_spent_rate_limit_is_refused_on_both_doors(
    keyed: tuple[Stack, dict[str, str]],
) -> None:
    stack, keys = keyed
    http = _http(stack, keys["tiny"])
    # GCRA: a burst up to the whole limit (2 per minute), then nothing for 30 s.
    http.chat.completions.create(model="auto", messages=ASK)
    err, _ = _grpc(stack, keys["tiny"])
    assert err is None
    with pytest.raises(openai.RateLimitError) as e:
        http.chat.completions.create(model="auto", messages=ASK)
    assert e.value.code == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1
    err, _ = _grpc(stack, keys["tiny"])
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Rate limit reached for tiny" in (err.details() or "")
    trailers = dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]
    assert int(trailers["retry-after"]) >= 1
    assert stack.router_status()["door"]["refused"]["rate_limited"] == 2


def test_a_stream_is_charged_its_usage_not_its_estimate(
    keyed: tuple[Stack, dict[str, str]],
) -> None:
    stack, keys = keyed
    http = _http(stack, keys["meter"])
    # 200,000 completion tokens are held for the stream; the simulator answers 8, and the
    # reservation is settled on those, so the next request finds the tokens back.
    with http.chat.completions.with_streaming_response.create(
        model="auto", messages=ASK, max_tokens=200_000, stream=True
    ) as resp:
        first = 1_000_000 - int(resp.headers["x-ratelimit-remaining-tokens"])
        assert "".join(resp.iter_lines())
    assert first > 200_000  # the stream's head carried the reservation
    again = http.chat.completions.with_raw_response.create(
        model="auto", messages=ASK, max_tokens=200_000
    )
    used = 1_000_000 - int(again.headers["x-ratelimit-remaining-tokens"])
    # Held without settlement: two estimates (> 400,000, less the refill of well under
    # a few seconds at 16,667 a second); settled: one estimate and the stream's usage.
    assert used < first + 1_000, (first, used)


def test_a_budget_under_pressure_routes_to_its_pool_on_both_doors(
    keyed: tuple[Stack, dict[str, str]],
) -> None:
    stack, keys = keyed
    http = _http(stack, keys["thrifty"])
    # With 2,000 completion tokens held, a reservation uses 40% of the 1-cent budget on
    # the base pool and 4% on the cheap one: both above the soft share (1%), so from the
    # first reservation on, the tenant's requests are decided with the budget's pool.
    ask = {"model": "auto", "messages": ASK, "max_tokens": 2000}
    assert http.chat.completions.create(**ask).model == "base-model"  # type: ignore[call-overload]
    resp = http.chat.completions.with_raw_response.create(**ask)  # type: ignore[call-overload]
    assert resp.headers["x-skyroute-pool"] == "cheap"
    assert resp.headers["x-skyroute-rule"] == "budget-pressure"
    assert resp.parse().model == "cheap-model"
    err, got = _grpc(stack, keys["thrifty"], max_tokens=2000)
    assert err is None
    answer, _ = got  # type: ignore[misc]
    assert (answer.decision.pool, answer.decision.rule) == ("cheap", "budget-pressure")
    assert answer.model == "cheap-model"


def test_feedback_is_scoped_to_the_tenant_of_the_key(
    keyed: tuple[Stack, dict[str, str]],
) -> None:
    stack, keys = keyed
    resp = _http(stack, keys["shop"]).chat.completions.with_raw_response.create(
        model="auto", messages=ASK, extra_headers={"x-skyroute-tenant": "meter"}
    )
    fid = resp.headers["x-skyroute-feedback-id"]
    body = {"request_id": fid, "value": True}
    with pytest.raises(openai.AuthenticationError):
        _http(stack).post("/feedback", body=body, cast_to=object)
    # Another tenant's key (whatever its tenant header says) sees an unknown id.
    with pytest.raises(openai.NotFoundError) as e:
        _http(stack, keys["meter"]).post(
            "/feedback",
            body=body,
            cast_to=object,
            options={"headers": {"x-skyroute-tenant": "shop"}},
        )
    assert e.value.code == "unknown_request_id" and "this tenant" in e.value.message
    ok = _http(stack, keys["shop"]).post("/feedback", body=body, cast_to=object)
    assert ok["model"] == "base-model"  # type: ignore[index]
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        req = router_pb2.FeedbackRequest(request_id=fid, score=0.5)
        with pytest.raises(grpc.RpcError) as g:
            stub.Feedback(req, metadata=(("authorization", f"Bearer {keys['meter']}"),))
        assert g.value.code() == grpc.StatusCode.NOT_FOUND
        got = stub.Feedback(req, metadata=(("authorization", f"Bearer {keys['shop']}"),))
        assert got.model == "base-model"
    assert stack.router_status()["feedback"]["refused"]["other_tenant"] == 2
