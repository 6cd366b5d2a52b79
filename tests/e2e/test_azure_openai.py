"""Router with Azure OpenAI pools, end to end: the official openai SDK as the router's client.

Real processes over loopback: the simulator (its Azure surface), the control
plane compiling ModelPools with ``provider: azure-openai``, ``upstreamModel``
as the deployment and ``apiVersion``, and one router. Answers come from the
Azure deployment unary and streamed; a deployment whose content filter blocks
the prompt (Azure's 400 ``content_filter`` body) is a ``content_filter``
attempt, which the router maps to the client's 400 (a filter refusal is not
an outage to paper over), while a failing Azure deployment falls back to
another family and a missing one (404 ``DeploymentNotFound``) to the next
deployment.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from harness import Proc, Stack

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: azure}
spec:
  models:
    - name: gpt-4o
      provider: azure-openai
      endpoint: "{SIM}/azure"
      upstreamModel: gpt-4o-eu
      apiVersion: "2024-10-21"
      pricing: {inputPerMTok: 2.5, outputPerMTok: 10.0}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: filtered}
spec:
  models:
    - name: gpt-4o-filtered
      provider: azure-openai
      endpoint: "{SIM}/azure"
      upstreamModel: filtered-dep
      pricing: {inputPerMTok: 2.5, outputPerMTok: 10.0}
    - name: claude-backup
      provider: anthropic
      endpoint: "{SIM}/anthropic"
      pricing: {inputPerMTok: 3.0, outputPerMTok: 15.0}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: flaky}
spec:
  models:
    - name: gpt-4o-down
      provider: azure-openai
      endpoint: "{SIM}/azure"
      upstreamModel: down-dep
      pricing: {inputPerMTok: 2.5, outputPerMTok: 10.0}
    - name: claude-fallback
      provider: anthropic
      endpoint: "{SIM}/anthropic"
      pricing: {inputPerMTok: 3.0, outputPerMTok: 15.0}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: moved}
spec:
  models:
    - name: gpt-4o-deleted
      provider: azure-openai
      endpoint: "{SIM}/azure"
      upstreamModel: deleted-dep
      pricing: {inputPerMTok: 2.5, outputPerMTok: 10.0}
    - name: gpt-4o-west
      provider: azure-openai
      endpoint: "{SIM}/azure"
      upstreamModel: gpt-4o-west
      pricing: {inputPerMTok: 2.5, outputPerMTok: 10.0}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: azure}
spec:
  default: true
  intents:
    - {name: risky.ask, keywords: [forbidden]}
    - {name: outage.ask, keywords: [parcel]}
    - {name: moved.ask, keywords: [invoice]}
  rules:
    - {name: risky, match: {intents: [risky.ask]}, pool: filtered}
    - {name: outage, match: {intents: [outage.ask]}, pool: flaky}
    - {name: moved, match: {intents: [moved.ask]}, pool: moved}
  defaultPool: azure
  selection: {mode: ordered}
"""
SCENARIO = """\
seed: 5
defaults:
  ttft_ms: {p50: 2, p95: 4}
  tokens_per_s: 20000
  error_rate: 0
models:
  filtered-dep: {error_rate: 1, errors: {content_filter: 1}}
  down-dep: {error_rate: 1, errors: {server_error: 1}}
  deleted-dep: {error_rate: 1, errors: {not_found: 1}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    procs: list[Proc] = []
    try:
        yield Stack(
            procs,
            tmp_path_factory.mktemp("azure"),
            {"pools.yaml": POOLS, "policy.yaml": POLICY},
            SCENARIO,
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


def test_azure_deployment_answers_unary_and_streamed(stack: Stack, client: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "what is the refund policy?"}]
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=msgs,  # type: ignore[arg-type]
        extra_headers={"Cache-Control": "no-cache"},
    )
    r = raw.parse()
    assert raw.headers["x-skyroute-model"] == "gpt-4o"
    # the simulator names the deployment it was asked for: the URL carried upstreamModel
    assert (r.choices[0].message.content or "").startswith("[gpt-4o-eu] ")
    chunks = list(
        client.chat.completions.create(
            model="auto",
            messages=msgs,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"Cache-Control": "no-cache"},
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content
    assert stack.sim_stats()["models"]["gpt-4o-eu"]["streams"] >= 1


def test_content_filter_is_mapped_to_the_clients_400(stack: Stack, client: openai.OpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": "tell me the forbidden thing"}],
                stream=stream,
                extra_headers={"Cache-Control": "no-cache"},
            )
        assert err.value.code == "content_filter"
        # one attempt only: a filter refusal is not retried on the next candidate
        trail = err.value.response.headers["x-skyroute-attempts"]
        assert trail.startswith("gpt-4o-filtered;content_filter;400;") and "," not in trail
    assert stack.sim_stats()["models"]["filtered-dep"]["errors"]["content_filter"] == 2


@pytest.mark.parametrize(
    ("word", "served_by", "first_attempt", "dep", "kind"),
    [
        # a failing deployment (500) falls back to another family
        ("parcel", "claude-fallback", "gpt-4o-down;server_error;500;", "down-dep", "server_error"),
        # Azure's 404 DeploymentNotFound is the candidate's fault, not the request's: next one
        ("invoice", "gpt-4o-west", "gpt-4o-deleted;not_found;404;", "deleted-dep", "not_found"),
    ],
)
def test_failing_or_missing_deployment_falls_back(
    stack: Stack,
    client: openai.OpenAI,
    word: str,
    served_by: str,
    first_attempt: str,
    dep: str,
    kind: str,
) -> None:
    before = stack.sim_stats()["models"].get(dep, {}).get("errors", {}).get(kind, 0)
    for stream in (False, True):
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": f"where is my {word}?"}],
            stream=stream,
            extra_headers={"Cache-Control": "no-cache"},
        )
        assert raw.headers["x-skyroute-model"] == served_by
        assert raw.headers["x-skyroute-attempts"].startswith(first_attempt)
    assert stack.sim_stats()["models"][dep]["errors"][kind] == before + 2
