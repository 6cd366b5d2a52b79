"""Policy tests (spec.tests) at compile time: the router's decision, checked per case."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from skyroute.control.policy.compiler import compile_folder, compile_objects
from skyroute.control.policy.errors import PolicyError
from skyroute.control.policy.loader import load_folder
from skyroute.control.policy.model import RoutingPolicy
from skyroute.control.policy.policytests import (
    ResultCache,
    keyless_snapshot,
    run_policies,
    run_policy_tests,
)
from skyroute.control.policy.store import SnapshotStore
from skyroute.control.policy.validate import validate
from skyroute.control.source import SourceWatcher

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: standard}
spec:
  models:
    - name: cheap
      provider: gemini
      endpoint: http://127.0.0.1:1/gemini
      pricing: {inputPerMTok: 0.5, outputPerMTok: 3}
      contextWindow: 100000
      supportsTools: false
      apiKey: {env: SKYROUTE_TEST_NOT_SET_KEY}
    - name: roomy
      provider: openai
      endpoint: http://127.0.0.1:1/openai/v1
      pricing: {inputPerMTok: 2, outputPerMTok: 8}
      contextWindow: 1000000
      apiKey: {file: /nonexistent/skyroute/key}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: premium}
spec:
  models:
    - name: strong
      provider: anthropic
      endpoint: http://127.0.0.1:1/anthropic
      pricing: {inputPerMTok: 5, outputPerMTok: 25}
      apiKey: {secretKeyRef: {name: llm-keys, key: anthropic}}
"""

POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: shop}
spec:
  trustDeclaredIntent: {trust}
  intents:
    - {name: refund, keywords: [refund]}
    - {name: billing, keywords: [invoice]}
  rules:
    - {name: vip, match: {userTiers: [vip]}, pool: premium}
    - {name: french, match: {locales: [fr-FR]}, pool: premium}
    - {name: big-tenant, match: {tenants: [megacorp]}, pool: premium}
    - {name: huge, match: {minPromptTokens: 50000, maxPromptTokens: 90000}, pool: premium}
    - {name: billing-tools, match: {intents: [billing], tools: required}, pool: premium}
  defaultPool: standard
  cache: {enabled: true, intents: [refund]}
  adaptation: {enabled: true, exploration: 0.5}
  tests:
{tests}
"""


def write(folder: Path, tests: str, trust: bool = False) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "pools.yaml").write_text(POOLS)
    (folder / "policy.yaml").write_text(
        POLICY.replace("{trust}", str(trust).lower()).replace("{tests}", tests)
    )
    return folder


def case(name: str, request: str, expect: str) -> str:
    return f"    - name: {name}\n      request: {request}\n      expect: {expect}\n"


def test_acmeshop_tests_pass_and_are_meaningful() -> None:
    objects = validate(load_folder(Path(__file__).resolve().parents[2] / "examples" / "acmeshop"))
    snapshot = compile_objects(objects, run_tests=False)
    runs = run_policies(
        snapshot, [p.obj for p in objects.policies if isinstance(p.obj, RoutingPolicy)]
    )
    assert [r.policy for r in runs] == ["default/acmeshop", "default/baseline"]
    cases = [c for r in runs for c in r.cases]
    assert len(cases) >= 10 and all(c.passed for c in cases), [c.message() for c in cases]
    pools = {c.got.pool for c in cases}
    assert pools == {"cost", "balanced", "quality", "baseline"}  # every pool is pinned
    assert {c.got.cacheable for c in cases} == {True, False}


def test_a_failing_case_is_a_problem_naming_the_case_and_the_decision(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "p",
        case(
            '"refund to standard"',
            "{prompt: I want a refund, userTier: vip}",
            "{pool: standard, intent: refund}",
        ),
    )
    with pytest.raises(PolicyError) as err:
        compile_folder(folder)
    (problem,) = err.value.problems
    assert problem.file == str(folder / "policy.yaml")
    assert problem.obj == "RoutingPolicy default/shop" and problem.path == "spec.tests[0]"
    assert problem.line == 19  # the case's own line
    assert problem.message == (
        'test "refund to standard" failed: expected pool "standard", '
        'got pool "premium" (intent "refund" from keyword:refund, '
        'rule "vip")'
    )
    # Without the tests, the same objects compile: callers can run them on their own.
    snapshot = compile_objects(validate(load_folder(folder)), run_tests=False)
    assert [p.name for p in snapshot.policies] == ["shop"]


def test_every_request_field_reaches_the_decision(tmp_path: Path) -> None:
    tests = "".join(
        [
            case(
                "plain",
                "{prompt: I want a refund}",
                "{pool: standard, model: cheap, intent: refund, cacheable: true}",
            ),
            case("tier", "{prompt: I want a refund, userTier: vip}", "{pool: premium}"),
            case("locale", "{prompt: I want a refund, locale: fr-FR}", "{pool: premium}"),
            case("tenant", "{prompt: I want a refund, tenant: megacorp}", "{pool: premium}"),
            case(
                "prompt tokens override the estimate",
                "{prompt: refund, promptTokens: 60000}",
                "{pool: premium}",
            ),
            case(
                "tools need a tool model and are never cached",
                "{prompt: refund, tools: true}",
                "{pool: standard, model: roomy, cacheable: false}",
            ),
            case(
                "tools select rules",
                "{prompt: send the invoice, tools: true}",
                "{pool: premium, intent: billing}",
            ),
            case(
                "declared intent is not trusted",
                "{prompt: send the invoice, intent: refund}",
                "{intent: billing}",
            ),
            case(
                "context window filters the chain",
                "{prompt: hello, promptTokens: 200000}",
                "{pool: standard, model: roomy}",
            ),
        ]
    )
    folder = write(tmp_path / "p", tests)
    compile_folder(folder)  # all pass
    objects = validate(load_folder(folder))
    snapshot = compile_objects(objects, run_tests=False)
    (run,) = run_policies(snapshot, [p.obj for p in objects.policies])  # type: ignore[misc]
    got = {c.name: c.got for c in run.cases}
    assert got["plain"].chain == ("cheap", "roomy")
    assert got["tier"].rule == "vip" and got["locale"].rule == "french"
    assert (
        got["tenant"].rule == "big-tenant"
        and got["prompt tokens override the estimate"].rule == "huge"
    )
    assert got["tools need a tool model and are never cached"].chain == ("roomy",)
    assert got["context window filters the chain"].chain == ("roomy",)
    # Trusting declared intents changes the decision, and the test says so.
    write(
        tmp_path / "p",
        case("declared", "{prompt: send the invoice, intent: refund}", "{intent: billing}"),
        trust=True,
    )
    with pytest.raises(PolicyError) as err:
        compile_folder(folder)
    assert 'got intent "refund" (intent "refund" from declared' in str(err.value)


def test_no_candidate_and_no_exploration(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "p",
        case(
            "too big for every model", "{prompt: hello, promptTokens: 2000000}", "{model: strong}"
        ),
    )
    with pytest.raises(PolicyError) as err:
        compile_folder(folder)
    assert 'expected model "strong", got model (none)' in str(err.value)
    # adaptation.exploration is 0.5: a live router would put the runner-up first on about
    # half the requests; tests never explore, so the verdict is the same every time.
    write(tmp_path / "p", case("best first", "{prompt: hello}", "{model: cheap}"))
    objects = validate(load_folder(folder))
    snapshot = compile_objects(objects, run_tests=False)
    models = {
        run_policies(snapshot, [objects.policies[0].obj])[0].cases[0].got.model  # type: ignore[list-item]
        for _ in range(40)
    }
    assert models == {"cheap"}


def test_api_keys_are_never_read(tmp_path: Path) -> None:
    os.environ.pop("SKYROUTE_TEST_NOT_SET_KEY", None)
    folder = write(tmp_path / "p", case("plain", "{prompt: refund}", "{pool: standard}"))
    snapshot = compile_folder(folder)  # missing env var, file and secret: no error
    assert any(c.api_key_env for p in snapshot.pools for c in p.candidates)
    stripped = keyless_snapshot(snapshot)
    assert not any(c.api_key_env or c.api_key_file for p in stripped.pools for c in p.candidates)
    refs = {c.model: (c.api_key_env, c.api_key_file) for p in snapshot.pools for c in p.candidates}
    assert refs["cheap"] == ("SKYROUTE_TEST_NOT_SET_KEY", "")  # the original is untouched
    assert refs["strong"] == ("", "/var/run/secrets/skyroute/llm-keys/anthropic")


def test_a_policy_routers_would_refuse_is_reported_on_its_tests(tmp_path: Path) -> None:
    folder = write(tmp_path / "p", case("plain", "{prompt: refund}", "{pool: standard}"))
    text = (
        (folder / "policy.yaml")
        .read_text()
        .replace(
            "{name: billing, keywords: [invoice]}", "{name: billing, patterns: ['(?<=x)invoice']}"
        )
    )
    (folder / "policy.yaml").write_text(text)
    with pytest.raises(PolicyError) as err:
        compile_folder(folder)
    (problem,) = err.value.problems
    assert problem.path == "spec.tests"
    assert "cannot run the tests: a router would refuse this policy" in problem.message
    assert "not valid RE2" in problem.message


def test_results_are_cached_by_version_and_tests(tmp_path: Path) -> None:
    folder = write(tmp_path / "p", case("plain", "{prompt: refund}", "{pool: standard}"))
    objects = validate(load_folder(folder))
    policy = objects.policies[0].obj
    assert isinstance(policy, RoutingPolicy)
    snapshot = compile_objects(objects, run_tests=False)
    cache = ResultCache()
    first = run_policies(snapshot, [policy], cache)[0]
    assert run_policies(snapshot, [policy], cache)[0] is first
    changed = policy.model_copy(
        update={
            "spec": policy.spec.model_copy(
                update={
                    "tests": [
                        *policy.spec.tests,
                        policy.spec.tests[0].model_copy(update={"name": "again"}),
                    ]
                }
            )
        }
    )
    again = run_policies(snapshot, [changed], cache)[0]
    assert again is not first and len(again.cases) == 2


def test_bare_objects_are_located_with_file_of(tmp_path: Path) -> None:
    folder = write(tmp_path / "p", case("wrong", "{prompt: refund}", "{pool: premium}"))
    objects = validate(load_folder(folder))
    snapshot = compile_objects(objects, run_tests=False)
    policy = objects.policies[0].obj
    (problem,) = run_policy_tests(snapshot, [policy], file_of={"default/shop": "shop.yaml"})  # type: ignore[list-item]
    assert (problem.file, problem.obj, problem.path, problem.line) == (
        "shop.yaml",
        "RoutingPolicy default/shop",
        "spec.tests[0]",
        None,
    )


def test_the_folder_control_plane_keeps_the_last_good_snapshot(tmp_path: Path) -> None:
    folder = write(tmp_path / "p", case("plain", "{prompt: refund}", "{pool: standard}"))
    store = SnapshotStore()
    watcher = SourceWatcher(str(folder), store)
    assert watcher.reload() is True
    good = store.version
    docs = list(yaml.safe_load_all((folder / "policy.yaml").read_text()))
    docs[0]["spec"]["rules"].insert(0, {"name": "all-premium", "pool": "premium"})
    (folder / "policy.yaml").write_text(yaml.safe_dump_all(docs))
    assert watcher.reload() is False
    assert store.version == good and watcher.rejections == 1
