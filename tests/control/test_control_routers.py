"""The per-router state machine and the outcome aggregator, without a network."""

from __future__ import annotations

from skyroute.control.distribution.routers import Answer, RouterRegistry
from skyroute.control.learning.outcomes import CACHE_KEY, OutcomeAggregator
from skyroute.v1 import distribution_pb2 as d


def _hello(version: str = "") -> d.SnapshotRequest:
    return d.SnapshotRequest(node=d.Node(id="r1"), version_info=version)


def test_state_machine_in_order() -> None:
    reg = RouterRegistry()
    rec = reg.connect(d.Node(id="r1"))
    rec.hello(_hello(), current="v1")
    assert rec.state == d.SYNC_STATE_NOT_SENT and rec.needs("v1")
    rec.sent("v1", "n1")
    assert rec.state == d.SYNC_STATE_STALE and not rec.needs("v1")
    ack = d.SnapshotRequest(version_info="v1", response_nonce="n1")
    assert rec.answer(ack) is Answer.ACK and rec.state == d.SYNC_STATE_SYNCED
    assert rec.needs("v2")
    rec.sent("v2", "n2")
    nack = d.SnapshotRequest(
        version_info="v1", response_nonce="n2", error_detail=d.ErrorDetail(code=3, message="bad")
    )
    assert rec.answer(nack) is Answer.NACK
    assert (rec.state, rec.acked_version, rec.last_nack) == (d.SYNC_STATE_STALE, "v1", "v2: bad")
    assert rec.answer(ack) is Answer.STALE_NONCE  # answers n1, superseded
    assert (rec.pushes, rec.acks, rec.nacks) == (2, 1, 1)


def test_hello_with_the_current_version_needs_nothing() -> None:
    rec = RouterRegistry().connect(d.Node(id="r1"))
    rec.hello(_hello("v1"), current="v1")
    assert rec.state == d.SYNC_STATE_SYNCED and not rec.needs("v1") and rec.needs("v2")


def test_disconnected_routers_are_listed_for_a_while() -> None:
    now = [100.0]
    reg = RouterRegistry(disconnected_ttl_s=30, monotonic=lambda: now[0])
    old = reg.connect(d.Node(id="r1"))
    new = reg.connect(d.Node(id="r1"))  # the router reconnected before the old stream ended
    assert not reg.disconnect(old)
    assert reg.get("r1") is new and new.state == d.SYNC_STATE_NOT_SENT
    assert reg.disconnect(new) and new.state == d.SYNC_STATE_DISCONNECTED
    now[0] += 29
    assert [r.id for r in reg.records()] == ["r1"]
    now[0] += 2
    assert reg.records() == []


def test_outcome_aggregator_counts_and_notifies() -> None:
    agg = OutcomeAggregator(window=4)
    seen: list[tuple[str, int]] = []
    agg.add_listener(lambda router, batch: seen.append((router, len(batch))))
    outcomes = [
        d.Outcome(pool="cost", model="m", latency_ms=float(ms)) for ms in (10, 20, 30, 40, 50)
    ]
    outcomes.append(d.Outcome(cache_hit=True, latency_ms=1.0))
    outcomes.append(d.Outcome(pool="cost", model="m", error_class="timeout", fallback_depth=1))
    assert agg.record("r1", outcomes) == 7
    assert seen == [("r1", 7)]
    assert agg.total == 7 and agg.for_router("r1") == 7
    assert agg.by_pool() == {CACHE_KEY: 1, "cost": 6}
    stats = agg.stats()[("cost", "m")]
    assert (stats.requests, stats.errors, stats.fallbacks) == (6, 1, 1)
    assert list(stats.recent_latency_ms) == [30.0, 40.0, 50.0, 0.0]  # bounded window
    assert stats.p95_latency_ms() == 50.0
    assert abs(stats.success_rate - 5 / 6) < 1e-9
