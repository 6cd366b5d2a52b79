"""A snapshot candidate's auth, region and project reach its upstream target.

The router refuses a snapshot whose candidate names an auth method its family
does not take (the control plane's rule, checked again where it is acted on).
"""

from __future__ import annotations

import pytest

from skyroute.router.table import SnapshotError, build_table
from skyroute.v1 import snapshot_pb2

ENDPOINT = "https://contoso-eu.openai.azure.com"


def _snapshot(**first: str) -> snapshot_pb2.Snapshot:
    snap = snapshot_pb2.Snapshot(version="v1")
    pool = snap.pools.add(name="p")
    pool.candidates.add(
        model="gpt-4o", provider="azure-openai", endpoint=ENDPOINT, context_window=8192, **first
    )
    pool.candidates.add(model="d2", provider="openai", endpoint=ENDPOINT, context_window=8192)
    snap.policies.add(name="default", default_pool="p")
    return snap


def test_auth_region_and_project_reach_the_target() -> None:
    policy = build_table(_snapshot(auth="entra")).policy("default")
    assert policy is not None
    first, second = policy.pools["p"]
    assert (first.target.auth, first.target.region, first.target.project) == ("entra", None, None)
    # A snapshot from before the field ("") means the default.
    assert second.target.auth == "api-key"


def test_an_auth_the_family_does_not_take_is_refused() -> None:
    with pytest.raises(SnapshotError) as info:
        build_table(_snapshot(auth="google"))
    assert "'gpt-4o'" in str(info.value)
    assert "auth 'google' is not one of azure-openai's ['api-key', 'entra']" in str(info.value)


def test_an_endpoints_region_wins_over_the_models() -> None:
    snap = snapshot_pb2.Snapshot(version="v1")
    pool = snap.pools.add(name="p")
    model = pool.candidates.add(
        model="claude",
        provider="bedrock",
        auth="aws",
        region="us-east-1",
        context_window=8192,
    )
    model.endpoints.add(url="https://bedrock-runtime.us-east-1.amazonaws.com", name="east")
    model.endpoints.add(
        url="https://bedrock-runtime.eu-west-1.amazonaws.com", name="eu", region="eu-west-1"
    )
    snap.policies.add(name="default", default_pool="p")
    policy = build_table(snap).policy("default")
    assert policy is not None
    (candidate,) = policy.pools["p"]
    assert candidate.endpoints is not None
    sites = candidate.endpoints.rotations[0]
    regions = {s.site.name: (s.target.auth, s.target.region) for s in sites if s.site}
    assert regions == {"east": ("aws", "us-east-1"), "eu": ("aws", "eu-west-1")}
