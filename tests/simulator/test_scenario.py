"""Scenario parsing: the example file loads, defaults merge, and mistakes name their path."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyroute.simulator.engine import Engine
from skyroute.simulator.scenario import ScenarioError, load_scenario, load_scenario_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "simulator" / "acmeshop.yaml"


def test_example_scenario_covers_the_acmeshop_models() -> None:
    sc = load_scenario_file(str(EXAMPLE))
    for model in [
        "gpt-5.2",
        "gpt-5.2-high",
        "claude-4.5-haiku",
        "claude-4.5-sonnet",
        "claude-4.5-opus",
        "gemini-3-flash",
    ]:
        assert model in sc.models
    fast = sc.profile_for("gemini-3-flash").ttft_ms.p95
    assert fast < sc.profile_for("claude-4.5-sonnet").ttft_ms.p95
    slow = sc.profile_for("gpt-5.2-high").ttft_ms.p95
    assert sc.profile_for("claude-4.5-sonnet").ttft_ms.p95 < slow
    assert any(b.applies_to("gpt-5.2") for b in sc.bursts)
    assert sc.profile_for("unlisted-model") is sc.defaults


def test_every_field_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text()
    for field in [
        "seed",
        "time_scale",
        "hang_s",
        "api_key",
        "defaults",
        "models",
        "bursts",
        "ttft_ms",
        "tokens_per_s",
        "completion_tokens",
        "stream_chunk_tokens",
        "context_window",
        "error_rate",
        "errors",
        "error_latency_ms",
        "retry_after_s",
        "start_s",
        "duration_s",
        "every_s",
        "latency_multiplier",
        "server_error",
        "unavailable",
        "overloaded",
        "rate_limited",
        "bad_request",
        "context_length",
        "content_filter",
        "auth",
        "not_found",
        "timeout",
        "stream_cut",
        "stall",
        "bad_response",
    ]:
        assert f"{field}" in text.split("seed: 42")[0], field


def test_models_override_defaults_field_by_field() -> None:
    sc = load_scenario("""
defaults: {ttft_ms: {p50: 100, p95: 300}, error_rate: 0.1}
models:
  a: {ttft_ms: {p95: 900}}
  "b-*": {error_rate: 0.5}
""")
    a = sc.profile_for("a")
    assert (a.ttft_ms.p50, a.ttft_ms.p95, a.error_rate) == (100, 900, 0.1)
    assert sc.profile_for("b-1").error_rate == 0.5
    assert sc.profile_for("c").error_rate == 0.1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("models: {a: {ttft_ms: {p50: 5, p95: 1}}}", "models.a.ttft_ms: p95"),
        ("models: {a: {errors: {explode: 1}}}", "models.a.errors.explode: unknown error kind"),
        ("models: {a: {eror_rate: 0.1}}", "models.a: unknown field(s) eror_rate"),
        ("models: {a: {error_rate: 2}}", "models.a.error_rate: expected a probability"),
        ("bursts: [{start_s: 1}]", "bursts[0]: start_s and duration_s are required"),
        ("bursts: [{start_s: 0, duration_s: 10, every_s: 5}]", "bursts[0].every_s"),
        ("time_scale: 0", "time_scale: expected a positive number"),
        ("seed: [1]", "seed: expected a number"),
        ("nonsense: 1", "unknown field(s) nonsense"),
        ("models: [1, 2]", "models: expected a mapping"),
        ("{not json", "not valid YAML/JSON"),
    ],
)
def test_errors_name_the_path(text: str, needle: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(text, "s.yaml")
    assert needle in str(err.value)
    assert str(err.value).startswith("s.yaml")


def test_missing_file_is_a_clear_error() -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario_file("/nonexistent/scenario.yaml")


def test_completion_length_is_a_function_of_prompt_and_model() -> None:
    engine = Engine(load_scenario("defaults: {completion_tokens: {p50: 50, p95: 150}}"))
    rt = engine.runtime("m")
    lengths = [engine.completion_tokens(rt, h) for h in range(2000)]
    assert lengths == [engine.completion_tokens(rt, h) for h in range(2000)]
    lengths.sort()
    assert 40 <= lengths[1000] <= 60 and 120 <= lengths[1900] <= 180
    plan = engine.plan(rt, 1, 10, 3)
    assert plan.completion_tokens <= 3


def test_planned_latency_matches_p50_p95_and_time_scale() -> None:
    engine = Engine(
        load_scenario("""
seed: 9
time_scale: 2
defaults: {ttft_ms: {p50: 200, p95: 600}, error_rate: 0}
""")
    )
    rt = engine.runtime("m")
    delays = sorted(engine.plan(rt, 1, 1, None).delay_s for _ in range(20000))
    assert delays[10000] == pytest.approx(0.1, rel=0.05)
    assert delays[19000] == pytest.approx(0.3, rel=0.08)
