"""The operator's logic without a cluster: world, conditions, admission, fleet.

These pin the rules the cluster tests then check end to end: per-object
acceptance in any order, last-known-good per object, retention of a pool
that is still referenced, exactly the dependent policies re-versioned, and a
compile identical to the folder compiler's for the same objects (so a
restart, a replica and ``skyroute control`` all agree on versions).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from skyroute.control.distribution.routers import RouterRegistry
from skyroute.control.kube.admission import review
from skyroute.control.kube.conditions import build_status, condition
from skyroute.control.kube.fleet import Fleet, SyncCount
from skyroute.control.kube.world import Key, World
from skyroute.control.policy.compiler import compile_folder
from skyroute.v1 import distribution_pb2

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "acmeshop"
NOW = "2026-01-01T00:00:00Z"


def bodies() -> list[dict[str, Any]]:
    out = []
    for name in ("pools.yaml", "policy.yaml"):
        for doc in yaml.safe_load_all((EXAMPLE / name).read_text()):
            if doc and doc.get("apiVersion", "").startswith("skyroute.io/"):
                doc["metadata"].update(
                    namespace="default", uid=f"uid-{doc['metadata']['name']}", generation=1
                )
                out.append(doc)
    return out


def by_name(objs: list[dict[str, Any]], name: str, kind: str = "") -> dict[str, Any]:
    return next(o for o in objs if o["metadata"]["name"] == name and kind in ("", o["kind"]))


def bumped(body: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(body)
    new["metadata"]["generation"] += 1
    return new


def loaded(objs: list[dict[str, Any]] | None = None) -> World:
    world = World()
    for body in objs if objs is not None else bodies():
        world.observe(body)
    world.reconcile()
    return world


POLICY = Key("RoutingPolicy", "default", "acmeshop")
BASELINE = Key("RoutingPolicy", "default", "baseline")
COST = Key("ModelPool", "default", "cost")


def test_bulk_load_compiles_what_the_folder_compiler_compiles() -> None:
    world = loaded()
    assert world.snapshot is not None
    assert world.snapshot.version == compile_folder(EXAMPLE).version
    assert world.rejections() == {}
    state = world.state(POLICY)
    assert state is not None and state.current and state.version.startswith("sha256:")


def test_order_does_not_matter_and_a_missing_pool_waits() -> None:
    objs = bodies()
    world = World()
    for body in objs:
        if body["kind"] == "RoutingPolicy":
            world.observe(body)
    world.reconcile()
    state = world.state(POLICY)
    assert state is not None and not state.current and state.serving_generation is None
    paths = {p.path for p in state.rejected}
    assert "spec.defaultPool" in paths, state.rejected
    status = build_status(state, SyncCount(0, 0), None, NOW)
    compiled = condition(status, "Compiled")
    assert compiled is not None and compiled["reason"] == "PoolNotFound"
    assert 'spec.defaultPool: pool "balanced" not found' in compiled["message"]
    for body in objs:
        if body["kind"] == "ModelPool":
            world.observe(body)
    assert world.reconcile() is True
    assert world.snapshot is not None
    assert world.snapshot.version == loaded().snapshot.version  # type: ignore[union-attr]
    assert world.rejections() == {}


def test_an_invalid_generation_leaves_the_previous_one_serving() -> None:
    objs = bodies()
    world = loaded(objs)
    before = world.snapshot.version  # type: ignore[union-attr]
    bad = bumped(by_name(objs, "acmeshop"))
    bad["spec"]["intents"][0]["patterns"] = ["(unclosed"]
    world.observe(bad)
    assert world.reconcile() is False
    assert world.snapshot.version == before  # type: ignore[union-attr]
    state = world.state(POLICY)
    assert state is not None and state.serving_generation == 1 and state.generation == 2
    assert [p.path for p in state.invalid] == ["spec.intents[0].patterns[0]"]
    status = build_status(state, SyncCount(1, 0), None, NOW)
    accepted = condition(status, "Accepted")
    assert accepted is not None and accepted["status"] == "False"
    assert "invalid regular expression" in accepted["message"]
    compiled = condition(status, "Compiled")
    assert compiled is not None and "routers keep serving generation 1" in compiled["message"]
    assert status["version"] == state.version and status["observedGeneration"] == 2


def test_a_pool_change_re_versions_exactly_the_policies_using_it() -> None:
    objs = bodies()
    world = loaded(objs)
    old = dict(world.versions)
    pool = bumped(by_name(objs, "cost"))
    pool["spec"]["models"][0]["pricing"]["inputPerMTok"] = 0.25
    world.observe(pool)
    assert world.reconcile() is True
    assert world.versions[POLICY] != old[POLICY]  # acmeshop routes faq.* to cost
    assert world.versions[BASELINE] == old[BASELINE]  # baseline uses only its own pool
    assert world.versions[COST] != old[COST]


def test_deleting_a_policy_removes_it_and_a_used_pool_is_retained() -> None:
    world = loaded()
    world.forget(BASELINE)
    world.reconcile()
    assert [p.name for p in world.snapshot.policies] == ["acmeshop"]  # type: ignore[union-attr]
    world.forget(COST)
    assert world.reconcile() is False
    assert COST in world.retained()
    assert "cost" in [p.name for p in world.snapshot.pools]  # type: ignore[union-attr]
    state = world.state(POLICY)
    assert state is not None and state.dangling
    ready = condition(build_status(state, SyncCount(0, 0), None, NOW), "Ready")
    assert ready is not None and ready["reason"] == "PoolDeleted"
    world.forget(POLICY)
    world.reconcile()
    assert world.retained() == {}
    assert world.snapshot is not None and not world.snapshot.policies
    assert "cost" not in [p.name for p in world.snapshot.pools]


def test_admission_denies_what_cannot_work_and_warns_about_order() -> None:
    objs = bodies()
    world = loaded(objs)
    bad = bumped(by_name(objs, "acmeshop"))
    bad["spec"]["intents"][1]["patterns"] = ["[z-a]"]
    verdict = review(world, bad)
    assert not verdict.allowed
    assert verdict.message().startswith("spec.intents[1].patterns[0]: invalid regular expression")
    second = copy.deepcopy(by_name(objs, "baseline", "RoutingPolicy"))
    second["metadata"].update(name="another", uid="uid-another")
    second["spec"]["default"] = True
    verdict = review(world, second)
    assert not verdict.allowed and "spec.default: more than one default policy" in verdict.message()
    elsewhere = copy.deepcopy(by_name(objs, "cost"))
    elsewhere["metadata"].update(namespace="team-b", uid="uid-b")
    verdict = review(world, elsewhere)
    assert not verdict.allowed and verdict.message().startswith("metadata.name: ModelPool name")
    missing = bumped(by_name(objs, "baseline", "RoutingPolicy"))
    missing["spec"]["defaultPool"] = "nope"
    verdict = review(world, missing)
    assert verdict.allowed
    assert verdict.warnings == (
        'spec.defaultPool: pool "nope" not found (known: balanced, baseline, cost, quality)',
    )


def test_conditions_keep_transition_times_and_count_routers() -> None:
    world = loaded()
    state = world.state(POLICY)
    assert state is not None
    first = build_status(state, SyncCount(2, 1), None, NOW)
    synced = condition(first, "Synced")
    assert synced is not None and synced["reason"] == "RoutersStale"
    assert synced["message"] == f"1 of 3 connected routers do not serve {state.version} yet"
    assert first["routers"] == {"synced": 2, "stale": 1}
    later = build_status(state, SyncCount(3, 0), first, "2026-01-01T00:01:00Z")
    assert condition(later, "Accepted")["lastTransitionTime"] == NOW  # type: ignore[index]
    assert condition(later, "Synced")["lastTransitionTime"] == "2026-01-01T00:01:00Z"  # type: ignore[index]
    assert condition(later, "Ready")["status"] == "True"  # type: ignore[index]
    assert build_status(state, SyncCount(3, 0), later, "2026-01-01T00:02:00Z") == later


def test_fleet_counts_routers_by_the_snapshot_they_acked() -> None:
    objs = bodies()
    world = loaded(objs)
    registry = RouterRegistry()
    fleet = Fleet(registry)
    first = world.snapshot
    assert first is not None
    fleet.record(first)
    for i in range(2):
        record = registry.connect(distribution_pb2.Node(id=f"r{i}"))
        record.hello(distribution_pb2.SnapshotRequest(version_info=first.version), first.version)
    pool = bumped(by_name(objs, "cost"))
    pool["spec"]["models"][0]["timeoutMs"] = 5000
    world.observe(pool)
    world.reconcile()
    assert world.snapshot is not None
    fleet.record(world.snapshot)
    # Both routers still hold the first snapshot: baseline is unchanged there, acmeshop is not.
    assert fleet.count(BASELINE, world.versions[BASELINE]) == SyncCount(2, 0)
    assert fleet.count(POLICY, world.versions[POLICY]) == SyncCount(0, 2)


# --- spec.tests: a generation whose routing cases fail never serves -------------------------


def test_a_generation_whose_tests_fail_waits_and_the_previous_one_serves() -> None:
    objs = bodies()
    world = loaded(objs)
    before = world.snapshot.version  # type: ignore[union-attr]
    bad = bumped(by_name(objs, "acmeshop"))
    bad["spec"]["rules"][3]["pool"] = "balanced"  # FAQs to the expensive pool
    world.observe(bad)
    assert world.reconcile() is False
    assert world.snapshot.version == before  # type: ignore[union-attr]
    state = world.state(POLICY)
    assert state is not None and state.serving_generation == 1 and not state.invalid
    assert [p.path for p in state.rejected] == ["spec.tests[0]", "spec.tests[6]", "spec.tests[7]"]
    compiled = condition(build_status(state, SyncCount(1, 0), None, NOW), "Compiled")
    assert compiled is not None and compiled["reason"] == "Rejected"
    assert compiled["message"].startswith(
        'spec.tests[0]: test "password reset is a cached FAQ on the cheap model" failed: '
        'expected pool "cost" and model "gemini-3-flash", got pool "balanced" and model '
        '"claude-4.5-sonnet" (intent "faq.password" from keyword:reset my password, rule '
        '"faq-and-low-risk")'
    )
    assert "routers keep serving generation 1" in compiled["message"]
    verdict = review(world, bad)
    assert not verdict.allowed
    assert verdict.message().startswith('spec.tests[0]: test "password reset is a cached FAQ')
    # Fixing the tests (or the rule) lets the next generation through.
    fixed = bumped(bad)
    fixed["spec"]["tests"] = [t for t in bad["spec"]["tests"] if t["expect"].get("pool") != "cost"]
    assert review(world, fixed).allowed
    world.observe(fixed)
    assert world.reconcile() is True
    assert world.state(POLICY).current  # type: ignore[union-attr]


def test_a_pool_change_breaking_a_test_waits_for_the_policy_in_either_order() -> None:
    objs = bodies()
    world = loaded(objs)
    before = world.snapshot.version  # type: ignore[union-attr]
    pool = bumped(by_name(objs, "cost"))
    pool["spec"]["models"][0]["name"] = "gemini-3.5-flash"
    policy = bumped(by_name(objs, "acmeshop"))
    for test in policy["spec"]["tests"]:
        if test["expect"].get("model") == "gemini-3-flash":
            test["expect"]["model"] = "gemini-3.5-flash"
    # The policy alone expects a model no serving pool has: refused by the webhook.
    verdict = review(world, policy)
    assert not verdict.allowed
    assert 'expected model "gemini-3.5-flash", got model "gemini-3-flash"' in verdict.message()
    # The pool alone breaks the accepted policy's tests: admitted with a warning, then held.
    verdict = review(world, pool)
    assert verdict.allowed
    assert any(
        w.startswith("RoutingPolicy default/acmeshop spec.tests[0]: test ")
        for w in verdict.warnings
    ), verdict.warnings
    world.observe(pool)
    assert world.reconcile() is False and world.snapshot.version == before  # type: ignore[union-attr]
    held = world.state(COST)
    assert held is not None and held.serving_generation == 1
    assert {(p.obj, p.path) for p in held.rejected} == {
        ("RoutingPolicy default/acmeshop", "spec.tests[0]"),
        ("RoutingPolicy default/acmeshop", "spec.tests[7]"),
    }
    # Now the policy passes against the newest pools: admitted, and both go live together.
    verdict = review(world, policy)
    assert verdict.allowed and "this policy waits for them" in verdict.warnings[-1]
    world.observe(policy)
    assert world.reconcile() is True
    assert world.state(COST).current and world.state(POLICY).current  # type: ignore[union-attr]
    models = {c.model for p in world.snapshot.pools for c in p.candidates}  # type: ignore[union-attr]
    assert "gemini-3.5-flash" in models and "gemini-3-flash" not in models


def test_tests_rerun_only_when_a_policy_or_its_pools_change(monkeypatch: Any) -> None:
    from skyroute.control.policy import policytests

    runs: list[str] = []
    real = policytests._run_one

    def counting(snapshot: Any, policy: Any) -> Any:
        runs.append(policy.metadata.name)
        return real(snapshot, policy)

    monkeypatch.setattr(policytests, "_run_one", counting)
    objs = bodies()
    world = loaded(objs)
    assert sorted(runs) == ["acmeshop", "baseline"]
    pool = bumped(by_name(objs, "cost"))
    pool["spec"]["models"][0]["timeoutMs"] = 5000
    world.observe(pool)
    assert world.reconcile() is True
    assert sorted(runs) == ["acmeshop", "acmeshop", "baseline"]  # baseline does not use cost
    assert world.reconcile() is False and review(world, pool).allowed
    assert len(runs) == 3
