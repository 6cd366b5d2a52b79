"""A policy decides, per parameter a family cannot honour: skip its candidates or drop it.

One real router with the provider simulator upstream and two policies (a
request's ``model`` names one): ``drops`` says ``parameters: {logit_bias: drop,
stop: drop}``, ``skips`` says nothing (``skip``, the default). The official
``openai`` and ``anthropic`` SDKs are the clients, and each test reads what
the simulator received (``GET /_sim/requests``): a dropped parameter never
reaches the upstream and the answer's ``x-skyroute-dropped-parameters`` names
it; a skipped family is never tried. More than 4 stop sequences (the
Anthropic Messages door takes 64) is a ``stop`` the OpenAI family cannot
honour, by the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.errors import PolicyError

from harness import Stack, http_get, running_stack

_MODEL = """\
    - name: {name}
      provider: {family}
      endpoint: "{{SIM}}/{path}"
      pricing: {{inputPerMTok: 1.0, outputPerMTok: 2.0}}
"""
_PATHS = {"openai": "openai/v1", "anthropic": "anthropic"}


def _pool(name: str, *families: str) -> str:
    models = "".join(_MODEL.format(name=f"{name}-{f}", family=f, path=_PATHS[f]) for f in families)
    return (
        f"apiVersion: skyroute.io/v1alpha1\nkind: ModelPool\nmetadata: {{name: {name}}}\n"
        f"spec:\n  models:\n{models}"
    )


def _policy(name: str, extra: str = "") -> str:
    return f"""\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {{name: {name}}}
spec:
  rules:
    - {{name: anthropic, match: {{tenants: [to-anthropic]}}, pool: claude}}
    - {{name: mixed, match: {{tenants: [to-mixed]}}, pool: mixed}}
  defaultPool: gpt
  selection: {{mode: ordered}}
{extra}"""


FILES = {
    "pools.yaml": "---\n".join(
        [
            _pool("gpt", "openai"),
            _pool("claude", "anthropic"),
            _pool("mixed", "openai", "anthropic"),
        ]
    ),
    "drops.yaml": _policy("drops", "  parameters: {logit_bias: drop, stop: drop, seed: skip}\n"),
    "skips.yaml": _policy("skips"),
}
SCENARIO = """\
seed: 7
defaults:
  ttft_ms: {p50: 1, p95: 2}
  tokens_per_s: 50000
  completion_tokens: {p50: 8, p95: 8, min: 8, max: 8}
  error_rate: 0
"""
MSGS: Any = [{"role": "user", "content": "hi"}]
SIX_STOPS = ["s1", "s2", "s3", "s4", "s5", "s6"]
DROPPED = "x-skyroute-dropped-parameters"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("parampolicy"), FILES, SCENARIO) as stack:
        yield stack


@pytest.fixture(scope="module")
def oai(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    )


@pytest.fixture(scope="module")
def claude(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=stack.routers[0][2], api_key="unused", max_retries=0, timeout=20
    )


def _to(tenant: str | None = None) -> dict[str, str]:
    return {"Cache-Control": "no-cache", **({"x-skyroute-tenant": tenant} if tenant else {})}


def _requests(stack: Stack) -> list[dict[str, Any]]:
    status, raw = http_get(stack.sim + "/_sim/requests", timeout=5)
    assert status == 200
    got: list[dict[str, Any]] = json.loads(raw)["requests"]
    return got


def _last(stack: Stack, family: str) -> dict[str, Any]:
    bodies = [r["body"] for r in _requests(stack) if r["path"].startswith("/" + family + "/")]
    assert bodies, f"no request reached the {family} upstream"
    body: dict[str, Any] = bodies[-1]
    return body


def test_drop_sends_without_the_parameter_and_says_so(stack: Stack, oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="drops",
        messages=MSGS,
        logit_bias={"50256": -100},
        top_p=0.5,
        extra_headers=_to("to-anthropic"),
    )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-skyroute-model"] == "claude-anthropic"
    assert raw.headers[DROPPED] == "logit_bias"
    got = _last(stack, "anthropic")
    assert "logit_bias" not in got and got["top_p"] == 0.5  # the rest still sent
    # Streamed: the same header before the first event.
    with oai.chat.completions.with_streaming_response.create(
        model="drops",
        messages=MSGS,
        logit_bias={"50256": -100},
        stream=True,
        extra_headers=_to("to-anthropic"),
    ) as streamed:
        assert streamed.headers[DROPPED] == "logit_bias"
        assert any(c.choices and c.choices[0].delta.content for c in streamed.parse())


def test_no_header_where_nothing_was_dropped(stack: Stack, oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="drops", messages=MSGS, logit_bias={"50256": -100}, extra_headers=_to()
    )
    assert DROPPED not in raw.headers  # OpenAI takes logit_bias: sent on
    assert _last(stack, "openai")["logit_bias"] == {"50256": -100}


def test_skip_is_the_default_and_a_skip_is_still_refused(oai: openai.OpenAI) -> None:
    for model, extra in (("skips", {"logit_bias": {"1": 5}}), ("drops", {"seed": 3})):
        with pytest.raises(openai.BadRequestError) as exc:
            oai.chat.completions.create(
                model=model, messages=MSGS, extra_headers=_to("to-anthropic"), **extra
            )
        assert exc.value.code == "unsupported_parameter"
        assert exc.value.param == next(iter(extra))


def test_explain_says_what_is_dropped(oai: openai.OpenAI) -> None:
    why = oai.post(
        "/explain",
        body={"model": "drops", "messages": MSGS, "logit_bias": {"1": 5}},
        cast_to=object,
        options={"headers": _to("to-mixed")},
    )
    assert isinstance(why, dict) and why["chain"] == ["mixed-openai", "mixed-anthropic"]
    assert any(
        r.startswith("mixed-anthropic is sent without logit_bias") for r in why["reasons"]
    ), why["reasons"]


def test_more_than_four_stops_drop_for_openai(stack: Stack, claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model="drops", max_tokens=32, messages=MSGS, stop_sequences=SIX_STOPS, extra_headers=_to()
    )
    assert raw.parse().content
    assert raw.headers["x-skyroute-model"] == "gpt-openai" and raw.headers[DROPPED] == "stop"
    assert "stop" not in _last(stack, "openai")


def test_more_than_four_stops_skip_openai(stack: Stack, claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model="skips",
        max_tokens=32,
        messages=MSGS,
        stop_sequences=SIX_STOPS,
        extra_headers=_to("to-mixed"),
    )
    assert raw.headers["x-skyroute-model"] == "mixed-anthropic"
    assert "mixed-openai" not in raw.headers["x-skyroute-attempts"]  # never tried
    assert DROPPED not in raw.headers
    assert _last(stack, "anthropic")["stop_sequences"] == SIX_STOPS  # passed unchanged
    with pytest.raises(anthropic.BadRequestError) as exc:
        claude.messages.create(
            model="skips",
            max_tokens=32,
            messages=MSGS,
            stop_sequences=SIX_STOPS,
            extra_headers=_to(),
        )
    assert "stop" in exc.value.message


def test_four_stops_reach_openai_unchanged(stack: Stack, claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model="skips",
        max_tokens=32,
        messages=MSGS,
        stop_sequences=SIX_STOPS[:4],
        extra_headers=_to(),
    )
    assert raw.headers["x-skyroute-model"] == "gpt-openai" and DROPPED not in raw.headers
    assert _last(stack, "openai")["stop"] == SIX_STOPS[:4]


def test_parameters_compile_and_a_bad_action_is_refused_naming_the_field(tmp_path: Path) -> None:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text.replace("{SIM}", "http://127.0.0.1:1"))
    snap = compile_folder(tmp_path)
    by_name = {p.name: p for p in snap.policies}
    assert list(by_name["drops"].drop_parameters) == ["logit_bias", "stop"]
    assert list(by_name["skips"].drop_parameters) == []
    (tmp_path / "skips.yaml").write_text(_policy("skips", "  parameters: {seed: maybe}\n"))
    with pytest.raises(PolicyError) as exc:
        compile_folder(tmp_path)
    # The file, the object and the field.
    assert "skips.yaml: RoutingPolicy default/skips: spec.parameters.seed" in str(exc.value)
