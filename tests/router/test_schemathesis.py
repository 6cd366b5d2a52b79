"""The router's own OpenAPI document, checked by schemathesis against the running router.

One real router over loopback (open, no Tenant declared) with the provider
simulator upstream. ``GET /openapi.json`` is loaded with
``schemathesis.openapi.from_url`` and every operation it lists (each door,
``/v1/models``, the probes, the document itself) gets schemathesis-generated
requests, derandomized and few per operation. Every answer must not be a 5xx,
must have a status and a content type the document lists, and its body must
match the schema given for that status (a valid answer, or the door's own
error shape). The document's enums and bounds come from the codecs, so these
requests also probe the codecs' edges (a temperature of exactly 2, four stop
sequences, a 32 768-character embedding input...).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from skyroute.router.ingress import openapi

from harness import BASE_POOL, Stack, http_get, running_stack

FILES = {
    "pools.yaml": BASE_POOL
    + """\
    - name: base-embed
      provider: openai
      endpoint: "{SIM}/openai/v1"
      embeddingSpace: base
      pricing: {inputPerMTok: 0.02, outputPerMTok: 0.0}
""",
    "policy.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: schema}
spec:
  default: true
  defaultPool: base
  selection: {mode: ordered}
  # The pool's one model is OpenAI's, which takes at most 4 stop sequences; the
  # Messages door takes up to 64. Dropping them keeps every request the document
  # describes servable here (skip, the default, would answer 400 unsupported_parameter).
  parameters: {stop: drop}
""",
}
SCENARIO = """\
seed: 11
defaults:
  ttft_ms: {p50: 1, p95: 1}
  tokens_per_s: 100000
  completion_tokens: {p50: 4, p95: 4, min: 4, max: 4}
  error_rate: 0
"""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Operations that must accept every request the document describes (a 2xx for positive
# data); the others name things that may not exist (a feedback id, a stored response).
ACCEPTS = {
    "POST /v1/chat/completions",
    "POST /v1/explain",
    "POST /v1/messages",
    "POST /v1/messages/count_tokens",
    "POST /v1/responses",
    "POST /v1/embeddings",
    "GET /v1/models",
    "GET /healthz",
    "GET /readyz",
    "GET /openapi.json",
}
TIMEOUT = 15.0  # a request the router holds longer than this fails the check
# Few examples per operation and mode, the same ones every run (no example database).
FUZZ = settings(
    max_examples=6,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("schemathesis"), FILES, SCENARIO) as stack:
        yield stack


@pytest.fixture(scope="module")
def http(stack: Stack) -> str:
    return stack.routers[0][2]


@pytest.fixture(scope="module")
def api_schema(http: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(http + "/openapi.json", timeout=TIMEOUT)


def test_document_lists_the_doors_served_and_only_those(http: str) -> None:
    code, raw = http_get(http + "/openapi.json")
    assert code == 200
    doc = json.loads(raw)
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    for door in ("chat/completions", "messages", "responses", "embeddings"):
        assert ("POST", f"/v1/{door}") in ops
    assert ("GET", "/v1/models") in ops
    assert not any(p.startswith(("/debug", "/metrics")) for _, p in ops), ops
    assert all(m != "HEAD" for m, _ in ops)
    # Bounds are the codecs' own: temperature 0-2, at most four stop sequences.
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert body["temperature"] == {"type": "number", "minimum": 0.0, "maximum": 2.0}
    assert body["stop"]["anyOf"][1]["maxItems"] == 4
    assert doc["components"]["schemas"]["Model"]["enum"] == ["auto", "schema"]
    # Each door's errors in its own format: Anthropic's on /v1/messages.
    msg = doc["paths"]["/v1/messages"]["post"]["responses"]["400"]["$ref"].split("/")[-1]
    error = doc["components"]["responses"][msg]["content"]["application/json"]["schema"]
    assert error["required"] == ["type", "error"]
    assert len(raw) <= openapi.MAX_BYTES


def _run(operation: APIOperation, mode: GenerationMode, http: str) -> Counter[int]:
    """Schemathesis cases for one operation; the statuses they were answered with."""
    seen: Counter[int] = Counter()

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        accepts = mode == GenerationMode.POSITIVE and operation.label in ACCEPTS
        response = case.call_and_validate(
            base_url=http,
            headers={"Cache-Control": "no-cache"},
            checks=[*CHECKS, positive_data_acceptance] if accepts else CHECKS,
            timeout=TIMEOUT,
        )
        seen[response.status_code] += 1

    check()
    return seen


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_the_document(
    api_schema: schemathesis.BaseSchema, http: str, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    statuses = {}
    for operation in operations:
        # Negative data needs something to break: a body or a path parameter.
        if mode == GenerationMode.POSITIVE or operation.body or operation.path_parameters:
            statuses[operation.label] = _run(operation, mode, http)
    # Every operation was exercised (each answered at least one generated request).
    assert all(sum(seen.values()) > 0 for seen in statuses.values()), statuses
