"""The router's embeddings wires: what goes upstream, and answers it must not trust.

Pure translation (no I/O): the OpenAI and Gemini encodings of an
:class:`EmbedRequest`, the URLs derived from each family's prepared target,
and a ``BAD_RESPONSE`` for an answer with the wrong count, size or type of
vectors, so none reaches a client.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from skyroute.router.providers import prepared
from skyroute.router.providers.embeddings import EmbedRequest, GeminiEmbeddings, OpenAIEmbeddings
from skyroute.router.providers.types import BAD_RESPONSE, ProviderError, Target

REQ = EmbedRequest(("a", "b"), dimensions=2, prompt_tokens=7)


def test_openai_encoding_url_and_usage() -> None:
    wire = OpenAIEmbeddings()
    _, prep = prepared(Target("openai", "http://h/openai/v1", "emb"))
    assert wire.url(prep) == "http://h/openai/v1/embeddings"
    body = orjson.loads(wire.encode(REQ, "emb"))
    assert body == {
        "model": "emb",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 2,
    }
    raw = {
        "data": [{"index": 1, "embedding": [3, 4]}, {"index": 0, "embedding": [1.0, 2.0]}],
        "usage": {"prompt_tokens": 3},
    }
    got = wire.decode(raw, REQ)
    assert got.vectors == [[1.0, 2.0], [3.0, 4.0]] and got.prompt_tokens == 3
    assert wire.decode({"data": raw["data"]}, REQ).prompt_tokens == 7  # no usage: the estimate


def test_gemini_encoding_and_url() -> None:
    wire = GeminiEmbeddings()
    _, prep = prepared(Target("gemini", "http://h/gemini", "gem"))
    assert wire.url(prep) == "http://h/gemini/v1beta/models/gem:batchEmbedContents"
    body = orjson.loads(wire.encode(REQ, "gem"))
    assert body["requests"][1] == {
        "model": "models/gem",
        "outputDimensionality": 2,
        "content": {"parts": [{"text": "b"}]},
    }
    got = wire.decode({"embeddings": [{"values": [1, 0]}, {"values": [0, 1]}]}, REQ)
    assert got.vectors == [[1.0, 0.0], [0.0, 1.0]] and got.prompt_tokens == 7


@pytest.mark.parametrize(
    ("wire", "raw"),
    [
        (OpenAIEmbeddings(), []),
        (OpenAIEmbeddings(), {"data": [{"index": 0, "embedding": [1, 2]}]}),  # one for two
        (OpenAIEmbeddings(), {"data": [{"embedding": [1, 2]}, {"embedding": [1, 2, 3]}]}),
        (OpenAIEmbeddings(), {"data": [{"embedding": "AAAA"}, {"embedding": [1, 2]}]}),
        (OpenAIEmbeddings(), {"data": [{"embedding": [True, 2]}, {"embedding": [1, 2]}]}),
        (GeminiEmbeddings(), {"embedding": {"values": [1, 2]}}),
        (GeminiEmbeddings(), {"embeddings": [{"values": [1, 2]}, {"values": None}]}),
    ],
)
def test_an_answer_not_as_promised_is_a_bad_response(wire: Any, raw: Any) -> None:
    with pytest.raises(ProviderError) as exc:
        wire.decode(raw, REQ)
    assert exc.value.error_class == BAD_RESPONSE
