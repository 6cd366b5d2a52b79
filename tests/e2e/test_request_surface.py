"""The Chat Completions request surface end to end, told apart by what the answer does.

Real processes (simulator, control plane, router) on loopback; the client is
the official ``openai`` SDK. The simulator honours the parameters (a schema's
JSON, stop sequences, seed determinism, usage in streams), so each check here
would fail if the router dropped the parameter on the way to that family,
not only if it sent it under the wrong name: ``response_format`` with
``json_schema`` parsed into a pydantic model (``chat.completions.parse``),
``stop`` cutting the answer before the sequence with ``finish_reason: stop``,
``seed`` giving the same answer twice and another answer for another seed,
``stream_options.include_usage`` adding the usage chunk (and its absence
leaving it out), and ``logprobs`` / ``top_logprobs`` / ``n`` > 1, which the
router does not carry back yet, refused with a 400 naming them rather than
silently answered without them. A parameter a family cannot honour (Anthropic:
``seed``, a JSON schema) skips that family's candidates (Explain says so); only
a pool with no other candidate refuses it, by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from harness import Proc, Stack

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
FILES = {
    "pools.yaml": "---\n".join(_POOL.format(name=n, path=p) for n, p in _FAMILIES.items()),
    "mixed.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: mixed}
spec:
  models:
    - name: mixed-anthropic
      provider: anthropic
      endpoint: "{SIM}/anthropic"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
    - name: mixed-openai
      provider: openai
      endpoint: "{SIM}/openai/v1"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
""",
    "policy.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: surface}
spec:
  default: true
  rules:
    - {name: anthropic, match: {tenants: [to-anthropic]}, pool: anthropic}
    - {name: gemini, match: {tenants: [to-gemini]}, pool: gemini}
    - {name: mixed, match: {tenants: [to-mixed]}, pool: mixed}
  defaultPool: openai
  selection: {mode: ordered}
""",
}
SCENARIO = """\
seed: 9
defaults:
  ttft_ms: {p50: 1, p95: 2}
  tokens_per_s: 50000
  completion_tokens: {p50: 30, p95: 30, min: 30, max: 30}
  error_rate: 0
"""
MSGS: Any = [{"role": "user", "content": "tell me about my delivery"}]


class Trip(BaseModel):
    city: str
    days: int
    refundable: bool


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    procs: list[Proc] = []
    tmp: Path = tmp_path_factory.mktemp("surface")
    try:
        stack = Stack(procs, tmp, FILES, SCENARIO)
        with openai.OpenAI(
            base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
        ) as c:
            yield c
    finally:
        for p in reversed(procs):
            p.stop()


def _to(family: str) -> dict[str, str]:
    tenant = {} if family == "openai" else {"x-skyroute-tenant": "to-" + family}
    return {**tenant, "Cache-Control": "no-cache"}


def _ask(client: openai.OpenAI, family: str, **kw: Any) -> Any:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=MSGS, extra_headers=_to(family), **kw
    )
    assert raw.headers["x-skyroute-model"] == family + "-model"
    return raw.parse()


@pytest.mark.parametrize("family", ["openai", "gemini"])
def test_json_schema_parses_into_the_model(client: openai.OpenAI, family: str) -> None:
    out = client.chat.completions.parse(
        model="auto", messages=MSGS, response_format=Trip, extra_headers=_to(family)
    )
    trip = out.choices[0].message.parsed
    assert isinstance(trip, Trip)  # the prose a dropped response_format gives would not parse


def test_json_schema_is_refused_where_the_family_cannot_honour_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.parse(
            model="auto", messages=MSGS, response_format=Trip, extra_headers=_to("anthropic")
        )
    assert exc.value.param == "response_format" and "anthropic" in exc.value.message
    assert exc.value.code == "unsupported_parameter"


@pytest.mark.parametrize("family", ["openai", "anthropic", "gemini"])
def test_stop_cuts_the_answer_before_the_sequence(client: openai.OpenAI, family: str) -> None:
    full = _ask(client, family).choices[0].message.content
    word = full.split()[6]
    out = _ask(client, family, stop=["no-such-sequence", word])
    assert out.choices[0].message.content == full[: full.index(word)]
    assert out.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model="auto", messages=MSGS, stop=word, stream=True, extra_headers=_to(family)
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == out.choices[0].message.content


@pytest.mark.parametrize("family", ["openai", "gemini"])
def test_seed_is_deterministic_and_changes_the_answer(client: openai.OpenAI, family: str) -> None:
    plain = _ask(client, family).choices[0].message.content
    one = _ask(client, family, seed=11).choices[0].message.content
    assert _ask(client, family, seed=11).choices[0].message.content == one
    assert len({plain, one, _ask(client, family, seed=12).choices[0].message.content}) == 3


def test_anthropic_refuses_a_seed_it_cannot_honour(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        _ask(client, "anthropic", seed=11)
    assert exc.value.param == "seed" and exc.value.code == "unsupported_parameter"


def test_selection_skips_a_family_that_cannot_honour_a_parameter(client: openai.OpenAI) -> None:
    """The pool's first model is Anthropic's: with a seed (or a schema) the OpenAI one answers."""
    plain = client.chat.completions.with_raw_response.create(
        model="auto", messages=MSGS, extra_headers=_to("mixed")
    )
    assert plain.headers["x-skyroute-model"] == "mixed-anthropic"
    seeded = client.chat.completions.with_raw_response.create(
        model="auto", messages=MSGS, seed=5, extra_headers=_to("mixed")
    )
    assert seeded.headers["x-skyroute-model"] == "mixed-openai"
    assert "mixed-anthropic" not in seeded.headers["x-skyroute-attempts"]  # never tried
    parsed = client.chat.completions.parse(
        model="auto", messages=MSGS, response_format=Trip, extra_headers=_to("mixed")
    )
    assert isinstance(parsed.choices[0].message.parsed, Trip)
    # Explain says why.
    why = client.post(
        "/explain",
        body={"model": "auto", "messages": MSGS, "seed": 5},
        cast_to=object,
        options={"headers": _to("mixed")},
    )
    assert isinstance(why, dict) and why["chain"] == ["mixed-openai"]
    assert "skipped mixed-anthropic: its family cannot honour seed" in why["reasons"]


@pytest.mark.parametrize("family", ["openai", "anthropic", "gemini"])
def test_stream_options_include_usage(client: openai.OpenAI, family: str) -> None:
    kw: dict[str, Any] = {"seed": 3} if family != "anthropic" else {}
    unary = _ask(client, family, **kw)
    with_usage = list(
        client.chat.completions.create(
            model="auto",
            messages=MSGS,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=_to(family),
            **kw,
        )
    )
    last = with_usage[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == unary.usage.completion_tokens
    assert last.usage.prompt_tokens == unary.usage.prompt_tokens
    text = "".join(c.choices[0].delta.content or "" for c in with_usage if c.choices)
    assert text == unary.choices[0].message.content
    without = list(
        client.chat.completions.create(
            model="auto", messages=MSGS, stream=True, extra_headers=_to(family), **kw
        )
    )
    assert all(c.usage is None for c in without)


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"logprobs": True}, "logprobs"), ({"top_logprobs": 2}, "top_logprobs"), ({"n": 2}, "n")],
)
def test_what_the_router_cannot_carry_back_is_refused_by_name(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        _ask(client, "openai", **extra)
    assert exc.value.status_code == 400 and exc.value.param == param
