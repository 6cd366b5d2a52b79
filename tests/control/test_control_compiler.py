"""The compiled snapshot: filled as snapshot.proto documents, versioned by content."""

from __future__ import annotations

import functools
import hashlib
import random
import re
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from skyroute.control.policy.compiler import compile_folder, resolve_quality, snapshot_version
from skyroute.v1 import snapshot_pb2

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acmeshop"

VERSION = re.compile(r"^sha256:[0-9a-f]{16}$")


def test_acmeshop_snapshot_contents() -> None:
    s = compile_folder(EXAMPLE)
    assert VERSION.match(s.version)
    assert s.default_policy == "acmeshop"
    assert [p.name for p in s.pools] == ["balanced", "baseline", "cost", "quality"]
    assert [p.name for p in s.policies] == ["acmeshop", "baseline"]
    pools = {p.name: p for p in s.pools}
    assert [c.model for c in pools["cost"].candidates] == ["gemini-3-flash", "claude-4.5-haiku"]
    assert [c.model for c in pools["balanced"].candidates] == ["claude-4.5-sonnet", "gpt-5.2"]
    assert [c.model for c in pools["quality"].candidates] == ["gpt-5.2-high", "claude-4.5-opus"]
    assert [c.model for c in pools["baseline"].candidates] == ["gpt-5.2"]
    flash = pools["cost"].candidates[0]
    assert (flash.provider, flash.endpoint, flash.family) == (
        "gemini",
        "http://127.0.0.1:8790/gemini",
        "gemini",
    )
    assert (flash.input_price_per_mtok, flash.output_price_per_mtok) == (0.5, 3.0)
    assert flash.api_key_env == "GEMINI_API_KEY" and flash.api_key_file == ""
    assert flash.supports_tools and flash.timeout_ms == 4000
    # Quality globs resolved per intent, the most specific glob winning, "*" kept.
    assert flash.quality["faq.refund"] == 0.90 and flash.quality["support.general"] == 0.72
    assert flash.quality["*"] == 0.72
    baseline = pools["baseline"].candidates[0]
    assert baseline.timeout_ms == 10000  # the CRD default
    # upstream_model is set only when it differs from the model name.
    assert pools["quality"].candidates[0].upstream_model == ""

    acme = s.policies[0]
    assert acme.namespace == "default" and VERSION.match(acme.version)
    assert acme.intents[0].name == "safety.medical"
    assert all(k == k.lower() for i in acme.intents for k in i.keywords)
    rules = {r.name: r for r in acme.rules}
    assert list(rules) == ["safety", "tool-plans", "reasoning", "faq-and-low-risk"]
    assert list(rules["tool-plans"].intents) == ["tools.invoice", "tools.ticket", "tools.shipment"]
    assert rules["faq-and-low-risk"].tools == snapshot_pb2.TOOL_MATCH_ABSENT
    assert rules["faq-and-low-risk"].pool == "cost"
    assert set(rules["faq-and-low-risk"].intents) == {
        "faq.password",
        "faq.pricing",
        "faq.refund",
        "faq.shipping",
        "faq.account",
        "faq.warranty",
        "faq.payment",
        "faq.giftcard",
        "faq.store-hours",
        "lowrisk.order-status",
        "lowrisk.smalltalk",
    }
    assert acme.default_pool == "balanced"
    assert acme.cache.enabled and acme.cache.similarity_threshold == 0.9
    assert list(acme.cache.intents) == [
        "faq.password",
        "faq.pricing",
        "faq.refund",
        "faq.shipping",
        "faq.account",
        "faq.warranty",
        "faq.payment",
        "faq.giftcard",
        "faq.store-hours",
    ]
    assert (
        acme.limits.max_attempts,
        acme.limits.request_timeout_ms,
        acme.limits.first_token_timeout_ms,
    ) == (3, 30000, 5000)
    assert acme.weights.cost == 0.25 and not acme.trust_declared_intent
    base = s.policies[1]
    assert base.default_pool == "baseline" and not base.rules and not base.cache.enabled


def test_snapshot_version_is_the_hash_with_version_empty() -> None:
    s = compile_folder(EXAMPLE)
    assert snapshot_version(s) == s.version
    unversioned = snapshot_pb2.Snapshot()
    unversioned.CopyFrom(s)
    unversioned.version = ""
    raw = unversioned.SerializeToString(deterministic=True)
    assert s.version == "sha256:" + hashlib.sha256(raw).hexdigest()[:16]
    s.pools[0].candidates[0].timeout_ms += 1
    assert snapshot_version(s) != s.version


def test_no_key_value_ever_enters_the_snapshot(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GEMINI_API_KEY", "sk-secret-value-123")
    s = compile_folder(EXAMPLE)
    assert b"sk-secret-value-123" not in s.SerializeToString()


def _documents() -> list[dict[str, object]]:
    docs: list[dict[str, object]] = []
    for name in ("pools.yaml", "policy.yaml"):
        docs.extend(d for d in yaml.safe_load_all((EXAMPLE / name).read_text()) if d)
    return docs


def _write_shuffled(folder: Path, seed: int, files: int) -> None:
    rng = random.Random(seed)
    docs = _documents()
    rng.shuffle(docs)
    folder.mkdir()
    buckets: list[list[dict[str, object]]] = [[] for _ in range(files)]
    for doc in docs:
        buckets[rng.randrange(files)].append(doc)
    for i, bucket in enumerate(buckets):
        name = f"{rng.randrange(10**6):06d}-{i}.{rng.choice(['yaml', 'yml'])}"
        (folder / name).write_text(yaml.safe_dump_all(bucket, sort_keys=rng.random() < 0.5))


@functools.cache
def _reference() -> snapshot_pb2.Snapshot:
    return compile_folder(EXAMPLE)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), files=st.integers(1, 5))
def test_same_input_same_version_whatever_the_file_and_document_order(
    tmp_path_factory,
    seed: int,
    files: int,  # type: ignore[no-untyped-def]
) -> None:
    reference = _reference()
    folder = tmp_path_factory.mktemp("shuffled") / "src"
    _write_shuffled(folder, seed, files)
    s = compile_folder(folder)
    assert s.version == reference.version
    assert s.SerializeToString(deterministic=True) == reference.SerializeToString(
        deterministic=True
    )


def test_repeated_compiles_agree() -> None:
    versions = {compile_folder(EXAMPLE).version for _ in range(5)}
    assert len(versions) == 1


def test_a_change_moves_only_the_versions_it_touches(acmeshop: Path) -> None:
    before = compile_folder(acmeshop)
    text = (acmeshop / "pools.yaml").read_text()
    # The baseline pool is used by the baseline policy only.
    text = text.replace('      quality: {"*": 0.86}', '      quality: {"*": 0.85}')
    (acmeshop / "pools.yaml").write_text(text)
    after = compile_folder(acmeshop)
    assert after.version != before.version
    old = {p.name: p.version for p in before.policies}
    new = {p.name: p.version for p in after.policies}
    assert new["acmeshop"] == old["acmeshop"]
    assert new["baseline"] != old["baseline"]


def test_comments_and_formatting_do_not_change_the_version(acmeshop: Path) -> None:
    before = compile_folder(acmeshop).version
    policy = acmeshop / "policy.yaml"
    policy.write_text(
        "# a new comment\n" + policy.read_text().replace("      pool: cost", "      pool:   cost  ")
    )
    assert compile_folder(acmeshop).version == before


def test_default_policy_is_the_only_one_when_none_is_marked(tmp_path: Path) -> None:
    docs = [d for d in _documents() if d["kind"] == "ModelPool"]
    docs.append(
        {
            "apiVersion": "skyroute.io/v1alpha1",
            "kind": "RoutingPolicy",
            "metadata": {"name": "solo"},
            "spec": {"defaultPool": "cost"},
        }
    )
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs))
    assert compile_folder(tmp_path).default_policy == "solo"
    docs.append(
        {
            "apiVersion": "skyroute.io/v1alpha1",
            "kind": "RoutingPolicy",
            "metadata": {"name": "second"},
            "spec": {"defaultPool": "cost"},
        }
    )
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs))
    assert compile_folder(tmp_path).default_policy == ""


def test_resolve_quality_most_specific_wins() -> None:
    scores = {"*": 0.8, "faq.*": 0.9, "faq.refund": 0.7}
    got = resolve_quality(scores, ["faq.refund", "faq.pricing", "support.general"])
    assert got == {"*": 0.8, "faq.refund": 0.7, "faq.pricing": 0.9, "support.general": 0.8}
    assert resolve_quality({"faq.*": 0.5}, ["support.general"]) == {}
