"""The simulator's embeddings: OpenAI ``/embeddings`` (official SDK) and Gemini raw REST.

Vectors are deterministic per (model, text, dimensions), unit length, and
differ between models; scenario faults apply as to chat; malformed bodies
are the family's 400.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import aiohttp
import openai
import pytest
from test_gemini_raw import post

from skyroute.simulator.harness import SimulatorThread


def _openai(sim: SimulatorThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.url + "/openai/v1", api_key="k", max_retries=0)


def test_openai_vectors_are_deterministic_unit_and_per_model(sim: SimulatorThread) -> None:
    client = _openai(sim)
    a = client.embeddings.create(model="m-1", input=["x", "y"], dimensions=12)  # base64
    b = client.embeddings.create(model="m-1", input=["x", "y"], encoding_format="float")
    other = client.embeddings.create(model="m-2", input="x", dimensions=12)
    assert [len(d.embedding) for d in a.data] == [12, 12]
    assert len(b.data[0].embedding) == 64  # the default size
    assert math.isclose(sum(v * v for v in a.data[0].embedding), 1.0, rel_tol=1e-4)
    again = client.embeddings.create(model="m-1", input="x", dimensions=12)
    assert again.data[0].embedding == a.data[0].embedding
    assert other.data[0].embedding != pytest.approx(a.data[0].embedding)
    assert a.usage.prompt_tokens >= 1


def test_openai_faults_and_malformed_bodies(sim: SimulatorThread) -> None:
    client = _openai(sim)
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="err-rate_limited", input="x")
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="err-stream_cut", input="x")  # a stream fault: a 500
    for body in (
        {"model": "m", "input": []},
        {"model": "m", "input": "x", "encoding_format": "hex"},
        {"model": "m", "input": "x", "dimensions": 0},
        {"input": "x"},
    ):
        with pytest.raises(openai.BadRequestError):
            client.post("/embeddings", body=body, cast_to=dict)


def test_gemini_embed_content_and_batch(sim: SimulatorThread) -> None:
    content = {"parts": [{"text": "hello"}]}
    status, _, raw = post(
        sim, "g-embed", "embedContent", {"content": content, "outputDimensionality": 5}
    )
    assert status == 200
    one = json.loads(raw)["embedding"]["values"]
    assert len(one) == 5
    batch: dict[str, Any] = {
        "requests": [
            {"model": "models/g-embed", "content": content, "outputDimensionality": 5},
            {"model": "models/g-embed", "content": {"parts": [{"text": "bye"}]}},
        ]
    }
    status, _, raw = post(sim, "g-embed", "batchEmbedContents", batch)
    assert status == 400  # two sizes in one batch
    batch["requests"][1]["outputDimensionality"] = 5
    status, _, raw = post(sim, "g-embed", "batchEmbedContents", batch)
    assert status == 200
    got = [e["values"] for e in json.loads(raw)["embeddings"]]
    assert got[0] == one and len(got[1]) == 5 and got[1] != one
    for bad in ({}, {"content": {"parts": []}}, {"content": {"parts": [{"text": ""}]}}):
        assert post(sim, "g-embed", "embedContent", bad)[0] == 400
    assert post(sim, "g-embed", "batchEmbedContents", {"requests": []})[0] == 400


def test_not_json_is_a_400(sim: SimulatorThread) -> None:
    async def go() -> int:
        async with (
            aiohttp.ClientSession() as s,
            s.post(sim.url + "/openai/v1/embeddings", data=b"{nope") as r,
        ):
            return r.status

    assert asyncio.run(go()) == 400
