"""Bad policy input gets an error naming the file, the object, the field and the line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.errors import PolicyError, Problem
from skyroute.families import FAMILY_NAMES


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count))


def _problems(folder: Path) -> list[Problem]:
    with pytest.raises(PolicyError) as info:
        compile_folder(folder)
    return list(info.value.problems)


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_the_example_compiles(acmeshop: Path) -> None:
    snapshot = compile_folder(acmeshop)
    assert snapshot.default_policy == "acmeshop"


def test_bad_pool_reference_names_file_object_field_and_known_pools(acmeshop: Path) -> None:
    policy = acmeshop / "policy.yaml"
    _edit(policy, "      pool: cost", "      pool: qualiti")
    [problem] = _problems(acmeshop)
    assert str(problem).startswith(
        f"{acmeshop}/policy.yaml: RoutingPolicy default/acmeshop: spec.rules[3].pool: "
        'pool "qualiti" not found (known: balanced, baseline, cost, quality)'
    )
    assert problem.line == _line_of(policy, "pool: qualiti")


def test_bad_default_pool(acmeshop: Path) -> None:
    _edit(acmeshop / "policy.yaml", "defaultPool: baseline", "defaultPool: nope")
    [problem] = _problems(acmeshop)
    assert problem.obj == "RoutingPolicy default/baseline"
    assert problem.path == "spec.defaultPool"
    assert 'pool "nope" not found' in problem.message


def test_bad_regex(acmeshop: Path) -> None:
    _edit(acmeshop / "policy.yaml", r"patterns: ['\bpass(word|code)\b']", "patterns: ['(unclosed']")
    [problem] = _problems(acmeshop)
    assert problem.obj == "RoutingPolicy default/acmeshop"
    assert problem.path == "spec.intents[7].patterns[0]"
    assert problem.message.startswith("invalid regular expression: missing )")
    assert problem.line == _line_of(acmeshop / "policy.yaml", "(unclosed")


def test_bad_enum_quotes_the_value(acmeshop: Path) -> None:
    _edit(acmeshop / "pools.yaml", "provider: gemini", "provider: gemeni")
    [problem] = _problems(acmeshop)
    assert (problem.obj, problem.path) == ("ModelPool default/cost", "spec.models[0].provider")
    # Every known family quoted (the list grows as families are registered).
    *others, last = FAMILY_NAMES
    assert ", ".join(f"'{f}'" for f in others) + f" or '{last}'" in problem.message
    assert '(got "gemeni")' in problem.message


def test_bad_tools_enum(acmeshop: Path) -> None:
    _edit(acmeshop / "policy.yaml", "tools: absent", "tools: never")
    [problem] = _problems(acmeshop)
    assert problem.path == "spec.rules[3].match.tools"
    assert '"never"' in problem.message


def test_missing_field(acmeshop: Path) -> None:
    _edit(
        acmeshop / "pools.yaml",
        "pricing: {inputPerMTok: 1.00, outputPerMTok: 5.00}",
        "pricing: {inputPerMTok: 1.00}",
    )
    [problem] = _problems(acmeshop)
    assert str(problem).startswith(
        f"{acmeshop}/pools.yaml: ModelPool default/cost: "
        "spec.models[1].pricing.outputPerMTok: required field missing"
    )


def test_unknown_field_is_an_error_not_a_silent_default(acmeshop: Path) -> None:
    _edit(acmeshop / "policy.yaml", "defaultPool: balanced", "defualtPool: balanced")
    problems = _problems(acmeshop)
    assert {(p.path, p.message) for p in problems} == {
        ("spec.defaultPool", "required field missing"),
        ("spec.defualtPool", "unknown field"),
    }


def test_duplicate_model_in_a_pool(acmeshop: Path) -> None:
    _edit(acmeshop / "pools.yaml", "- name: claude-4.5-haiku", "- name: gemini-3-flash")
    [problem] = _problems(acmeshop)
    assert (problem.obj, problem.path) == ("ModelPool default/cost", "spec.models")
    assert problem.message.startswith("model names must be unique within a pool")
    assert '"gemini-3-flash" at [0] and [1]' in problem.message


def test_yaml_syntax_error_names_file_and_line(acmeshop: Path) -> None:
    (acmeshop / "broken.yaml").write_text("apiVersion: skyroute.io/v1alpha1\nspec:\n  a: [1, 2\n")
    [problem] = _problems(acmeshop)
    assert re.match(
        rf"{re.escape(str(acmeshop))}/broken\.yaml:\d+: YAML syntax error: ", str(problem)
    ), str(problem)
    assert problem.line in (3, 4)


def test_duplicate_yaml_key_is_reported(acmeshop: Path) -> None:
    _edit(
        acmeshop / "policy.yaml",
        "  defaultPool: balanced\n",
        "  defaultPool: balanced\n  defaultPool: cost\n",
    )
    [problem] = _problems(acmeshop)
    assert 'duplicate key "defaultPool"' in str(problem)
    assert problem.line == _line_of(acmeshop / "policy.yaml", "defaultPool: cost")


def test_glob_matching_no_intent(acmeshop: Path) -> None:
    _edit(acmeshop / "policy.yaml", 'intents: ["tools.*"]', 'intents: ["tool.*"]')
    [problem] = _problems(acmeshop)
    assert problem.path == "spec.rules[1].match.intents[0]"
    assert problem.message.startswith('"tool.*" matches no intent (known: faq.account,')


def test_cross_field_rule_same_words_as_the_crd(acmeshop: Path) -> None:
    _edit(acmeshop / "policy.yaml", "firstTokenTimeoutMs: 5000", "firstTokenTimeoutMs: 50000")
    [problem] = _problems(acmeshop)
    assert problem.path == "spec.limits.firstTokenTimeoutMs"
    assert problem.message == "firstTokenTimeoutMs must not exceed requestTimeoutMs (50000 > 30000)"


def test_two_default_policies(acmeshop: Path) -> None:
    _edit(acmeshop / "policy.yaml", '  # The "before" row', "  default: true\n  # x")
    problems = _problems(acmeshop)
    assert {p.obj for p in problems} == {
        "RoutingPolicy default/acmeshop",
        "RoutingPolicy default/baseline",
    }
    assert all(p.path == "spec.default" and "more than one default" in p.message for p in problems)


def test_same_pool_name_in_two_namespaces(acmeshop: Path) -> None:
    (acmeshop / "other.yml").write_text(
        "apiVersion: skyroute.io/v1alpha1\nkind: ModelPool\n"
        "metadata: {name: cost, namespace: team-b}\n"
        "spec:\n  models:\n    - name: m\n      provider: openai\n"
        "      endpoint: http://127.0.0.1:1/v1\n"
        "      pricing: {inputPerMTok: 1, outputPerMTok: 1}\n"
    )
    [problem] = _problems(acmeshop)
    assert problem.obj == "ModelPool team-b/cost"
    assert "unique across namespaces" in problem.message


def test_every_problem_is_reported_at_once(acmeshop: Path) -> None:
    _edit(acmeshop / "pools.yaml", "provider: gemini", "provider: gemeni")
    _edit(acmeshop / "pools.yaml", "timeoutMs: 15000", "timeoutMs: 5")
    _edit(acmeshop / "policy.yaml", "      pool: cost", "      pool: qualiti")
    problems = _problems(acmeshop)
    assert [p.path for p in problems] == [
        "spec.models[0].provider",
        "spec.models[0].timeoutMs",
        "spec.rules[3].pool",
    ], problems


def test_other_documents_and_files_are_ignored(acmeshop: Path) -> None:
    (acmeshop / "scenario.yaml").write_text("seed: 42\nmodels: {a: 1}\n")
    (acmeshop / "configmap.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n---\n- a\n---\n")
    (acmeshop / "notes.txt").write_text("not: [yaml")
    (acmeshop / ".hidden.yaml").write_text("not: [yaml")
    assert compile_folder(acmeshop).version


def test_unknown_kind_and_version_in_our_group(acmeshop: Path) -> None:
    (acmeshop / "x.yaml").write_text(
        "apiVersion: skyroute.io/v1alpha1\nkind: Experiment\nmetadata: {name: e}\n---\n"
        "apiVersion: skyroute.io/v2\nkind: ModelPool\nmetadata: {name: p}\nspec: {models: []}\n"
    )
    problems = _problems(acmeshop)
    assert problems[0].path == "kind" and 'unknown kind "Experiment"' in problems[0].message
    assert any(p.path == "apiVersion" and p.obj == "ModelPool default/p" for p in problems)


def test_missing_folder() -> None:
    [problem] = _problems(Path("/nonexistent/skyroute-policies"))
    assert str(problem) == "/nonexistent/skyroute-policies: source folder not found"


def test_an_impossible_date_is_a_problem_not_a_crash(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from skyroute.control.policy.compiler import compile_folder
    from skyroute.control.policy.errors import PolicyError

    (tmp_path / "bad.yaml").write_text(
        "apiVersion: skyroute.io/v1alpha1\nkind: ModelPool\nmetadata: {name: p}\n"
        "spec:\n  models:\n    - name: m\n      provider: openai\n"
        "      endpoint: http://127.0.0.1:1/v1\n"
        "      pricing: {inputPerMTok: 1, outputPerMTok: 1}\n"
        "      evals: {evalSet: s, evaluatedAt: 2026-13-01}\n"
    )
    try:
        compile_folder(tmp_path)
    except PolicyError as e:
        assert "bad.yaml" in str(e) and "month" in str(e).lower()
    else:
        raise AssertionError("an impossible date compiled")


def test_a_weight_too_small_to_tell_from_zero_is_refused(acmeshop: Path) -> None:
    _edit(
        acmeshop / "policy.yaml",
        "weights: {cost: 0.25, latency: 0.25,",
        "weights: {cost: 1.0e-9, latency: 0.25,",
    )
    [problem] = _problems(acmeshop)
    assert problem.obj == "RoutingPolicy default/acmeshop"
    assert problem.path == "spec.weights.cost"
    assert "a weight is 0 or at least 1e-06" in problem.message
