"""The outcome ring behind ``skyroute outcomes export`` (learning/recent.py).

Bounded: the ring keeps the newest ``limit`` outcomes, an evicted outcome's
feedback goes with it, feedback may arrive before its outcome and waits (up
to MAX_PENDING pieces), and at most MAX_FEEDBACK_PER pieces join one outcome.
"""

from __future__ import annotations

from skyroute.control.learning import recent
from skyroute.control.learning.recent import RecentOutcomes
from skyroute.v1 import distribution_pb2


def _o(rid: str, ms: int, error: str = "") -> distribution_pb2.Outcome:
    return distribution_pb2.Outcome(request_id=rid, unix_ms=ms, model="m", error_class=error)


def _fb(rid: str, good: bool = True) -> distribution_pb2.Feedback:
    return distribution_pb2.Feedback(request_id=rid, good=good, source="user", unix_ms=9)


def test_ring_keeps_the_newest_and_joins_feedback() -> None:
    ring = RecentOutcomes(limit=3)
    ring.record([_o(f"r{i}", 100 + i, "timeout" if i == 3 else "") for i in range(5)])
    assert [r["request_id"] for r in ring.export()] == ["r2", "r3", "r4"]
    assert ring.export()[1]["success"] is False
    ring.feedback([_fb("r3"), _fb("r0"), _fb("", False)])  # r0 evicted: waits; "" never joins
    assert ring.export()[1]["feedback"] == [
        {"source": "user", "kind": "good", "value": True, "unix_ms": 9}
    ]
    assert [r["request_id"] for r in ring.export(since_unix_ms=103)] == ["r3", "r4"]
    assert [r["request_id"] for r in ring.export(limit=1)] == ["r4"]
    assert ring.export(limit=0) == []
    s = ring.summary()
    assert (s["kept"], s["evicted"], s["oldest_unix_ms"], s["feedback_unjoined"]) == (3, 2, 102, 1)
    assert s["feedback_waiting"] == 1


def test_early_feedback_waits_for_its_outcome_within_bounds() -> None:
    ring = RecentOutcomes(limit=10)
    ring.feedback([_fb("late"), _fb("late", False)])
    ring.record([_o("late", 1)])
    assert [f["value"] for f in ring.export()[0]["feedback"]] == [True, False]
    ring.feedback([_fb(f"never-{i}") for i in range(recent.MAX_PENDING + 5)])
    assert ring.summary()["feedback_unjoined"] == 5
    assert ring.summary()["feedback_waiting"] == recent.MAX_PENDING
    ring.feedback([_fb("late")] * (recent.MAX_FEEDBACK_PER + 2))
    assert len(ring.export()[0]["feedback"]) == recent.MAX_FEEDBACK_PER
    assert ring.summary()["feedback_overflow"] == 4
