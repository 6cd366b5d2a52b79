"""Recent outcomes joined with their feedback, for ``skyroute outcomes export``.

Eval pipelines (and ``skyroute evals backfill``) want the requests the fleet
served with what users said about them. Routers stream one ``Outcome`` per
request and forward feedback already joined to the model and intent
(:mod:`skyroute.router.feedback`); this keeps the last :data:`MAX_RECENT`
outcomes in a ring, in arrival order, and attaches each piece of feedback to
the outcome with its request id (at most :data:`MAX_FEEDBACK_PER` pieces per
outcome). Feedback may overtake its outcome (a streamed answer's id is in
its headers before the stream ends): it waits, up to :data:`MAX_PENDING`
pieces, for the outcome to arrive. Memory stays bounded: the ring is capped,
an outcome pushed out takes its feedback with it, and feedback whose outcome
is no longer (or never) in the ring is counted (``unjoined``), not kept. The ring is in memory only:
a restarted control plane exports what arrived since. A row holds what was
decided and what happened (model, pool, intent, policy and its version,
tenant, the account that pays, its key id and charge id, latency, tokens,
cost, success) and the feedback values with their source; an Outcome
carries no prompt text, so neither does a row.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from skyroute.v1 import distribution_pb2

#: Outcomes kept (about 0.5 KiB each as exported): the newest win.
MAX_RECENT = 20_000
#: Feedback pieces kept per outcome; more are counted in ``overflow``.
MAX_FEEDBACK_PER = 8
#: Feedback pieces waiting for their outcome (the oldest give up first).
MAX_PENDING = 1024
#: Prompt text an outcome may carry (a policy's spec.outcomes.promptText); longer is cut.
MAX_PROMPT_CHARS = 2000
#: Rows one export answers at most.
MAX_EXPORT = MAX_RECENT


@dataclass(slots=True)
class Row:
    """One served request and the feedback on it so far."""

    outcome: distribution_pb2.Outcome
    feedback: list[distribution_pb2.Feedback] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        o = self.outcome
        return {
            "request_id": o.request_id,
            "unix_ms": o.unix_ms,
            "tenant": o.tenant,
            # Who pays (the key's or ServiceAccount's Tenant), the key's public id and the
            # charge id: what the spend ledger counts, so the two can be reconciled.
            "account": o.account,
            "key_id": o.key_id,
            "charge_id": o.charge_id,
            "policy": o.policy,
            "policy_version": o.policy_version,
            "snapshot_version": o.snapshot_version,
            "pool": o.pool,
            "model": o.model,
            "intent": o.intent,
            "latency_ms": round(o.latency_ms, 3),
            "ttft_ms": round(o.ttft_ms, 3),
            "prompt_tokens": o.prompt_tokens,
            "completion_tokens": o.completion_tokens,
            "cost_usd": o.cost_usd,
            "success": not o.error_class,
            "error_class": o.error_class,
            "fallback_depth": o.fallback_depth,
            "cache_hit": o.cache_hit,
            "stream": o.stream,
            "feedback": [_feedback(f) for f in self.feedback],
            **({"prompt": o.prompt_text} if o.prompt_text else {}),
        }


def _feedback(f: distribution_pb2.Feedback) -> dict[str, object]:
    kind = f.WhichOneof("value") or ""
    value: object = getattr(f, kind) if kind else None
    return {"source": f.source, "kind": kind, "value": value, "unix_ms": f.unix_ms}


def _ignore(_o: distribution_pb2.Outcome, _f: list[distribution_pb2.Feedback]) -> None:
    return None


class RecentOutcomes:
    """A ring of the last ``limit`` outcomes, indexed by request id for the feedback join."""

    def __init__(self, limit: int = MAX_RECENT) -> None:
        self.limit = limit
        self._ring: deque[Row] = deque()
        self._by_id: dict[str, Row] = {}
        self._pending: OrderedDict[str, list[distribution_pb2.Feedback]] = OrderedDict()
        self._pending_n = 0
        self.evicted = 0
        self.unjoined = 0  # feedback on an outcome not in the ring
        self.overflow = 0  # feedback past MAX_FEEDBACK_PER on one outcome
        # Told each outcome's new booleans and scores once joined, each (source, kind)
        # once per answer (the learned signal's examples, learning.winmodel).
        self.on_join: Callable[[distribution_pb2.Outcome, list[distribution_pb2.Feedback]], None]
        self.on_join = _ignore

    def __len__(self) -> int:
        return len(self._ring)

    def record(self, outcomes: Iterable[distribution_pb2.Outcome]) -> None:
        """Keep each outcome (the oldest leave once the ring is full)."""
        for o in outcomes:
            if len(o.prompt_text) > MAX_PROMPT_CHARS:  # untrusted: a router's report
                o.prompt_text = o.prompt_text[:MAX_PROMPT_CHARS]
            row = Row(o)
            self._ring.append(row)
            if o.request_id:
                self._by_id[o.request_id] = row  # a repeated id: feedback joins the latest
                early = self._pending.pop(o.request_id, None)
                if early:
                    self._pending_n -= len(early)
                    self._attach(row, early)
            if len(self._ring) > self.limit:
                old = self._ring.popleft()
                self.evicted += 1
                if self._by_id.get(old.outcome.request_id) is old:
                    del self._by_id[old.outcome.request_id]

    def feedback(self, feedback: Iterable[distribution_pb2.Feedback]) -> None:
        """Attach feedback to its outcome, when that is still in the ring."""
        for fb in feedback:
            row = self._by_id.get(fb.request_id)
            if row is not None:
                self._attach(row, [fb])
            elif fb.request_id:
                self._pending.setdefault(fb.request_id, []).append(fb)
                self._pending_n += 1
                while self._pending_n > MAX_PENDING:
                    _, gone = self._pending.popitem(last=False)
                    self._pending_n -= len(gone)
                    self.unjoined += len(gone)
            else:
                self.unjoined += 1

    def _attach(self, row: Row, feedback: list[distribution_pb2.Feedback]) -> None:
        seen = {(f.source, f.WhichOneof("value")) for f in row.feedback}
        fresh = []
        for f in feedback:
            key = (f.source, f.WhichOneof("value"))
            if key[1] in ("good", "score") and key not in seen:
                seen.add(key)
                fresh.append(f)
        if fresh:
            self.on_join(row.outcome, fresh)
        room = MAX_FEEDBACK_PER - len(row.feedback)
        row.feedback.extend(feedback[: max(0, room)])
        self.overflow += max(0, len(feedback) - max(0, room))

    def export(self, since_unix_ms: int = 0, limit: int = MAX_EXPORT) -> list[dict[str, object]]:
        """Rows served at or after ``since_unix_ms``, oldest first; the newest ``limit``."""
        rows = [r for r in self._ring if r.outcome.unix_ms >= since_unix_ms]
        return [r.as_dict() for r in rows[-limit:]] if limit > 0 else []

    def summary(self) -> dict[str, object]:
        oldest = self._ring[0].outcome.unix_ms if self._ring else None
        return {
            "kept": len(self._ring),
            "capacity": self.limit,
            "oldest_unix_ms": oldest,
            "evicted": self.evicted,
            "feedback_waiting": self._pending_n,
            "feedback_unjoined": self.unjoined,
            "feedback_overflow": self.overflow,
        }
