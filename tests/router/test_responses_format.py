"""``text.format`` on the Responses door: a JSON schema reaches every family translated.

The official ``openai`` SDK's ``responses.parse`` (a pydantic model as
``text_format``) and ``responses.create`` with a ``json_schema`` format,
against one real router with the provider simulator upstream (the stack of
the parameters test): the OpenAI upstream receives the Chat
``response_format``, Gemini its ``responseJsonSchema``, and the answer parses
against the schema; Anthropic, which cannot honour it, is a 400 naming the
parameter; malformed formats are OpenAI-shaped 400s naming the exact part.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import openai
import pydantic
import pytest

# The parameters test's stack (a fixture of this module too, so its own router) and helpers.
from test_parameters import SCHEMA, _received, _to, client, stack  # noqa: F401

from harness import Stack

FORMAT = {"type": "json_schema", "name": "trip", "schema": SCHEMA, "strict": True}


class Trip(pydantic.BaseModel):
    city: str
    days: int


def test_parse_with_a_pydantic_model_through_the_openai_family(
    stack: Stack,  # noqa: F811 (fixtures)
    client: openai.OpenAI,  # noqa: F811
) -> None:
    resp = client.responses.parse(
        model="auto",
        input="plan a trip",
        text_format=Trip,
        extra_headers=_to("openai"),
    )
    trip = resp.output_parsed
    assert isinstance(trip, Trip) and trip.city and isinstance(trip.days, int)
    got = _received(stack, "openai")["response_format"]
    assert got["type"] == "json_schema"
    assert got["json_schema"]["name"] == "Trip" and got["json_schema"]["strict"] is True
    assert set(got["json_schema"]["schema"]["required"]) == {"city", "days"}
    assert resp.text is not None and resp.text.format is not None
    assert resp.text.format.type == "json_schema"


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_reaches_gemini_and_the_answer_fits_it(
    stack: Stack,  # noqa: F811
    client: openai.OpenAI,  # noqa: F811
    stream: bool,
) -> None:
    ask: dict[str, Any] = {
        "model": "auto",
        "input": "plan a trip",
        "text": {"format": FORMAT},
        "extra_headers": _to("gemini"),
    }
    if stream:
        events = list(client.responses.create(**ask, stream=True))
        done = events[-1]
        assert done.type == "response.completed"
        text = done.response.output_text
    else:
        resp = client.responses.create(**ask)
        text = resp.output_text
        assert resp.text is not None and resp.text.format is not None
        assert resp.text.format.model_dump(by_alias=True, exclude_none=True) == FORMAT
    answer = json.loads(text)
    assert isinstance(answer["city"], str) and isinstance(answer["days"], int)
    got = _received(stack, "gemini")["generationConfig"]
    assert got["responseMimeType"] == "application/json"
    assert got["responseJsonSchema"] == SCHEMA


def test_json_mode_reaches_openai(
    stack: Stack,  # noqa: F811
    client: openai.OpenAI,  # noqa: F811
) -> None:
    resp = client.responses.create(
        model="auto",
        input="answer in JSON",
        text={"format": {"type": "json_object"}},
        extra_headers=_to("openai"),
    )
    assert isinstance(json.loads(resp.output_text), dict)
    assert _received(stack, "openai")["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("family", "path"), [("openai", ("top_p",)), ("gemini", ("generationConfig", "topP"))]
)
def test_top_p_reaches_the_upstream(
    stack: Stack,  # noqa: F811
    client: openai.OpenAI,  # noqa: F811
    family: str,
    path: tuple[str, ...],
) -> None:
    """``top_p`` was checked and then dropped; it is the Chat parameter, translated per family."""
    client.responses.create(model="auto", input="hello", top_p=0.25, extra_headers=_to(family))
    got: object = _received(stack, family)
    for key in path:
        got = got[key]  # type: ignore[index]
    assert got == 0.25


def test_reasoning_effort_becomes_each_familys_thinking(
    stack: Stack,  # noqa: F811
    client: openai.OpenAI,  # noqa: F811
) -> None:
    """``reasoning.effort`` was accepted and not acted on; it is Chat's reasoning_effort."""
    client.responses.create(
        model="auto", input="think", reasoning={"effort": "low"}, extra_headers=_to("openai")
    )
    assert _received(stack, "openai")["reasoning_effort"] == "low"
    client.responses.create(
        model="auto", input="think", reasoning={"effort": "medium"}, extra_headers=_to("gemini")
    )
    gen = _received(stack, "gemini")["generationConfig"]
    assert gen["thinkingConfig"] == {"thinkingBudget": 4096}
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(
            model="auto",
            input="think",
            reasoning={"effort": "extreme"},  # type: ignore[typeddict-item]
            extra_headers=_to("openai"),
        )
    assert bad.value.body["param"] == "reasoning.effort"  # type: ignore[index]


def test_a_family_that_cannot_honour_it_is_a_400(client: openai.OpenAI) -> None:  # noqa: F811
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(
            model="auto",
            input="plan a trip",
            text={"format": FORMAT},  # type: ignore[typeddict-item]
            extra_headers=_to("anthropic"),
        )
    assert "response_format" in str(exc.value) and "anthropic" in str(exc.value)


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("json", "text"),
        ({"format": "json"}, "text.format"),
        ({"format": {"type": "xml"}}, "text.format.type"),
        ({"format": {"type": "json_schema", "schema": SCHEMA}}, "text.format.name"),
        ({"format": {"type": "json_schema", "name": "", "schema": SCHEMA}}, "text.format.name"),
        ({"format": {"type": "json_schema", "name": "t"}}, "text.format.schema"),
        ({"format": {**FORMAT, "strict": "yes"}}, "text.format.strict"),
        ({"format": {**FORMAT, "description": 5}}, "text.format.description"),
    ],
)
def test_malformed_formats_are_openai_shaped_400s(
    stack: Stack,  # noqa: F811
    text: Any,
    param: str,
) -> None:
    body = {"model": "auto", "input": "hi", "text": text}
    req = urllib.request.Request(
        stack.routers[0][2] + "/v1/responses",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 400
    err = json.loads(exc.value.read())["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
