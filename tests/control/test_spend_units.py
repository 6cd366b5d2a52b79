"""The spend ledger's own rules: once per charge, integer money, hours, folding, bad files.

The end-to-end test (test_spend_ledger.py) runs real processes; these pin the
edges a live run reaches rarely: a report from a skewed clock, hours past the
retention folded into all-time rows, a row cap, a ledger file that is
truncated or hand-edited, and ``skyroute spend --since`` parsing.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from skyroute.cli.spend import since_ms
from skyroute.control.spend.ledger import EARLIER, HOUR_MS, RETENTION_HOURS, Ledger
from skyroute.control.spend.persist import SpendFile, dump, restore
from skyroute.control.spend.views import period_start_ms, query, status_entries
from skyroute.v1 import distribution_pb2, snapshot_pb2

NOW = 1_796_000_000_000  # 2026-11-30, some hour


def charge(
    cid: str, cost: float, when: int = NOW, tenant: str = "shop", key: str = "k1"
) -> distribution_pb2.Outcome:
    return distribution_pb2.Outcome(
        request_id=f"r-{cid}",
        charge_id=cid,
        account=tenant,
        tenant=tenant,
        key_id=key,
        model="m",
        cost_usd=cost,
        prompt_tokens=3,
        completion_tokens=4,
        unix_ms=when,
    )


def test_each_charge_counts_once_in_integer_nano_usd() -> None:
    led = Ledger()
    costs = [0.1, 0.2, 0.3] * 100
    outcomes = [charge(str(i), c) for i, c in enumerate(costs)]
    assert led.record(outcomes, NOW) == 300
    assert led.record(outcomes[:10], NOW) == 0  # re-sent
    assert led.duplicates == 10
    total = led.total("shop")
    assert total.requests == 300 and total.nano_usd == 60_000_000_000  # exactly $60
    # Anonymous callers (no account) are not charged to anyone.
    assert led.record([charge("anon", 1.0, tenant="")], NOW) == 0
    # A charge without a charge id falls back to its request id.
    bare = charge("", 0.5)
    assert led.record([bare, bare], NOW) == 1


def test_a_skewed_clock_cannot_move_spend_out_of_its_window() -> None:
    led = Ledger()
    led.record([charge("future", 1.0, when=NOW + 10 * HOUR_MS)], NOW)
    led.record([charge("ancient", 1.0, when=1)], NOW)
    hours = sorted(k[0] for k in led.rows)
    assert hours[-1] == NOW - NOW % HOUR_MS  # the future is now
    assert hours[0] == (NOW - 24 * HOUR_MS) - (NOW - 24 * HOUR_MS) % HOUR_MS


def test_old_hours_fold_into_all_time_rows() -> None:
    led = Ledger(max_rows=5)
    old = NOW - (RETENTION_HOURS + 2) * HOUR_MS
    led.record([charge("old", 0.5, when=old)], old)  # counted back then
    for h in range(8):  # more hours than max_rows
        led.record([charge(f"h{h}", 0.000000001, when=NOW - h * HOUR_MS)], NOW)
    assert led.compact(NOW) >= 0
    assert len(led.rows) <= 6
    assert (EARLIER, "shop", "k1", "m") in led.rows
    assert led.total("shop").requests == 9  # nothing lost
    assert led.total("shop").nano_usd == 500_000_008
    assert led.total("shop", since_ms=NOW).requests == 1  # only this hour since now
    assert led.earliest_hour() > 0


def test_the_file_round_trips_and_bad_rows_are_skipped(tmp_path: Path) -> None:
    led = Ledger()
    led.record([charge("a", 0.25), charge("b", 0.5, key="k2")], NOW)
    f = SpendFile(tmp_path / "state.json.spend")
    assert f.save(led) and not f.save(led)  # unchanged: not written again
    back = Ledger()
    r = f.load(back)
    assert not r.error and r.rows == 2 and back.rows == led.rows
    assert back.record([charge("a", 0.25)], NOW) == 0  # what it counted came back too
    doc = dump(led)
    doc["rows"] += [["x"], [1, "shop", "k", "m", 1, 1, 1, 1], [0, "", "", "m", 1, 1, 1, 1]]
    doc["rows"].append([0, "shop", "k", "m", -1, 0, 0, 0])
    got = restore(Ledger(), doc)
    assert got.rows == 2 and got.skipped == 4
    assert restore(Ledger(), {"format": 99}).error
    assert restore(Ledger(), {"format": 1, "rows": {}, "seen": []}).error
    (tmp_path / "bad.spend").write_text('{"format": 1, "rows": [')
    assert "unreadable" in SpendFile(tmp_path / "bad.spend").load(Ledger()).error
    assert SpendFile(tmp_path / "none.spend").load(Ledger()).error == ""


def test_views_name_budget_periods_and_what_is_left() -> None:
    led = Ledger()
    led.record([charge("a", 1.5), charge("b", 0.5, tenant="other")], NOW)
    snap = snapshot_pb2.Snapshot(
        tenants=[
            snapshot_pb2.Tenant(
                name="shop", budgets=[snapshot_pb2.TenantBudget(name="m", usd=2.0, period="month")]
            )
        ]
    )
    entries = {e.tenant: e for e in status_entries(led, snap, NOW)}
    assert entries["shop"].period == "month" and entries["shop"].budget_left_usd == 0.5
    assert entries["other"].period == "total" and not entries["other"].HasField("budget_left_usd")
    body = query(led, snap, "shop", NOW - 5, NOW, by="key,model")
    assert body["rows"][0]["key_id"] == "k1" and body["rows"][0]["model"] == "m"  # type: ignore[index]
    day = period_start_ms("day", NOW)
    assert dt.datetime.fromtimestamp(day / 1000, dt.UTC).hour == 0
    assert period_start_ms("month", NOW) <= day and period_start_ms("total", NOW) == 0


def test_since_accepts_durations_dates_and_periods() -> None:
    now = dt.datetime(2026, 12, 3, 18, 30, tzinfo=dt.UTC)
    ms = int(now.timestamp() * 1000)
    assert since_ms("90m", now) == ms - 90 * 60_000
    assert since_ms("7d", now) == ms - 7 * 86_400_000
    assert since_ms("today", now) == int(dt.datetime(2026, 12, 3, tzinfo=dt.UTC).timestamp() * 1000)
    assert since_ms("month", now) == int(dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert since_ms("2026-12-01T09:00Z", now) == int(
        dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC).timestamp() * 1000
    )
    assert since_ms("1796000000000", now) == 1_796_000_000_000
    assert since_ms(None, now) == 0
    with pytest.raises(ValueError, match="duration"):
        since_ms("last tuesday", now)
    json.dumps(since_ms("2026-12-01", now))


def test_a_report_may_bill_only_a_tenant_and_key_its_snapshot_declares() -> None:
    from skyroute.control.distribution.reports import Vocabulary, outcome_problem

    snap = snapshot_pb2.Snapshot(
        tenants=[snapshot_pb2.Tenant(name="shop", keys=[snapshot_pb2.ApiKey(id="k1")])]
    )
    names = Vocabulary.of(snap)
    ok = charge("a", 0.1)
    ok.model = ""
    assert outcome_problem(ok, names) is None
    sub = charge("b", 0.1)
    sub.model, sub.tenant = "", "shop/team"
    assert outcome_problem(sub, names) is None
    for field, value, reason in (
        ("tenant", "other", "tenant_mismatch"),
        ("tenant", "shopping", "tenant_mismatch"),
        ("account", "nobody", "unknown_tenant"),
        ("key_id", "k9", "unknown_key"),
        ("charge_id", "x" * 5000, "text_too_long"),
    ):
        bad = charge("c", 0.1)
        bad.model = ""
        setattr(bad, field, value)
        assert outcome_problem(bad, names) == reason, field
