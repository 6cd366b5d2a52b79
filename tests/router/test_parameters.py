"""Chat Completions parameters reach the upstream, translated per family, or are refused.

One real router with the provider simulator upstream; the official ``openai``
SDK sends ``response_format`` (JSON schema), ``top_p``, ``stop``, ``seed`` and
friends, and the test reads what the upstream received (``GET /_sim/requests``).
Every ``tool_choice`` form and image content parts are checked per family
the same way. A parameter a family cannot honour is a 400 naming it;
malformed parameters are 400s in OpenAI's error shape naming the exact
path, never a 500.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from harness import Stack, http_get, running_stack

_POOL = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: {name}}}
spec:
  models:
    - name: {name}-model
      provider: {name}
      endpoint: "{{SIM}}/{path}"
      pricing: {{inputPerMTok: 1.0, outputPerMTok: 2.0}}
"""
_FAMILIES = {"openai": "openai/v1", "anthropic": "anthropic", "gemini": "gemini"}
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: params}
spec:
  default: true
  rules:
    - {name: anthropic, match: {tenants: [to-anthropic]}, pool: anthropic}
    - {name: gemini, match: {tenants: [to-gemini]}, pool: gemini}
  defaultPool: openai
  selection: {mode: ordered}
"""
FILES = {
    "pools.yaml": "---\n".join(_POOL.format(name=n, path=p) for n, p in _FAMILIES.items()),
    "policy.yaml": POLICY,
}
SCENARIO = """\
seed: 5
defaults:
  ttft_ms: {p50: 1, p95: 2}
  tokens_per_s: 50000
  completion_tokens: {p50: 8, p95: 8, min: 8, max: 8}
  error_rate: 0
"""
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "trip", "schema": SCHEMA, "strict": True},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("params"), FILES, SCENARIO) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    )


def _to(family: str) -> dict[str, str]:
    tenant = {} if family == "openai" else {"x-skyroute-tenant": "to-" + family}
    return {**tenant, "Cache-Control": "no-cache"}


def _received(stack: Stack, family: str) -> dict[str, Any]:
    """The body the simulator last received for ``family``."""
    status, raw = http_get(stack.sim + "/_sim/requests", timeout=5)
    assert status == 200
    got = json.loads(raw)["requests"]
    bodies = [r["body"] for r in got if r["path"].startswith("/" + family + "/")]
    assert bodies, f"no request reached the {family} upstream"
    body: dict[str, Any] = bodies[-1]
    return body


def test_openai_upstream_receives_every_parameter_and_the_sdk_parses_json(
    stack: Stack, client: openai.OpenAI
) -> None:
    out = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "plan a trip"}],
        response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
        top_p=0.5,
        stop=["END"],
        seed=42,
        frequency_penalty=0.25,
        presence_penalty=-0.5,
        logit_bias={"50256": -100},
        parallel_tool_calls=False,
        reasoning_effort="low",
        service_tier="auto",
        user="u-1",
        extra_body={"brand_new_param": {"x": 1}},
        extra_headers=_to("openai"),
    )
    answer = json.loads(out.choices[0].message.content or "")
    assert isinstance(answer["city"], str) and isinstance(answer["days"], int)
    got = _received(stack, "openai")
    assert got["response_format"] == RESPONSE_FORMAT
    assert (got["top_p"], got["stop"], got["seed"]) == (0.5, ["END"], 42)
    assert (got["frequency_penalty"], got["presence_penalty"]) == (0.25, -0.5)
    assert got["logit_bias"] == {"50256": -100}
    assert got["parallel_tool_calls"] is False
    assert (got["reasoning_effort"], got["service_tier"], got["user"]) == ("low", "auto", "u-1")
    assert got["brand_new_param"] == {"x": 1}  # unknown fields pass through to OpenAI


def test_openai_stream_with_usage_and_string_stop(stack: Stack, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "count"}],
        stop="STOP",
        seed=7,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=_to("openai"),
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    got = _received(stack, "openai")
    assert (got["stop"], got["seed"], got["stream"]) == (["STOP"], 7, True)


def test_gemini_upstream_gets_the_translated_parameters(
    stack: Stack, client: openai.OpenAI
) -> None:
    out = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "plan a trip"}],
        response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
        top_p=0.5,
        stop=["END"],
        seed=42,
        presence_penalty=0.5,
        reasoning_effort="medium",
        extra_headers=_to("gemini"),
    )
    assert set(json.loads(out.choices[0].message.content or "")) == {"city", "days"}
    gen = _received(stack, "gemini")["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseJsonSchema"] == SCHEMA
    assert (gen["topP"], gen["stopSequences"], gen["seed"]) == (0.5, ["END"], 42)
    assert gen["presencePenalty"] == 0.5
    assert gen["thinkingConfig"] == {"thinkingBudget": 4096}


def test_anthropic_upstream_gets_the_translated_parameters(
    stack: Stack, client: openai.OpenAI
) -> None:
    client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "think"}],
        top_p=0.5,
        stop=["END"],
        user="u-9",
        reasoning_effort="low",
        max_tokens=100,
        extra_headers=_to("anthropic"),
    )
    got = _received(stack, "anthropic")
    assert (got["top_p"], got["stop_sequences"]) == (0.5, ["END"])
    assert got["metadata"] == {"user_id": "u-9"}
    assert got["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert got["max_tokens"] > 1024  # room for the answer above the thinking budget


@pytest.mark.parametrize(
    ("family", "params", "name"),
    [
        ("anthropic", {"seed": 1}, "seed"),
        ("anthropic", {"response_format": RESPONSE_FORMAT}, "response_format"),
        ("anthropic", {"frequency_penalty": 0.5}, "frequency_penalty"),
        ("gemini", {"logit_bias": {"1": 5}}, "logit_bias"),
        ("gemini", {"unknown_param": 1}, "unknown_param"),
    ],
)
def test_a_parameter_a_family_cannot_honour_is_refused(
    client: openai.OpenAI, family: str, params: dict[str, Any], name: str
) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            extra_body=params,
            extra_headers=_to(family),
        )
    assert name in str(exc.value) and family in str(exc.value)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text",
        ),
        ({"stream": "false"}, "stream"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 2}, "n"),
        ({"seed": 1.5}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema.name"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"logprobs": True}, "logprobs"),
    ],
)
def test_malformed_parameters_are_openai_shaped_400s(
    stack: Stack, body: dict[str, Any], param: str
) -> None:
    request = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **body}
    req = urllib.request.Request(
        stack.routers[0][2] + "/v1/chat/completions",
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 400
    assert exc.value.headers["Content-Type"].startswith("application/json")
    err = json.loads(exc.value.read())["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    assert isinstance(err["message"], str) and err["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"top_logprobs": 3}, "top_logprobs")],
)
def test_sdk_gets_a_400_naming_what_skyroute_cannot_honour(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            **extra,
        )
    assert exc.value.status_code == 400 and exc.value.param == param
    assert param in exc.value.message


TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}
# tool_choice as the client sends it -> what each family's upstream received.
TOOL_CHOICES: list[tuple[Any, dict[str, Any], dict[str, Any] | None, bool]] = [
    # (choice, anthropic tool_choice, gemini toolConfig, answered with a tool call)
    ("auto", {}, None, True),
    ("none", {"type": "none"}, {"functionCallingConfig": {"mode": "NONE"}}, False),
    ("required", {"type": "any"}, {"functionCallingConfig": {"mode": "ANY"}}, True),
    (
        {"type": "function", "function": {"name": "lookup_order"}},
        {"type": "tool", "name": "lookup_order"},
        {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup_order"]}},
        True,
    ),
]


@pytest.mark.parametrize(("choice", "anthropic", "gemini", "calls"), TOOL_CHOICES)
def test_every_tool_choice_form_is_translated_per_family(
    stack: Stack,
    client: openai.OpenAI,
    choice: Any,
    anthropic: dict[str, Any],
    gemini: dict[str, Any] | None,
    calls: bool,
) -> None:
    for family in ("openai", "anthropic", "gemini"):
        out = client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "where is order 7?"}],
            tools=[TOOL],  # type: ignore[list-item]
            tool_choice=choice,
            extra_headers=_to(family),
        )
        assert bool(out.choices[0].message.tool_calls) == calls, (family, choice)
        got = _received(stack, family)
        if family == "openai":
            assert got["tool_choice"] == choice
        elif family == "anthropic":
            assert got.get("tool_choice", {}) == anthropic or (
                choice == "auto" and got.get("tool_choice") in (None, {"type": "auto"})
            )
        else:
            assert got.get("toolConfig") == gemini


PIXEL = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_image_parts_are_translated_per_family(stack: Stack, client: openai.OpenAI) -> None:
    content: Any = [
        {"type": "text", "text": "what is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PIXEL}},
        {"type": "image_url", "image_url": {"url": "https://img.example/cat.png"}},
    ]
    for family in ("openai", "anthropic", "gemini"):
        out = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": content}], extra_headers=_to(family)
        )
        assert out.choices[0].message.content
        got = _received(stack, family)
        if family == "openai":
            assert got["messages"][-1]["content"] == content
        elif family == "anthropic":
            blocks = got["messages"][-1]["content"]
            assert blocks[1]["source"] == {
                "type": "base64",
                "media_type": "image/png",
                "data": PIXEL,
            }
            assert blocks[2]["source"] == {"type": "url", "url": "https://img.example/cat.png"}
        else:
            parts = got["contents"][-1]["parts"]
            assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PIXEL}}
            assert parts[2] == {"fileData": {"fileUri": "https://img.example/cat.png"}}


def test_modalities_beyond_text_skip_families_that_cannot(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "hi"}],
        modalities=["text"],  # the default: never refused
        extra_headers=_to("anthropic"),
    )
    assert out.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            modalities=["text", "audio"],
            extra_headers=_to("gemini"),
        )
    assert exc.value.param == "modalities" and exc.value.code == "unsupported_parameter"


def test_a_content_part_a_family_has_no_place_for_is_refused_not_dropped(
    stack: Stack, client: openai.OpenAI
) -> None:
    audio: Any = [
        {"type": "text", "text": "transcribe"},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]
    client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": audio}], extra_headers=_to("openai")
    )
    assert _received(stack, "openai")["messages"][-1]["content"] == audio  # as sent
    for family in ("anthropic", "gemini"):
        with pytest.raises(openai.BadRequestError) as exc:
            client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": audio}],
                extra_headers=_to(family),
            )
        assert "input_audio" in exc.value.message and family in exc.value.message
