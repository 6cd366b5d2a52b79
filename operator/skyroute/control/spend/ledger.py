"""The spend ledger: what each tenant spent, per key and model, each charge once.

Routers report one outcome per served request (``Outcome``, already checked
by ``distribution/reports.py``: bounded fields, a tenant and key the
snapshot declares). An outcome that names an ``account`` (the authenticated
tenant that pays; anonymous callers have none and are not in the ledger) is
a charge: its ``cost_usd`` at the snapshot's prices, its tokens, one request.

Exact, not approximate:

- *Once per charge.* Every outcome carries a ``charge_id`` the router mints
  for that served request (the request id when a router sends none). The
  ledger remembers the last ``MAX_SEEN`` charge ids it counted (persisted
  with it), so a batch sent twice, or re-sent after a control-plane
  restart, is counted once; the repeats are counted in ``duplicates``.
- *Integer money.* USD is summed as integer nano-USD (``round(cost * 1e9)``),
  so sums never drift with float rounding and a total equals the sum of the
  per-request costs the responses reported (``x-skyroute-cost-usd``, eight
  decimals) to well under a cent.
- *UTC hours.* Rows are kept per UTC hour of the outcome's ``unix_ms``
  (clamped to the last ``MAX_LATE_MS`` before arrival, so a router's clock
  cannot put spend in the future or far in the past). ``query(since=...)``
  counts whole hours from the hour holding ``since``; a budget's ``day``
  starts at 00:00 UTC and its ``month`` on the 1st, both hour boundaries, so
  "spent this period" is exact. Hours older than ``RETENTION_HOURS`` (or the
  oldest hours, past ``MAX_ROWS``) are folded into one ``EARLIER`` row per
  (tenant, key, model): all-time totals never lose a charge.

The ledger is plain data: :mod:`.persist` saves it (a file next to
``--state``, or a ConfigMap the operator's leader writes) and
:mod:`.views` turns it into what ``skyroute spend``, ``skyroute status`` and
``Tenant.status.spend`` show.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from skyroute.v1 import distribution_pb2

NANO = 1_000_000_000
HOUR_MS = 3_600_000
# The hour key of rows folded out of the hourly window.
EARLIER = 0
MAX_SEEN = 100_000
MAX_ROWS = 200_000
RETENTION_HOURS = 24 * 62  # two months: a month budget and a --since of 60 days
MAX_LATE_MS = 24 * HOUR_MS


@dataclass(slots=True)
class Row:
    """One (hour, tenant, key, model): requests, tokens and integer nano-USD."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    nano_usd: int = 0

    def add(self, other: Row) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.nano_usd += other.nano_usd

    def as_list(self) -> list[int]:
        return [self.requests, self.prompt_tokens, self.completion_tokens, self.nano_usd]


# (hour start in unix ms, or EARLIER; tenant; key id; model)
RowKey = tuple[int, str, str, str]


def hour_of(unix_ms: int) -> int:
    return unix_ms - unix_ms % HOUR_MS


class Ledger:
    """Rows per (hour, tenant, key, model) and the charge ids already counted."""

    def __init__(self, *, max_seen: int = MAX_SEEN, max_rows: int = MAX_ROWS) -> None:
        self.rows: dict[RowKey, Row] = {}
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.max_seen = max_seen
        self.max_rows = max_rows
        self.charges = 0
        self.duplicates = 0
        # Bumped on every change: savers write only when it moved.
        self.changes = 0
        self._compacted = 0

    def record(
        self, outcomes: Iterable[distribution_pb2.Outcome], now_ms: int | None = None
    ) -> int:
        """Count each new charge once; the number counted (repeats and anonymous skipped)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        counted = 0
        for o in outcomes:
            if not o.account:
                continue
            charge = o.charge_id or f"request:{o.request_id}"
            key = f"{o.account}\x1f{charge}"
            if key in self.seen:
                self.duplicates += 1
                continue
            self.seen[key] = None
            when = min(now, max(now - MAX_LATE_MS, o.unix_ms or now))
            row = self.rows.setdefault((hour_of(when), o.account, o.key_id, o.model), Row())
            row.add(
                Row(1, o.prompt_tokens, o.completion_tokens, round(o.cost_usd * NANO)),
            )
            counted += 1
        if counted:
            while len(self.seen) > self.max_seen:
                self.seen.popitem(last=False)
            self.charges += counted
            self.changes += 1
            if hour_of(now) != self._compacted or len(self.rows) > self.max_rows:
                self.compact(now)
        return counted

    def compact(self, now_ms: int) -> int:
        """Fold hours past the retention (or past ``max_rows``) into EARLIER; rows folded."""
        self._compacted = hour_of(now_ms)
        cutoff = self._compacted - RETENTION_HOURS * HOUR_MS
        old = [k for k in self.rows if k[0] != EARLIER and k[0] < cutoff]
        if len(self.rows) - len(old) > self.max_rows:
            hours = sorted({k[0] for k in self.rows if k[0] != EARLIER})
            while hours and len(self.rows) - len(old) > self.max_rows:
                h = hours.pop(0)
                old.extend(k for k in self.rows if k[0] == h and k[0] >= cutoff)
        for k in old:
            row = self.rows.pop(k)
            self.rows.setdefault((EARLIER, k[1], k[2], k[3]), Row()).add(row)
        return len(old)

    def tenants(self) -> list[str]:
        return sorted({k[1] for k in self.rows})

    def select(
        self, tenant: str | None = None, since_ms: int = 0, until_ms: int | None = None
    ) -> dict[tuple[str, str, str], Row]:
        """Sums per (tenant, key, model) over the hours from ``since_ms``'s hour on.

        ``since_ms`` 0 includes the folded EARLIER rows (all time); ``until_ms``
        excludes hours starting at or after it.
        """
        start = hour_of(since_ms) if since_ms > 0 else None
        out: dict[tuple[str, str, str], Row] = {}
        for (hour, t, key_id, model), row in self.rows.items():
            if tenant is not None and t != tenant:
                continue
            if start is not None and (hour == EARLIER or hour < start):
                continue
            if until_ms is not None and hour != EARLIER and hour >= until_ms:
                continue
            out.setdefault((t, key_id, model), Row()).add(row)
        return out

    def total(self, tenant: str, since_ms: int = 0) -> Row:
        out = Row()
        for row in self.select(tenant, since_ms).values():
            out.add(row)
        return out

    def earliest_hour(self) -> int:
        """The first hour still kept hour by hour (0 when none)."""
        return min((k[0] for k in self.rows if k[0] != EARLIER), default=0)
