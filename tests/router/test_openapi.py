"""The OpenAPI document's own rules: built from the routes given, bounded in size."""

from __future__ import annotations

import json

from skyroute.router.ingress import openapi
from skyroute.router.ingress.codecs import openai_params

ROUTES = [
    openapi.Route("POST", "/v1/chat/completions"),
    openapi.Route("POST", "/v1/messages", "anthropic"),
    openapi.Route("GET", "/v1/things/{thing_id}"),
    openapi.Route("POST", "/v1/unknown"),
]


def _doc(policies: list[str]) -> dict:  # type: ignore[type-arg]
    return json.loads(openapi.render(ROUTES, policies, "v7"))


def test_a_route_without_a_schema_of_its_own_gets_a_generic_one() -> None:
    doc = _doc(["b", "a"])
    assert doc["info"]["version"] == "v7"
    thing = doc["paths"]["/v1/things/{thing_id}"]["get"]
    assert thing["parameters"][0]["name"] == "thing_id" and "requestBody" not in thing
    unknown = doc["paths"]["/v1/unknown"]["post"]
    assert unknown["requestBody"]["content"]["application/json"]["schema"] == {"type": "object"}
    assert doc["components"]["schemas"]["Model"]["enum"] == ["auto", "a", "b"]
    errors = doc["paths"]["/v1/messages"]["post"]["responses"]["400"]["$ref"]
    assert errors == "#/components/responses/anthropic_error"


def test_chat_bounds_are_the_codec_s() -> None:
    props = _doc([])["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]["properties"]
    for name, (lo, hi) in openai_params.RANGES.items():
        assert (props[name]["minimum"], props[name]["maximum"]) == (lo, hi)
    for name in openai_params.UNSUPPORTED:
        assert name not in props


def test_too_many_or_too_long_policy_names_leave_model_a_plain_string() -> None:
    many = [f"p{i}" for i in range(openapi.MAX_MODELS + 1)]
    assert _doc(many)["components"]["schemas"]["Model"] == {"type": "string"}
    long_names = ["p" * 253 + str(i) for i in range(openapi.MAX_MODELS - 1)]
    raw = openapi.render(ROUTES, long_names, "v7")
    assert len(raw) <= openapi.MAX_BYTES
    assert json.loads(raw)["components"]["schemas"]["Model"] == {"type": "string"}
