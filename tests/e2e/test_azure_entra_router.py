"""A router with Azure OpenAI pools on api-key and on Entra ID, the openai SDK as its client.

Real processes over loopback: the simulator (its Azure OpenAI surface, which
verifies every bearer, and its Entra ID token endpoint on a TLS listener), the
control plane compiling ModelPools with ``provider: azure-openai`` and
``auth: entra`` or an ``apiKey``, and one router whose Entra ID identity is
a Kubernetes workload identity in its environment (the federated token file,
client and tenant ids, the authority host), found by azure-identity's
``DefaultAzureCredential``. One token serves every ``auth: entra`` request;
a token the upstream stops accepting is an ``auth`` attempt and the router
falls back to the next candidate.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
import yaml

from entra_identity import entra_scenario, workload_env, write_tls
from harness import Proc, Stack, environment, free_port

KEY = "e2e-azure-key"
POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: azure-entra}
spec:
  models:
    - name: gpt-4o-entra
      provider: azure-openai
      endpoint: "{SIM}/azure"
      upstreamModel: gpt-4o-eu
      auth: entra
      pricing: {inputPerMTok: 2.5, outputPerMTok: 10.0}
    - name: gpt-4o-keyed
      provider: azure-openai
      endpoint: "{SIM}/azure"
      upstreamModel: gpt-4o-us
      apiKey: {env: SKYROUTE_E2E_AZURE_KEY}
      pricing: {inputPerMTok: 2.5, outputPerMTok: 10.0}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: azure-keyed}
spec:
  models:
    - name: gpt-4o-key-only
      provider: azure-openai
      endpoint: "{SIM}/azure"
      upstreamModel: gpt-4o-us
      apiKey: {env: SKYROUTE_E2E_AZURE_KEY}
      pricing: {inputPerMTok: 2.5, outputPerMTok: 10.0}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: azure-auth}
spec:
  default: true
  intents:
    - {name: keyed.ask, keywords: [invoice]}
  rules:
    - {name: keyed, match: {intents: [keyed.ask]}, pool: azure-keyed}
  defaultPool: azure-entra
  selection: {mode: ordered}
"""
SCENARIO: dict[str, object] = {
    "seed": 5,
    "api_key": KEY,
    "defaults": {"ttft_ms": {"p50": 2, "p95": 4}, "tokens_per_s": 20000, "error_rate": 0},
    "entra": entra_scenario(),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("azure-entra")
    tls = write_tls(tmp / "tls")
    tls_port = free_port()
    env = {
        **workload_env(tmp, f"https://127.0.0.1:{tls_port}", tls),
        "SKYROUTE_E2E_AZURE_KEY": KEY,
    }
    procs: list[Proc] = []
    # The processes inherit it: the router's azure-identity reads the workload identity.
    with environment(env):
        try:
            yield Stack(
                procs,
                tmp,
                {"pools.yaml": POOLS, "policy.yaml": POLICY},
                yaml.safe_dump(SCENARIO),
                simulator_args=[
                    "--tls-listen",
                    f"127.0.0.1:{tls_port}",
                    "--tls-cert",
                    str(tls.cert),
                    "--tls-key",
                    str(tls.key),
                ],
            )
        finally:
            for p in reversed(procs):
                p.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    ) as c:
        yield c


def ask(client: openai.OpenAI, text: str, stream: bool) -> tuple[str, str, str]:
    """(model that answered, attempt trail, answer text) for one request."""
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": text}],
        stream=stream,
        extra_headers={"Cache-Control": "no-cache"},
    )
    if stream:
        answer = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
    else:
        answer = raw.parse().choices[0].message.content or ""
    return raw.headers["x-skyroute-model"], raw.headers["x-skyroute-attempts"], answer


def test_entra_and_api_key_deployments_answer_one_token_serving_all(
    stack: Stack, client: openai.OpenAI
) -> None:
    for stream in (False, True, False, True):
        model, trail, answer = ask(client, "what is the refund policy?", stream)
        assert model == "gpt-4o-entra" and "," not in trail, trail
        assert answer.startswith("[gpt-4o-eu] ")  # the deployment in the URL
        model, trail, answer = ask(client, "where is my invoice?", stream)
        assert model == "gpt-4o-key-only" and answer.startswith("[gpt-4o-us] ")
    entra = stack.sim_stats()["entra"]
    # azure-identity asked once; every auth: entra request carried a bearer the upstream verified
    assert entra["tokens_issued"] == 1 and entra["refused"] == 0
    assert entra["bearer_ok"] == 4 and entra["bearer_rejected"] == 0


def test_a_token_the_upstream_refuses_falls_back_to_the_next_candidate(
    stack: Stack, client: openai.OpenAI
) -> None:
    # The app registration changes upstream: the router's cached token no longer passes.
    moved = {**SCENARIO, "entra": {**entra_scenario(), "client_id": "another-app"}}
    stack.put_scenario(yaml.safe_dump(moved))
    try:
        for stream in (False, True):
            model, trail, answer = ask(client, "what is the refund policy?", stream)
            assert model == "gpt-4o-keyed" and answer.startswith("[gpt-4o-us] ")
            assert trail.startswith("gpt-4o-entra;auth;401;"), trail
        assert stack.sim_stats()["entra"]["bearer_rejected"] == 2
    finally:
        stack.put_scenario(yaml.safe_dump(SCENARIO))
