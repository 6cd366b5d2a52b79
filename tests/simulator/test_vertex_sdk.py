"""The official Vertex AI clients against the simulator: ``google-genai`` and ``AnthropicVertex``.

``google-genai`` with ``vertexai=True`` (a project, a location, OAuth
credentials) builds Vertex AI's publisher-model URLs itself and parses the
answers and SSE streams with its own types; ``anthropic.AnthropicVertex``
moves the model into the path, puts ``anthropic_version`` in the body and
calls ``rawPredict`` / ``streamRawPredict``. Both send the access token as a
bearer, which the simulator checks, so a path, framing or error-shape
mistake in the simulator fails here. All on loopback.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import google.oauth2.credentials
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from skyroute.simulator.harness import SimulatorThread

TOKEN = "ya29.vertex-test-token"
PROJECT = "acme-prod"
SCENARIO = {
    "seed": 7,
    "time_scale": 100.0,
    "api_key": TOKEN,
    "defaults": {"error_rate": 0.0, "ttft_ms": {"p50": 100, "p95": 200}},
    "models": {
        "err-rate_limited": {"error_rate": 1.0, "errors": {"rate_limited": 1}},
        "err-overloaded": {"error_rate": 1.0, "errors": {"overloaded": 1}},
    },
}
GEMINI = "gemini-2.5-flash"
CLAUDE = "claude-sonnet-4-5@20250929"
TOOL = {
    "name": "update_shipment",
    "description": "Change a shipment",
    "input_schema": {
        "type": "object",
        "properties": {"shipment_id": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["shipment_id", "days"],
    },
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SCENARIO) as s:
        yield s


def paths(sim: SimulatorThread) -> list[str]:
    with urllib.request.urlopen(sim.url + "/_sim/requests") as resp:
        return [r["path"] for r in json.loads(resp.read())["requests"]]


def gemini(sim: SimulatorThread, token: str = TOKEN, location: str = "europe-west4") -> Any:
    return genai.Client(
        vertexai=True,
        project=PROJECT,
        location=location,
        credentials=google.oauth2.credentials.Credentials(token),  # type: ignore[no-untyped-call]
        http_options=types.HttpOptions(base_url=sim.url + "/vertex/", timeout=10_000),
    )


def claude(sim: SimulatorThread, token: str = TOKEN) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        region="us-east5",
        project_id=PROJECT,
        access_token=token,
        base_url=sim.url + "/vertex/v1",
        max_retries=0,
    )


# -- google-genai, vertexai=True -------------------------------------------------------


def test_genai_generate_content_and_stream(sim: SimulatorThread) -> None:
    client = gemini(sim)
    out = client.models.generate_content(
        model=GEMINI,
        contents="what is your refund policy?",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=4),
    )
    assert (out.text or "").startswith(f"[{GEMINI}] ")
    assert out.candidates and out.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert out.usage_metadata is not None and out.usage_metadata.candidates_token_count == 4
    chunks = list(client.models.generate_content_stream(model=GEMINI, contents="hello there"))
    text = "".join(c.text or "" for c in chunks)
    assert text.startswith(f"[{GEMINI}] ") and len(chunks) > 1
    last = chunks[-1].candidates
    assert last and last[0].finish_reason == types.FinishReason.STOP
    base = f"/vertex/v1beta1/projects/{PROJECT}/locations/europe-west4/publishers/google/models/"
    assert paths(sim)[-2:] == [
        base + GEMINI + ":generateContent",
        base + GEMINI + ":streamGenerateContent",
    ]


def test_genai_function_calling_round_trip(sim: SimulatorThread) -> None:
    client = gemini(sim)
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="update_shipment",
                description="Change a shipment",
                parameters_json_schema=TOOL["input_schema"],
            )
        ]
    )
    config = types.GenerateContentConfig(
        tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
    )
    ask = types.Content(role="user", parts=[types.Part(text="delay S1 by 2 days")])
    out = client.models.generate_content(model=GEMINI, contents=[ask], config=config)
    (call,) = out.function_calls or []
    assert call.name == "update_shipment" and call.args and call.args["days"] == 1
    assert out.candidates and out.candidates[0].content is not None
    follow = client.models.generate_content(
        model=GEMINI,
        contents=[
            ask,
            out.candidates[0].content,
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(name="update_shipment", response={"ok": True})
                ],
            ),
        ],
        config=config,
    )
    assert (follow.text or "").startswith(f"[{GEMINI}] ")


def test_genai_errors(sim: SimulatorThread) -> None:
    # (each client is kept in a name: google-genai closes its connections when one is collected)
    wrong, client, everywhere = (
        gemini(sim, "ya29.wrong"),
        gemini(sim),
        gemini(sim, location="global"),
    )
    with pytest.raises(genai_errors.ClientError) as err:
        wrong.models.generate_content(model=GEMINI, contents="hi")
    assert err.value.code == 401 and err.value.status == "UNAUTHENTICATED"
    with pytest.raises(genai_errors.ClientError) as err:
        client.models.generate_content(model="err-rate_limited", contents="hi")
    assert err.value.code == 429 and err.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(genai_errors.ServerError) as server:
        everywhere.models.generate_content(model="err-overloaded", contents="hi")
    assert server.value.code == 529
    assert paths(sim)[-1].startswith(f"/vertex/v1beta1/projects/{PROJECT}/locations/global/")


# -- anthropic.AnthropicVertex ------------------------------------------------------------


def test_anthropic_vertex_messages_unary_and_streamed(sim: SimulatorThread) -> None:
    client = claude(sim)
    msg = client.messages.create(
        model=CLAUDE,
        max_tokens=5,
        system="Be brief.",
        messages=[{"role": "user", "content": "what is your refund policy?"}],
    )
    assert msg.content[0].type == "text" and msg.content[0].text.startswith(f"[{CLAUDE}] ")
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 5
    with client.messages.stream(
        model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": "hello there"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith(f"[{CLAUDE}] ") and final.stop_reason == "end_turn"
    base = f"/vertex/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/{CLAUDE}"
    assert paths(sim)[-2:] == [base + ":rawPredict", base + ":streamRawPredict"]


def test_anthropic_vertex_tool_use_round_trip(sim: SimulatorThread) -> None:
    client = claude(sim)
    ask = {"role": "user", "content": "delay S1 by 2 days"}
    msg = client.messages.create(
        model=CLAUDE,
        max_tokens=200,
        messages=[ask],
        tools=[TOOL],  # type: ignore[list-item]
    )
    (use,) = [b for b in msg.content if b.type == "tool_use"]
    assert use.name == "update_shipment"
    assert isinstance(use.input, dict) and use.input["days"] == 1
    follow = client.messages.create(
        model=CLAUDE,
        max_tokens=200,
        tools=[TOOL],  # type: ignore[list-item]
        messages=[
            ask,  # type: ignore[list-item]
            {"role": "assistant", "content": msg.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "ok"}],
            },
        ],
    )
    assert follow.content[0].type == "text"


def test_anthropic_vertex_errors(sim: SimulatorThread) -> None:
    ask: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.AuthenticationError) as auth:
        claude(sim, token="ya29.wrong").messages.create(model=CLAUDE, max_tokens=5, messages=ask)
    assert auth.value.body["error"]["status"] == "UNAUTHENTICATED"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as rate:
        claude(sim).messages.create(model="err-rate_limited", max_tokens=5, messages=ask)
    assert "Quota exceeded" in str(rate.value)
    with pytest.raises(anthropic.InternalServerError) as over:
        claude(sim).messages.create(model="err-overloaded", max_tokens=5, messages=ask)
    assert over.value.status_code == 529 and "overloaded_error" in str(over.value.body)


def test_vertex_anthropic_body_rules(sim: SimulatorThread) -> None:
    """What AnthropicVertex does right and a hand-made request may not: each refused."""
    url = (
        f"{sim.url}/vertex/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/"
        f"models/{CLAUDE}:rawPredict"
    )
    good = {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    for bad, words in (
        ({**good, "anthropic_version": "bedrock-2023-05-31"}, "anthropic_version"),
        ({**good, "model": CLAUDE}, "model: Extra inputs"),
        ({**good, "stream": True}, "stream: must be"),
    ):
        req = urllib.request.Request(
            url,
            data=json.dumps(bad).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req)
        assert err.value.code == 400 and words in err.value.read().decode()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(
            urllib.request.Request(
                url.replace("publishers/anthropic", "publishers/meta"),
                data=json.dumps(good).encode(),
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        )
    assert err.value.code == 404 and json.loads(err.value.read())["error"]["status"] == "NOT_FOUND"
