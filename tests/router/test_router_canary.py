"""The router's canary split: sticky keys, the conversation fallback, weights, tables.

The control plane's side (which versions, which weight) is tested with the
rollout controller; here a hand-built snapshot carries a stable policy with a
``Canary`` and its candidate entry, and the router's own table building and
``choose`` are exercised as a request would use them.
"""

from __future__ import annotations

import pytest

from skyroute.router.canary import choose
from skyroute.router.table import SnapshotError, build_table
from skyroute.v1 import snapshot_pb2


def snapshot(
    weight_bp: int, stickiness: int = snapshot_pb2.STICKINESS_USER, link: bool = True
) -> snapshot_pb2.Snapshot:
    pool = snapshot_pb2.Pool(
        name="p",
        candidates=[
            snapshot_pb2.Candidate(model="m", provider="openai", endpoint="http://127.0.0.1:9/v1")
        ],
    )
    pool_b = snapshot_pb2.Pool(
        name="q",
        candidates=[
            snapshot_pb2.Candidate(model="n", provider="openai", endpoint="http://127.0.0.1:9/v1")
        ],
    )
    stable = snapshot_pb2.Policy(
        name="support", version="sha256:aaaaaaaaaaaaaaaa", default_pool="p"
    )
    candidate = snapshot_pb2.Policy(
        name="support~candidate",
        version="sha256:bbbbbbbbbbbbbbbb",
        default_pool="q",
        candidate_of="support",
    )
    if link:
        stable.canary.CopyFrom(
            snapshot_pb2.Canary(
                policy=candidate.name,
                weight_bp=weight_bp,
                stickiness=stickiness,
                salt=candidate.version,
            )
        )
    return snapshot_pb2.Snapshot(
        version="sha256:cccccccccccccccc",
        pools=[pool, pool_b],
        policies=[stable, candidate],
        default_policy="support",
    )


def test_candidate_reports_under_the_policy_name_and_is_not_addressable() -> None:
    table = build_table(snapshot(500))
    assert sorted(table.policies) == ["support"]
    stable = table.policy("support")
    assert stable is not None and stable.track == "stable" and stable.canary is not None
    cand = stable.canary.candidate
    assert (cand.name, cand.version, cand.track) == (
        "support",
        "sha256:bbbbbbbbbbbbbbbb",
        "candidate",
    )
    assert cand.cache_scope != stable.cache_scope  # answers never cross versions
    assert table.policy("support~candidate") is None


def test_weights_zero_and_full_and_share() -> None:
    for bp, expected in ((0, 0.0), (10_000, 1.0)):
        t = build_table(snapshot(bp)).policy("support")
        assert t is not None
        assert all(
            (choose(t, user=f"u{i}").track == "candidate") == bool(expected) for i in range(200)
        )
    t = build_table(snapshot(2500)).policy("support")
    assert t is not None
    share = sum(choose(t, user=f"u{i}").track == "candidate" for i in range(20_000)) / 20_000
    assert abs(share - 0.25) < 0.015  # 4.9 standard deviations


def test_conversation_without_a_key_stays_on_one_side_across_turns() -> None:
    t = build_table(snapshot(5000)).policy("support")
    assert t is not None
    sides = set()
    for i in range(64):
        opening = [
            {"role": "system", "content": "You help with orders."},
            {"role": "user", "content": f"conversation {i}: where is my parcel?"},
        ]
        first = choose(t, messages=opening).track
        later = [
            *opening,
            {"role": "assistant", "content": "It ships today."},
            {"role": "user", "content": "and when does it arrive?"},
        ]
        assert choose(t, messages=later).track == first
        sides.add(first)
    assert sides == {"stable", "candidate"}  # the fallback key still splits traffic


def test_session_and_tenant_stickiness_use_their_own_key() -> None:
    t = build_table(snapshot(5000, snapshot_pb2.STICKINESS_SESSION)).policy("support")
    assert t is not None
    by_session = {choose(t, user="same-user", session=f"s{i}").track for i in range(64)}
    assert by_session == {"stable", "candidate"}
    t = build_table(snapshot(5000, snapshot_pb2.STICKINESS_TENANT)).policy("support")
    assert t is not None
    assert len({choose(t, user=f"u{i}", tenant="acme").track for i in range(64)}) == 1


def test_a_canary_pointing_nowhere_is_rejected() -> None:
    bad = snapshot(500)
    bad.policies[0].canary.policy = "missing"
    with pytest.raises(SnapshotError, match=r"canary\.policy 'missing'"):
        build_table(bad)
