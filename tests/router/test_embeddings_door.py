"""The Embeddings door, with the official ``openai`` SDK as the client.

One real router over loopback, the provider simulator upstream (OpenAI and
Gemini embeddings wire formats, deterministic vectors): ``embeddings.create``
with float and base64 (the SDK's default) encodings, list input and
``dimensions``; routed by policy to embedding pools, falling back only within
one embedding space; chat never reaches an embedding model; malformed input
is an OpenAI-shaped 400 naming the part.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import openai
import pytest

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Stack, http_get, running_stack

_MODEL = """\
    - name: {name}
      provider: {provider}
      endpoint: "{{SIM}}/{path}"
      embeddingSpace: {space}
      pricing: {{inputPerMTok: 0.02, outputPerMTok: 0.0}}
"""
_PATHS = {"openai": "openai/v1", "gemini": "gemini"}


def _pool(name: str, *models: tuple[str, str, str]) -> str:
    head = f"apiVersion: skyroute.io/v1alpha1\nkind: ModelPool\nmetadata: {{name: {name}}}\n"
    body = "".join(_MODEL.format(name=m, provider=p, path=_PATHS[p], space=s) for m, p, s in models)
    return head + "spec:\n  models:\n" + body


def _policy(name: str, pool: str, default: bool = False) -> str:
    return (
        "apiVersion: skyroute.io/v1alpha1\nkind: RoutingPolicy\n"
        f"metadata: {{name: {name}}}\nspec:\n  default: {str(default).lower()}\n"
        f"  defaultPool: {pool}\n  selection: {{mode: ordered}}\n"
    )


CHAT_POOL = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: chat}
spec:
  models:
    - name: chat-model
      provider: openai
      endpoint: "{SIM}/openai/v1"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
"""
FILES = {
    "pools.yaml": "---\n".join(
        [
            # The broken model first: its failure falls back to the same space, never to gecko.
            _pool(
                "vectors",
                ("embed-broken", "openai", "small"),
                ("embed-gecko", "gemini", "gecko"),
                ("embed-small", "openai", "small"),
            ),
            _pool("gvectors", ("gemini-embed", "gemini", "gecko")),
            _pool("split", ("split-broken", "openai", "one"), ("split-other", "gemini", "two")),
            CHAT_POOL,
        ]
    ),
    "policies.yaml": "---\n".join(
        [
            _policy("embed", "vectors"),
            _policy("gembed", "gvectors"),
            _policy("split", "split"),
            _policy("chat", "chat", default=True),
            _policy("mixed", "vectors"),
        ]
    ),
}
SCENARIO = """\
seed: 3
defaults:
  ttft_ms: {p50: 1, p95: 2}
  error_latency_ms: {p50: 1, p95: 2}
  error_rate: 0
models:
  "*-broken": {error_rate: 1.0}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("embeddings"), FILES, SCENARIO) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    )


def _received(stack: Stack) -> list[dict[str, Any]]:
    status, raw = http_get(stack.sim + "/_sim/requests", timeout=5)
    assert status == 200
    got: list[dict[str, Any]] = json.loads(raw)["requests"]
    return got


def _post(stack: Stack, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        stack.routers[0][2] + path,
        data=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_float_vectors_fall_back_within_the_embedding_space(
    stack: Stack, client: openai.OpenAI
) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="embed", input="where is my parcel", encoding_format="float"
    )
    out = raw.parse()
    assert out.model == "embed-small"  # embed-broken failed; embed-gecko is another space
    assert len(out.data) == 1 and out.data[0].index == 0
    vec = out.data[0].embedding
    assert len(vec) == 64 and abs(sum(x * x for x in vec) - 1.0) < 1e-3
    assert out.usage.prompt_tokens > 0 and out.usage.total_tokens == out.usage.prompt_tokens
    assert raw.headers["x-skyroute-pool"] == "vectors"
    paths = [r["path"] for r in _received(stack)]
    assert not any("embed-gecko" in p for p in paths)


def test_base64_list_input_with_dimensions_matches_floats(client: openai.OpenAI) -> None:
    texts = ["first text", "second text"]
    b64 = client.embeddings.create(model="embed", input=texts, dimensions=16)  # SDK: base64
    floats = client.embeddings.create(
        model="embed", input=texts, dimensions=16, encoding_format="float"
    )
    assert [d.index for d in b64.data] == [0, 1]
    for a, b in zip(b64.data, floats.data, strict=True):
        assert len(a.embedding) == 16
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    assert b64.data[0].embedding != pytest.approx(b64.data[1].embedding)
    raw = client.embeddings.with_raw_response.create(
        model="embed", input="x", encoding_format="base64"
    ).http_response.json()
    assert isinstance(raw["data"][0]["embedding"], str)


def test_gemini_batch_embed_contents(stack: Stack, client: openai.OpenAI) -> None:
    out = client.embeddings.create(
        model="gembed", input=["a", "b", "c"], dimensions=8, encoding_format="float"
    )
    assert out.model == "gemini-embed"
    assert [len(d.embedding) for d in out.data] == [8, 8, 8]
    sent = [r for r in _received(stack) if r["path"].endswith(":batchEmbedContents")][-1]
    assert sent["path"] == "/gemini/v1beta/models/gemini-embed:batchEmbedContents"
    reqs = sent["body"]["requests"]
    assert [r["content"]["parts"][0]["text"] for r in reqs] == ["a", "b", "c"]
    assert {r["outputDimensionality"] for r in reqs} == {8}


def test_no_fallback_into_another_embedding_space(stack: Stack, client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        client.embeddings.create(model="split", input="hello", encoding_format="float")
    assert exc.value.status_code >= 500
    assert not any("split-other" in r["path"] for r in _received(stack))


def test_chat_and_embeddings_never_cross(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.embeddings.create(model="chat", input="hello")
    assert "no embedding model" in str(exc.value)
    assert exc.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(
            model="mixed", messages=[{"role": "user", "content": "hello"}]
        )


def test_explain_takes_an_embeddings_body(stack: Stack) -> None:
    status, body = _post(stack, "/v1/explain?door=embeddings", {"model": "embed", "input": "x"})
    assert status == 200
    assert body["pool"] == "vectors"
    assert body["chain"] == ["embed-broken", "embed-gecko", "embed-small"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"not json", "body"),
        ({"model": "embed"}, "input"),
        ({"model": "embed", "input": []}, "input"),
        ({"model": "embed", "input": 5}, "input"),
        ({"model": "embed", "input": [1, 2, 3]}, "input[0]"),
        ({"model": "embed", "input": ["ok", ""]}, "input[1]"),
        ({"model": "embed", "input": ["ok", {"t": 1}]}, "input[1]"),
        ({"model": "embed", "input": "x" * 40_000}, "input[0]"),
        ({"model": "embed", "input": ["x"] * 2049}, "input"),
        ({"model": "embed", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "embed", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "embed", "input": "x", "dimensions": 99_999}, "dimensions"),
        ({"model": "embed", "input": "x", "user": 5}, "user"),
        ({"model": 5, "input": "x"}, "model"),
    ],
)
def test_malformed_input_is_an_openai_shaped_400(stack: Stack, body: Any, param: str) -> None:
    status, got = _post(stack, "/v1/embeddings", body)
    assert status == 400
    err = got["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    assert isinstance(err["message"], str) and err["message"]


def test_grpc_embed_matches_the_http_door(stack: Stack, client: openai.OpenAI) -> None:
    texts = ["grpc one", "grpc two"]
    http = client.embeddings.create(
        model="embed", input=texts, dimensions=8, encoding_format="float"
    )
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        req = router_pb2.EmbedRequest(policy="embed", inputs=texts, dimensions=8)
        got, call = stub.Embed.with_call(req, timeout=10)
        decision = stub.ExplainEmbed(req, timeout=10)
        with pytest.raises(grpc.RpcError) as bad:
            stub.Embed(router_pb2.EmbedRequest(policy="embed", inputs=["ok", ""]), timeout=10)
        with pytest.raises(grpc.RpcError) as chat:
            stub.Embed(router_pb2.EmbedRequest(policy="chat", inputs=["ok"]), timeout=10)
    assert got.model == "embed-small" and got.prompt_tokens > 0 and got.cost_usd > 0
    for a, b in zip(got.embeddings, http.data, strict=True):
        assert list(a.values) == pytest.approx(b.embedding, abs=1e-6)
    assert dict(call.trailing_metadata())["x-skyroute-pool"] == "vectors"
    assert decision.pool == "vectors" and list(decision.chain)[-1] == "embed-small"
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input[1]" in (bad.value.details() or "")
    assert chat.value.code() == grpc.StatusCode.NOT_FOUND
