"""A cache error bound (maxFalseHitRate) compiles to the snapshot; a bad one is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.errors import PolicyError
from skyroute.router.table import build_table

CACHE = """    similarityThreshold: 0.9
    ttlSeconds: 3600
"""


def _cache(folder: Path, lines: str) -> None:
    policy = folder / "policy.yaml"
    text = policy.read_text()
    assert CACHE in text
    policy.write_text(text.replace(CACHE, lines, 1))


def _policy(folder: Path):  # type: ignore[no-untyped-def]
    snapshot = compile_folder(folder)
    [policy] = [p for p in snapshot.policies if p.name == "acmeshop"]
    return snapshot, policy


def test_bound_without_threshold_sends_threshold_zero_and_the_bound(acmeshop: Path) -> None:
    _cache(
        acmeshop,
        "    maxFalseHitRate: 0.02\n    ttlSeconds: 3600\n"
        "    families:\n"
        "      faq: {maxFalseHitRate: 0.005, ttlSeconds: 60}\n"
        "      docs: {similarityThreshold: 0.93, maxFalseHitRate: 0.2}\n",
    )
    snapshot, policy = _policy(acmeshop)
    assert policy.cache.similarity_threshold == 0.0
    assert policy.cache.HasField("max_false_hit_rate")
    assert policy.cache.max_false_hit_rate == pytest.approx(0.02)
    faq, docs = policy.cache.families["faq"], policy.cache.families["docs"]
    assert (faq.similarity_threshold, faq.max_false_hit_rate) == (0.0, 0.005)
    assert docs.similarity_threshold == pytest.approx(0.93)  # explicit wins, bound kept
    settings = build_table(snapshot).policy("acmeshop").cache  # type: ignore[union-attr]
    assert (settings.threshold, settings.max_false_hit_rate) == (0.0, 0.02)
    assert settings.family_bounds == (("docs", 0.2), ("faq", 0.005))


def test_explicit_threshold_is_sent_as_is_with_a_bound(acmeshop: Path) -> None:
    _cache(acmeshop, "    similarityThreshold: 0.91\n    maxFalseHitRate: 0.01\n")
    _, policy = _policy(acmeshop)
    assert policy.cache.similarity_threshold == pytest.approx(0.91)
    assert policy.cache.max_false_hit_rate == pytest.approx(0.01)


def test_no_bound_keeps_the_threshold_and_no_bound_field(acmeshop: Path) -> None:
    snapshot, policy = _policy(acmeshop)
    assert policy.cache.similarity_threshold == pytest.approx(0.9)
    assert not policy.cache.HasField("max_false_hit_rate")
    settings = build_table(snapshot).policy("acmeshop").cache  # type: ignore[union-attr]
    assert (settings.threshold, settings.max_false_hit_rate) == (0.9, None)


@pytest.mark.parametrize(
    ("value", "path", "words"),
    [
        ("0.7", "spec.cache.maxFalseHitRate", "less than or equal to 0.5"),
        ("-0.01", "spec.cache.maxFalseHitRate", "greater than or equal to 0"),
        ('"1%"', "spec.cache.maxFalseHitRate", "number"),
    ],
)
def test_bad_bound_names_file_object_field_and_line(
    acmeshop: Path, value: str, path: str, words: str
) -> None:
    _cache(acmeshop, f"    maxFalseHitRate: {value}\n    ttlSeconds: 3600\n")
    with pytest.raises(PolicyError) as info:
        compile_folder(acmeshop)
    [problem] = info.value.problems
    assert str(problem).startswith(
        f"{acmeshop}/policy.yaml: RoutingPolicy default/acmeshop: {path}"
    )
    assert words in problem.message
    lines = (acmeshop / "policy.yaml").read_text().splitlines()
    assert "maxFalseHitRate" in lines[problem.line - 1]


def test_bad_family_bound_names_the_family_field(acmeshop: Path) -> None:
    _cache(acmeshop, "    families:\n      faq: {maxFalseHitRate: 2}\n")
    with pytest.raises(PolicyError) as info:
        compile_folder(acmeshop)
    [problem] = info.value.problems
    assert problem.obj == "RoutingPolicy default/acmeshop"
    assert problem.path == "spec.cache.families.faq.maxFalseHitRate"
