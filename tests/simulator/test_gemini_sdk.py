"""The official ``google-genai`` client with an API key against the simulator's Gemini API surface.

The Gemini Developer API (``vertexai=False``): the key in ``x-goog-api-key``,
``{base_url}/v1/models/{model}:generateContent`` (the SDK's default version; the
router's endpoint is ``v1beta``, the same surface) and
``:streamGenerateContent?alt=sse``, answers, streams, function calls,
structured output (``response_json_schema``) and errors parsed by the SDK's
own types. The raw shapes are pinned in test_gemini_raw.py; this is what a
Gemini user's code sees.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from skyroute.simulator.harness import SimulatorThread

KEY = "gemini-test-key"
MODEL = "gemini-2.5-flash"
SCENARIO = {
    "seed": 11,
    "time_scale": 100.0,
    "api_key": KEY,
    "defaults": {"error_rate": 0.0, "ttft_ms": {"p50": 100, "p95": 200}},
    "models": {
        "err-rate_limited": {"error_rate": 1.0, "errors": {"rate_limited": 1}},
        "err-not_found": {"error_rate": 1.0, "errors": {"not_found": 1}},
        "tiny-context": {"context_window": 10},
    },
}
SHIPMENT = {
    "type": "object",
    "properties": {"shipment_id": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["shipment_id", "days"],
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SCENARIO) as s:
        yield s


def client(sim: SimulatorThread, key: str = KEY) -> Any:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=sim.url + "/gemini/", timeout=10_000),
    )


def test_generate_content_and_stream(sim: SimulatorThread) -> None:
    c = client(sim)
    out = c.models.generate_content(
        model=MODEL,
        contents="what is your refund policy?",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=4),
    )
    assert (out.text or "").startswith(f"[{MODEL}] ")
    assert out.candidates and out.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert out.usage_metadata is not None and out.usage_metadata.candidates_token_count == 4
    chunks = list(c.models.generate_content_stream(model=MODEL, contents="hello there"))
    assert "".join(ch.text or "" for ch in chunks).startswith(f"[{MODEL}] ") and len(chunks) > 1
    last = chunks[-1].candidates
    assert last and last[0].finish_reason == types.FinishReason.STOP


def test_function_call(sim: SimulatorThread) -> None:
    c = client(sim)
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="update_shipment",
                description="Change a shipment",
                parameters_json_schema=SHIPMENT,
            )
        ]
    )
    out = c.models.generate_content(
        model=MODEL,
        contents="delay shipment S1 by 2 days",
        config=types.GenerateContentConfig(tools=[tool]),
    )
    (call,) = out.function_calls or []
    assert call.name == "update_shipment"
    assert call.args is not None and set(call.args) == {"shipment_id", "days"}


def test_structured_output(sim: SimulatorThread) -> None:
    c = client(sim)
    out = c.models.generate_content(
        model=MODEL,
        contents="the shipment, as JSON",
        config=types.GenerateContentConfig(
            response_mime_type="application/json", response_json_schema=SHIPMENT
        ),
    )
    answer = json.loads(out.text or "")
    assert set(answer) >= {"shipment_id", "days"} and isinstance(answer["days"], int)


@pytest.mark.parametrize(
    ("model", "key", "code", "status"),
    [
        (MODEL, "wrong-key", 400, "INVALID_ARGUMENT"),  # Gemini's API_KEY_INVALID is a 400
        ("err-rate_limited", KEY, 429, "RESOURCE_EXHAUSTED"),
        ("err-not_found", KEY, 404, "NOT_FOUND"),
    ],
)
def test_errors_are_the_sdks_types(
    sim: SimulatorThread, model: str, key: str, code: int, status: str
) -> None:
    c = client(sim, key)
    with pytest.raises(genai_errors.APIError) as err:
        c.models.generate_content(model=model, contents="hi")
    assert err.value.code == code and err.value.status == status
