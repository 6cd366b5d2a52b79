"""A spoofed tenant or tier header buys nothing: the key's tenant keys cache, idempotency, tier.

A real control plane with two Tenants (neither may delegate) and a policy
with the response cache on and a premium-tier rule, keys from ``skyroute keys
create``, one real router, the simulator upstream; the official ``openai``
SDK as the client. Tenant ``victim`` asks a question (cached) and sends an
``Idempotency-Key``; tenant ``spoofer`` then sends the same question and the
same key with ``x-skyroute-tenant: victim`` and ``x-skyroute-user-tier:
premium``: a cache miss (an upstream call of its own), no idempotent replay
(another answer), and the standard tier's pool, not the premium one.
Then a revoked key is refused within the push latency (2 s, timed from the
moment ``skyroute keys revoke`` returns).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from harness import Proc, Stack, keys_cli, wait_until

pytestmark = pytest.mark.timeout(180)

FILES = {
    "pools.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: standard}
spec:
  models:
    - name: standard-model
      provider: openai
      endpoint: "{SIM}/openai/v1"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: premium}
spec:
  models:
    - name: premium-model
      provider: openai
      endpoint: "{SIM}/openai/v1"
      pricing: {inputPerMTok: 5.0, outputPerMTok: 10.0}
""",
    "policy.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: support}
spec:
  default: true
  intents:
    - name: faq.account
      keywords: ["password", "account"]
  rules:
    - {name: premium, match: {userTiers: [premium]}, pool: premium}
  defaultPool: standard
  cache:
    enabled: true
    intents: ["faq.*"]
    ttlSeconds: 600
""",
    "tenants.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: victim}
spec:
  tier: premium
  policies: [support]
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: spoofer}
spec:
  tier: standard
  policies: [support]
""",
}
SCENARIO = """\
seed: 9
defaults:
  ttft_ms: {p50: 2, p95: 4}
  tokens_per_s: 20000
  completion_tokens: {p50: 12, p95: 20, min: 4, max: 40}
  error_rate: 0
"""
QUESTION = [{"role": "user", "content": "how do I reset my account password?"}]
SPOOF = {"x-skyroute-tenant": "victim", "x-skyroute-user-tier": "premium"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, str]]]:
    procs: list[Proc] = []
    try:
        stack = Stack(procs, tmp_path_factory.mktemp("spoof"), FILES, SCENARIO)
        keys = {
            t: keys_cli("create", "--tenant", t, "--source", str(stack.source))
            for t in ("victim", "spoofer")
        }
        wait_until(lambda: stack.router_status()["door"]["keys"] == 2, what="keys pushed")
        yield stack, keys
    finally:
        for p in reversed(procs):
            p.stop()


def _ask(stack: Stack, key: str, headers: dict[str, str] | None = None) -> Any:
    client = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model="support", messages=QUESTION, extra_headers=headers or {}
    )


def _upstream_calls(stack: Stack) -> int:
    stats: dict[str, Any] = stack.sim_stats()
    models = stats.get("models", stats)
    return sum(int(m.get("requests", 0)) for m in models.values() if isinstance(m, dict))


def test_a_spoofed_header_reaches_no_other_tenants_cache(
    keyed: tuple[Stack, dict[str, str]],
) -> None:
    stack, keys = keyed
    first = _ask(stack, keys["victim"])
    assert first.headers["x-skyroute-cache"] == "miss"
    assert first.headers["x-skyroute-pool"] == "premium"  # the victim's own tier
    wait_until(
        lambda: _ask(stack, keys["victim"]).headers["x-skyroute-cache"] == "hit",
        what="the victim's answer cached",
    )
    before = _upstream_calls(stack)
    spoofed = _ask(stack, keys["spoofer"], SPOOF)
    assert spoofed.headers["x-skyroute-cache"] == "miss"  # not the victim's partition
    assert _upstream_calls(stack) == before + 1
    # Nor the victim's tier: the standard pool, the spoofer's own.
    assert spoofed.headers["x-skyroute-pool"] == "standard"
    assert spoofed.parse().model == "standard-model"


def test_a_spoofed_header_shares_no_idempotency_scope(keyed: tuple[Stack, dict[str, str]]) -> None:
    stack, keys = keyed
    idem = {"Idempotency-Key": "order-42-refund", "Cache-Control": "no-cache"}
    original = _ask(stack, keys["victim"], idem)
    assert "x-skyroute-idempotent-replay" not in original.headers
    replay = _ask(stack, keys["victim"], idem)
    assert replay.headers.get("x-skyroute-idempotent-replay") == "true"  # the scope works
    before = _upstream_calls(stack)
    spoofed = _ask(stack, keys["spoofer"], {**idem, **SPOOF})
    assert "x-skyroute-idempotent-replay" not in spoofed.headers
    assert spoofed.parse().id != original.parse().id  # its own answer, not the victim's
    assert _upstream_calls(stack) == before + 1


def test_a_revoked_key_is_refused_within_the_push_latency(
    keyed: tuple[Stack, dict[str, str]],
) -> None:
    stack, keys = keyed
    key = keys["spoofer"]
    assert _ask(stack, key).status_code == 200
    keys_cli("revoke", "--tenant", "spoofer", "--source", str(stack.source), key.split("-")[2])
    revoked_at = time.monotonic()

    def refused() -> bool:
        try:
            _ask(stack, key)
        except openai.AuthenticationError as e:
            assert e.code == "invalid_api_key" and "revoked" in str(e.message)
            return True
        return False

    wait_until(refused, timeout=10, interval=0.02, what="the revoked key refused")
    took = time.monotonic() - revoked_at
    assert took <= 2.0, f"a revoked key was still served {took:.2f} s after the revocation"
