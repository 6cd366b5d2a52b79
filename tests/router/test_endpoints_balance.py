"""Several endpoints per model, in process: the table's endpoint lists and the P2C chooser.

The chooser's randomness comes from a seeded ``random.Random`` (or explicit
draws), so every figure here is the same on every run.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyroute.router.decide import decide, explain
from skyroute.router.engine.balance import Balancer, choose, draw, every_endpoint
from skyroute.router.engine.health import EndpointHealth
from skyroute.router.signals import signals_from_messages
from skyroute.router.table import (
    Candidate,
    Endpoints,
    PolicyTable,
    SnapshotError,
    alias_table,
    build_table,
)
from skyroute.v1 import snapshot_pb2 as pb


def _site(name: str, url: str, weight: int = 1, **kw: str) -> pb.CandidateEndpoint:
    return pb.CandidateEndpoint(name=name, url=url, weight=weight, **kw)


def _policy(*sites: pb.CandidateEndpoint, provider: str = "openai") -> PolicyTable:
    cands = [
        pb.Candidate(
            model="m",
            provider=provider,
            input_price_per_mtok=1.0,
            output_price_per_mtok=2.0,
            endpoints=list(sites),
        ),
        pb.Candidate(model="backup", provider="openai", endpoint="http://127.0.0.1:9/b"),
    ]
    policy = pb.Policy(name="p", version="v", default_pool="pool")
    snap = pb.Snapshot(
        version="s1",
        default_policy="p",
        policies=[policy],
        pools=[pb.Pool(name="pool", candidates=cands)],
    )
    return build_table(snap).policies["p"]


def _table(*sites: pb.CandidateEndpoint, provider: str = "openai") -> list[Candidate]:
    return list(_policy(*sites, provider=provider).pools["pool"])


def _two(wa: int = 3, wb: int = 1) -> Candidate:
    return _table(
        _site("east", "http://127.0.0.1:1/e", wa), _site("west", "http://127.0.0.1:2/w", wb)
    )[0]


def _endpoints(c: Candidate) -> Endpoints:
    assert c.endpoints is not None
    return c.endpoints


def _up(_: Candidate) -> bool:
    return True


def _balancer(seed: int, health: EndpointHealth | None = None) -> Balancer:
    h = health or EndpointHealth()
    return Balancer(h.available, h.clock, random.Random(seed))


# --- the table --------------------------------------------------------------


def test_a_model_with_several_endpoints_becomes_their_candidates_in_rotations() -> None:
    m, backup = _table(
        _site("east", "http://127.0.0.1:1/e/", 3, region="eastus", api_key_env="SKYROUTE_EAST"),
        _site("west", "http://127.0.0.1:2/w", 1),
        _site("north", "http://127.0.0.1:3/n", 2),
    )
    e = _endpoints(m)
    assert [c.label for c in e.rotations[0]] == ["m@east", "m@west", "m@north"]
    assert [c.label for c in e.rotations[1]] == ["m@west", "m@north", "m@east"]
    assert [c.label for c in e.rotations[2]] == ["m@north", "m@east", "m@west"]
    east = e.rotations[0][0]
    assert east.target.endpoint == "http://127.0.0.1:1/e"
    assert east.endpoint_key == "http://127.0.0.1:1/e"
    assert east.site is not None and east.site.region == "eastus" and east.site.weight == 3
    # The single-endpoint form stays what it was: no endpoints, no site, the model's label.
    assert backup.endpoints is None and backup.site is None and backup.label == "backup"
    assert backup.endpoint_key == "http://127.0.0.1:9/b"
    assert every_endpoint((m, backup)) == (*e.rotations[0], backup)
    assert every_endpoint((backup,)) == (backup,)


def test_one_listed_endpoint_is_the_single_form() -> None:
    (m, _) = _table(_site("only", "http://127.0.0.1:4/o", 5))
    assert m.endpoints is None and m.site is None
    assert m.target.endpoint == "http://127.0.0.1:4/o"


def test_azure_deployments_on_one_resource_are_separate_endpoints() -> None:
    m, _ = _table(
        _site("a", "http://127.0.0.1:5", deployment="gpt-east"),
        _site("b", "http://127.0.0.1:5", deployment="gpt-west"),
        provider="azure-openai",
    )
    first, second = _endpoints(m).rotations[0]
    assert (first.target.model, second.target.model) == ("gpt-east", "gpt-west")
    assert first.endpoint_key != second.endpoint_key


@pytest.mark.parametrize(
    "sites,words",
    [
        ([_site("a", "http://x/1"), _site("a", "http://x/2")], "same name"),
        ([_site("a", "http://x/1"), _site("b", "http://x/1")], "same endpoint"),
        ([_site("a", "http://x/1", 1001), _site("b", "http://x/2")], "1..1000"),
        ([_site("a", "ftp://x/1"), _site("b", "http://x/2")], "not an http(s) URL"),
        ([_site(f"e{i}", f"http://x/{i}") for i in range(17)], "at most 16"),
    ],
)
def test_a_snapshot_with_bad_endpoints_is_refused(
    sites: list[pb.CandidateEndpoint], words: str
) -> None:
    with pytest.raises(SnapshotError, match="pool 'pool' model 'm'") as err:
        _table(*sites)
    assert words in str(err.value)


def test_explain_names_each_endpoint_of_a_chain_model() -> None:
    table = _policy(
        _site("east", "http://127.0.0.1:1/e", 3, region="eastus"),
        _site("west", "http://127.0.0.1:2/w"),
    )
    s = signals_from_messages([{"role": "user", "content": "hi"}], False)
    out = explain(decide(table, s), s)
    assert [(e.model, e.name, e.url, e.weight, e.region) for e in out.endpoints] == [
        ("m", "east", "http://127.0.0.1:1/e", 3, "eastus"),
        ("m", "west", "http://127.0.0.1:2/w", 1, ""),
    ]
    assert any("m: endpoints east (weight 3), west (weight 1)" in r for r in out.reasons)
    assert list(out.chain) == ["m", "backup"]


# --- the chooser ------------------------------------------------------------


@given(st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=16))
def test_the_alias_table_draws_each_endpoint_by_exactly_its_weight(weights: list[int]) -> None:
    prob, alias = alias_table(weights)
    n, total = len(weights), sum(weights)
    mass = [0.0] * n
    for i in range(n):  # column i: u in [i/n, (i+1)/n) gives i below prob[i], else alias[i]
        mass[i] += prob[i] / n
        mass[alias[i]] += (1.0 - prob[i]) / n
    assert mass == pytest.approx([w / total for w in weights], abs=1e-9)


@given(
    st.lists(st.integers(min_value=1, max_value=1000), min_size=2, max_size=16),
    st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    st.lists(st.integers(min_value=0, max_value=50), min_size=16, max_size=16),
)
def test_p2c_takes_the_less_loaded_per_weight_of_its_two_draws(
    weights: list[int], u1: float, u2: float, loads: list[int]
) -> None:
    sites = [_site(f"e{i}", f"http://127.0.0.1:1/{i}", w) for i, w in enumerate(weights)]
    e = _endpoints(_table(*sites)[0])
    index = {c.endpoint_key: i for i, c in enumerate(e.rotations[0])}

    def load(c: Candidate) -> int:
        return loads[index[c.endpoint_key]]

    i, j = draw(e, u1), draw(e, u2)
    got = choose(e, u1, u2, load, _up)
    assert got in (i, j)
    if got == j and i != j:  # the second draw won: strictly less loaded per weight
        assert loads[j] * weights[i] < loads[i] * weights[j]
    if got == i and i != j:
        assert loads[i] * weights[j] <= loads[j] * weights[i]
    # An endpoint that is down loses to one that is up, whatever the load.
    down = e.rotations[i][0]
    if i != j:
        assert choose(e, u1, u2, load, lambda c: c is not down) == j


def test_an_idle_router_spreads_by_weight() -> None:
    m = _two(3, 1)
    b = _balancer(7)
    firsts = Counter(b.order(m)[0].label for _ in range(4000))
    share = firsts["m@east"] / 4000
    assert 0.70 < share < 0.80, firsts  # 3:1 is 0.75
    # The other endpoint always follows: failover within the model before the backup.
    assert {tuple(c.label for c in b.order(m)) for _ in range(50)} == {
        ("m@east", "m@west"),
        ("m@west", "m@east"),
    }


def test_a_loaded_endpoint_gets_fewer_new_requests() -> None:
    m = _two(1, 1)
    east, west = _endpoints(m).rotations[0]
    b = _balancer(3)
    for _ in range(10):
        b.acquire(east)
    assert b.outstanding(east) == 10 and b.outstanding(west) == 0
    firsts = Counter(b.order(m)[0].label for _ in range(2000))
    # Equal weights: both draws land on east only a quarter of the time.
    assert firsts["m@west"] > 1400, firsts
    for _ in range(10):
        b.release(east)
    b.release(east)  # one more than acquired: never negative
    assert b.outstanding(east) == 0


def test_expand_keeps_models_in_order_and_single_endpoints_as_they_are() -> None:
    m, backup = _table(_site("east", "http://127.0.0.1:1/e"), _site("west", "http://127.0.0.1:2/w"))
    b = _balancer(1)
    assert b.expand((backup,)) == (backup,)
    labels = [c.label for c in b.expand((m, backup))]
    assert labels[-1] == "backup" and sorted(labels[:2]) == ["m@east", "m@west"]


# --- health per endpoint, figures per model ---------------------------------


def test_health_is_per_endpoint_and_scoring_reads_the_model_over_all_of_them() -> None:
    m = _two()
    east, west = _endpoints(m).rotations[0]
    now = [0.0]
    h = EndpointHealth(lambda: now[0])
    for _ in range(25):
        h.success(east, 0.1)
        h.success(west, 0.5)
    assert h.percentile(east, 95.0) == pytest.approx(0.1)
    assert h.percentile(west, 95.0) == pytest.approx(0.5)
    p95 = h.p95_s(m)
    assert p95 is not None and 0.1 < p95 <= 0.5  # the model's, over both
    assert h.failures(m) == 0.0
    for _ in range(3):
        h.success(east, 0.1)
    # Only the model-level view is reported once per model, never as an "endpoint".
    assert sorted(e["endpoint"] for e in h.as_json()) == sorted(
        [east.endpoint_key, west.endpoint_key]
    )
