"""Azure OpenAI: deployment URLs with api-version, the api-key header, Azure's failures.

The wire codec is OpenAI's (tests/providers/test_adapters_live.py runs every
adapter case against the simulator's Azure surface too); these check what
Azure adds: where a request goes, how it authenticates, how the snapshot's
``api_version`` reaches the URL, and how Azure's content-filter results and
error bodies are classified.
"""

from __future__ import annotations

import orjson
import pytest

from skyroute.router import providers
from skyroute.router.providers import registry
from skyroute.router.providers.azure_adapter import DEFAULT_API_VERSION, deployment_url
from skyroute.router.providers.errors import classify_status
from skyroute.router.providers.types import (
    AUTH,
    CONTENT_FILTER,
    NOT_FOUND,
    RATE_LIMITED,
    ProviderError,
    StreamEnd,
    Target,
    TextDelta,
)
from skyroute.router.table import build_table
from skyroute.v1 import snapshot_pb2

ENDPOINT = "https://contoso-eu.openai.azure.com"


def test_deployment_url_carries_the_api_version_and_quotes_the_deployment() -> None:
    _, prep = providers.prepared(Target("azure-openai", ENDPOINT, "gpt-4o-eu", "k1"))
    assert (
        prep.url
        == prep.stream_url
        == (
            f"{ENDPOINT}/openai/deployments/gpt-4o-eu/chat/completions"
            f"?api-version={DEFAULT_API_VERSION}"
        )
    )
    _, prep = providers.prepared(
        Target("azure-openai", ENDPOINT, "gpt-4o-eu", "k1", "2025-01-01-preview")
    )
    assert prep.url.endswith(
        "/deployments/gpt-4o-eu/chat/completions?api-version=2025-01-01-preview"
    )
    assert deployment_url(ENDPOINT + "/", "a/b c", "v&x") == (
        f"{ENDPOINT}/openai/deployments/a%2Fb%20c/chat/completions?api-version=v%26x"
    )


def test_the_key_goes_in_the_api_key_header_only() -> None:
    _, prep = providers.prepared(Target("azure-openai", ENDPOINT, "d", "secret-1"))
    for headers in (prep.headers, prep.stream_headers):
        assert headers["api-key"] == "secret-1"
        assert "Authorization" not in headers
    _, anonymous = providers.prepared(Target("azure-openai", ENDPOINT, "d", None))
    assert "api-key" not in anonymous.headers


def test_otel_name() -> None:
    assert registry.provider_name("azure-openai", "contoso.openai.azure.com") == "azure.ai.openai"


def test_snapshot_api_version_reaches_the_target() -> None:
    snap = snapshot_pb2.Snapshot(version="v1")
    pool = snap.pools.add(name="p")
    pool.candidates.add(
        model="gpt-4o",
        provider="azure-openai",
        endpoint=ENDPOINT,
        upstream_model="gpt-4o-eu",
        api_version="2025-03-01-preview",
        context_window=8192,
    )
    pool.candidates.add(model="d2", provider="azure-openai", endpoint=ENDPOINT, context_window=8192)
    snap.policies.add(name="default", default_pool="p")
    policy = build_table(snap).policy("default")
    assert policy is not None
    first, second = policy.pools["p"]
    assert (first.target.model, first.target.api_version) == ("gpt-4o-eu", "2025-03-01-preview")
    assert second.target.api_version is None
    assert providers.prepared(second.target)[1].url.endswith(f"api-version={DEFAULT_API_VERSION}")


AZURE_FILTER_400 = orjson.dumps(
    {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
            "content management policy.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": False, "severity": "safe"},
                    "self_harm": {"filtered": True, "severity": "high"},
                    "violence": {"filtered": True, "severity": "medium"},
                    "jailbreak": {"filtered": False, "detected": False},
                },
            },
        }
    }
)


def test_content_filter_400_names_the_filtered_categories() -> None:
    err = classify_status("azure-openai", 400, AZURE_FILTER_400, {}, None)
    assert err.error_class == CONTENT_FILTER and err.status == 400
    assert "(content_filter 400 ResponsibleAIPolicyViolation)" in err.message
    assert "[filtered: self_harm, violence]" in err.message


def test_azure_status_bodies() -> None:
    denied = orjson.dumps({"error": {"code": "401", "message": "Access denied due to invalid key"}})
    assert classify_status("azure-openai", 401, denied, {}, None).error_class == AUTH
    limited = orjson.dumps({"error": {"code": "429", "message": "Please retry after 6 seconds."}})
    err = classify_status("azure-openai", 429, limited, {"retry-after": "6"}, None)
    assert (err.error_class, err.retry_after_s) == (RATE_LIMITED, 6.0)
    missing = orjson.dumps({"error": {"code": "DeploymentNotFound", "message": "no deployment"}})
    err = classify_status("azure-openai", 404, missing, {}, "k")
    # the deployment is the candidate's configuration, not the request: the next one is tried
    assert err.error_class == NOT_FOUND and err.retryable and "DeploymentNotFound" in err.message
    # a non-filter innererror names no categories
    plain = orjson.dumps({"error": {"code": "BadRequest", "message": "m", "innererror": {}}})
    assert "[filtered" not in classify_status("azure-openai", 400, plain, {}, None).message


def _answer(finish: str, content: str | None) -> bytes:
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "finish_reason": finish}
    choice["content_filter_results"] = {"violence": {"filtered": finish == "content_filter"}}
    return orjson.dumps({"choices": [choice], "usage": {"prompt_tokens": 3}})


def test_completion_withheld_by_the_filter_is_content_filter() -> None:
    adapter = providers.ADAPTERS["azure-openai"]
    with pytest.raises(ProviderError) as err:
        adapter.decode(_answer("content_filter", None))
    assert err.value.error_class == CONTENT_FILTER
    assert err.value.message.startswith("azure-openai: ")
    partial = adapter.decode(_answer("content_filter", "Here is part"))
    assert (partial.content, partial.finish_reason) == ("Here is part", "content_filter")


def test_stream_prompt_filter_chunk_then_filtered_completion() -> None:
    adapter = providers.ADAPTERS["azure-openai"]
    head = b'{"choices":[],"prompt_filter_results":[{"prompt_index":0}]}'
    filtered = b'{"choices":[{"index":0,"delta":{},"finish_reason":"content_filter"}]}'
    asm = adapter.assembler()
    assert asm.feed(head) == [] and not asm.started
    assert asm.feed(filtered) == [] and asm.feed(b"[DONE]") == []
    with pytest.raises(ProviderError) as err:
        asm.at_eof()
    assert err.value.error_class == CONTENT_FILTER
    asm = adapter.assembler()
    asm.feed(head)
    text = b'{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}'
    assert asm.feed(text) == [TextDelta("ok")]
    asm.feed(filtered)
    asm.feed(b"[DONE]")
    assert asm.at_eof() == [StreamEnd("content_filter", 0, 0, reported=False)]
