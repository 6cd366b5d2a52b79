"""What the pipeline tells a caller about a request, door-neutral.

The ``x-skyroute-*`` facts (headers over HTTP, trailing metadata over gRPC)
of a served request, the rejection for a request whose every attempt
failed, and the form a failure takes in the idempotency store so that a
repeat of the key gets the same failure from either door.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from skyroute.router import feedback, logs
from skyroute.router.engine import Served
from skyroute.router.ingress.types import CONFLICT, UPSTREAM, Prepared, Rejection
from skyroute.router.providers.types import ProviderError
from skyroute.router.wire import attempts_header, failure_record, http_status

log = logging.getLogger("skyroute.router.ingress")

#: The fact a replayed answer carries (a header over HTTP, trailing metadata over gRPC).
REPLAY = "x-skyroute-idempotent-replay"
#: The parameters the answering model was sent without (the policy's ``parameters: drop``).
DROPPED = "x-skyroute-dropped-parameters"
#: The answer's feedback id (router.feedback): what ``POST /v1/feedback`` names.
FEEDBACK_ID = "x-skyroute-feedback-id"


def feedback_of(p: Prepared, served: Served) -> feedback.Served:
    """What a feedback id on this answer names (the tenant the door identified)."""
    d = served.decision
    return feedback.Served(
        p.ctx.request_id,
        p.identity.tenant,
        d.policy.name,
        d.policy.version,
        d.pool,
        served.model,
        d.intent,
        int(time.time() * 1000),
    )


def facts(served: Served) -> dict[str, str]:
    """What was decided and what happened, as ``x-skyroute-*`` names and values."""
    d = served.decision
    h = {
        "x-skyroute-policy": d.policy.name,
        "x-skyroute-policy-version": d.policy.version,
        "x-skyroute-track": d.policy.track or "stable",
        "x-skyroute-snapshot-version": d.policy.snapshot_version,
        "x-skyroute-intent": d.intent,
        "x-skyroute-rule": d.rule,
        "x-skyroute-pool": d.pool,
        "x-skyroute-model": served.model,
        "x-skyroute-attempts": attempts_header(served.attempts),
        "x-skyroute-cost-usd": f"{served.cost_usd:.8f}",
        "x-skyroute-cache": ("hit" if served.cache_hit else ("miss" if d.cacheable else "off")),
    }
    if served.cache_hit:
        h["x-skyroute-cache-similarity"] = f"{served.cache_similarity:.3f}"
        h["x-skyroute-cache-entry"] = served.cache_entry
    if served.notes:
        h["x-skyroute-notes"] = "; ".join(served.notes)
    # A cache hit too: its model, as this decision sends it, went without them.
    dropped = d.dropped_for(served.model) if d.dropped else ()
    if dropped:
        h[DROPPED] = ", ".join(dropped)
    return h


def public_message(served: Served) -> str:
    """What a client is told of a failed attempt: model, error class and status, no more.

    Upstream hosts, addresses and raw upstream bodies never reach the client;
    they are logged here (``upstream failed``, at warning) for the operator.
    """
    err: ProviderError | None = served.error
    if err is None:
        return "request failed"
    if err.public:
        return err.message
    model = served.model or (served.attempts[-1].model if served.attempts else "upstream")
    logs.event(
        log,
        "upstream failed",
        logging.WARNING,
        model=model,
        error_class=err.error_class,
        status=err.status,
        detail=err.message,
    )
    status = f" (upstream status {err.status})" if err.status else ""
    return f"{model}: {err.error_class}{status}; details in the router log"


def failure(served: Served, extra: Mapping[str, str] | None = None) -> Rejection:
    """A request whose every attempt failed, with its attempt trail (and ``extra`` facts)."""
    err = served.error
    cls = err.error_class if err else "unknown"
    msg = public_message(served)
    f = facts(served)
    if extra:
        f.update(extra)
    return Rejection(
        http_status(cls), f"all attempts failed; last: {cls}: {msg}", UPSTREAM, code=cls, facts=f
    )


#: The failure a key keeps when its first request was interrupted before its outcome was known.
INTERRUPTED = Rejection(
    502,
    "the first request with this Idempotency-Key was interrupted after it may have reached "
    "a model; use a new key to try again",
    CONFLICT,
    param="idempotency_key",
    code="interrupted",
)


def stored_failure(r: Rejection) -> dict[str, Any]:
    """A failure as the idempotency store keeps it (door-neutral, JSON-safe)."""
    body = {"error": {"message": r.message, "type": r.kind, "param": r.param, "code": r.code}}
    return failure_record(r.status, body, dict(r.facts))


def replayed_failure(stored: Mapping[str, Any]) -> Rejection:
    """A stored failure as the rejection a repeat of its key is answered with."""
    err = stored["error"]
    e = err["body"]["error"]
    return Rejection(
        err["status"],
        e["message"],
        e["type"],
        param=e["param"],
        code=e["code"],
        facts={**stored["headers"], REPLAY: "true"},
    )
