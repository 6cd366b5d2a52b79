"""The one inbound pipeline every door runs.

decode → guards → signals → decide → idempotency → engine (which consults
the cache first) → encode. A transport hands :meth:`Pipeline.serve` its
codec, the wire request and a sink; everything between decoding and
encoding happens here once, so the HTTP and gRPC doors (and any door added
later) cannot drift apart on policy lookup, canaries, signals, the
decision, Idempotency-Key handling, streaming commitment or error mapping.

Load is shed before decoding: beyond ``--max-inflight`` requests in flight
the answer is "overloaded" at once rather than a queue. ``Idempotency-Key``
(``idempotency_key`` over gRPC) makes a repeated request wait for, or
replay, the first one's answer, keyed per policy and tenant; a stored
answer is kept in a door-neutral form, so either door can replay it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from skyroute.router.canary import choose
from skyroute.router.decide import decide
from skyroute.router.engine import (
    RequestContext,
    Served,
    StreamDone,
    StreamFailed,
    StreamStarted,
)
from skyroute.router.idempotency import Claim
from skyroute.router.ids import new_id
from skyroute.router.ingress.codecs.base import Codec, Sink
from skyroute.router.ingress.guards import GUARDS
from skyroute.router.ingress.types import (
    CONFLICT,
    NOT_FOUND,
    OVERLOADED,
    UNAVAILABLE,
    UPSTREAM,
    Answer,
    Inbound,
    Prepared,
    Rejection,
)
from skyroute.router.providers.types import TextDelta, ToolCallEvent
from skyroute.router.signals import signals_from_messages
from skyroute.router.state import RouterState
from skyroute.router.wire import (
    attempts_header,
    failure_record,
    http_status,
    idempotency_scope,
    record,
    request_fingerprint,
    settlement,
)

W = TypeVar("W")
R = TypeVar("R")
F = TypeVar("F")

#: The fact a replayed answer carries (a header over HTTP, trailing metadata over gRPC).
REPLAY = "x-skyroute-idempotent-replay"


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
    if served.notes:
        h["x-skyroute-notes"] = "; ".join(served.notes)
    return h


def failure(served: Served) -> Rejection:
    """A request whose every attempt failed, with its attempt trail."""
    err = served.error
    cls = err.error_class if err else "unknown"
    msg = err.message if err else "request failed"
    return Rejection(
        http_status(cls),
        f"all attempts failed; last: {cls}: {msg}",
        UPSTREAM,
        code=cls,
        facts=facts(served),
    )


# The failure a key keeps when its first request was interrupted before its outcome was known.
_INTERRUPTED = Rejection(
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


def replayed_failure(stored: Mapping[str, Any], headers: Mapping[str, str]) -> Rejection:
    """A stored failure as the rejection to answer a repeat with."""
    err = stored["error"]
    e = err["body"]["error"]
    return Rejection(
        err["status"], e["message"], e["type"], param=e["param"], code=e["code"], facts=headers
    )


def _answer(p: Prepared, served: Served) -> Answer:
    f = facts(served)
    return Answer(p, record(served, f), f, served)


class Pipeline:
    """The request path from a decoded request to an encoded answer, for every door."""

    __slots__ = ("state",)

    def __init__(self, state: RouterState) -> None:
        self.state = state

    async def serve(self, codec: Codec[W, R, F], wire: W, sink: Sink[R, F]) -> None:
        """Serve one request: decode, decide, answer through ``sink``."""
        await self._admitted(codec, wire, sink, dry_run=False)

    async def explain(self, codec: Codec[W, R, F], wire: W, sink: Sink[R, F]) -> None:
        """A dry run: the decision and why, no model called."""
        await self._admitted(codec, wire, sink, dry_run=True)

    async def _admitted(
        self, codec: Codec[W, R, F], wire: W, sink: Sink[R, F], dry_run: bool
    ) -> None:
        state = self.state
        if not state.admit():
            await sink.send(codec.reject(self._overloaded()))
            return
        try:
            try:
                p = self.prepare(codec.decode(wire))
                if dry_run:
                    await sink.send(codec.explained(p))
                    return
                claim = await self._claim(p)
            except Rejection as r:
                await sink.send(codec.reject(r))
                return
            if claim is not None and claim.stored is not None:
                stored = claim.stored
                headers = {**stored["headers"], REPLAY: "true"}
                if "error" in stored:  # the first request's failure, as it was answered
                    await sink.send(codec.reject(replayed_failure(stored, headers)))
                    return
                await self._replay(codec, Answer(p, stored, headers), sink)
                return
            await self._serve(codec, p, claim, sink)
        finally:
            state.done()

    def _overloaded(self) -> Rejection:
        # Shed at once: a queue here would only turn overload into timeouts.
        return Rejection(
            429,
            f"router at capacity ({self.state.max_inflight} requests in flight); retry shortly",
            OVERLOADED,
            code="overloaded",
            facts={"Retry-After": "1"},
        )

    def prepare(self, inbound: Inbound) -> Prepared:
        """Guards, policy (and canary), signals and the decision for one request."""
        for guard in GUARDS:
            guard(inbound)
        table = self.state.table
        if table is None:
            raise Rejection(503, "router has no policy snapshot yet", UNAVAILABLE, code="not_ready")
        policy = table.policy(inbound.policy)
        if policy is None:
            known = ", ".join(sorted(table.policies))
            raise Rejection(
                404,
                f"policy {inbound.policy!r} not found (known: {known}; or 'auto' for the default)",
                NOT_FOUND,
                param="policy",
                code="model_not_found",
            )
        chat = inbound.chat
        declared = inbound.declared
        if policy.canary is not None:
            policy = choose(
                policy,
                user=inbound.user,
                session=inbound.session,
                tenant=declared.get("tenant", ""),
                messages=chat.messages,
            )
        signals = signals_from_messages(
            chat.messages, bool(chat.tools), tools=chat.tools, **declared
        )
        ctx = RequestContext(
            request_id=inbound.request_id or new_id(),
            no_cache=inbound.no_cache,
            stream=inbound.stream,
            trace_parent=inbound.trace_parent,
        )
        return Prepared(inbound, signals, decide(policy, signals, self.state.engine.health), ctx)

    async def _claim(self, p: Prepared) -> Claim | None:
        """Our claim on the request's Idempotency-Key (None without a key, or store).

        Stripe's rules (see :mod:`skyroute.router.idempotency`): a repeat of a
        running request waits, then 409; the key with another body is 422; with
        the store down a request offering a non-idempotent tool fails closed
        (unless the policy allows it), the others go without deduplication.
        """
        key = p.inbound.idempotency_key
        if not key:
            return None
        policy = p.decision.policy
        scope = idempotency_scope(policy.name, p.signals.tenant, key)
        fingerprint = request_fingerprint(p.inbound.chat)
        try:
            claim = await self.state.idempotency.claim(scope, policy.request_timeout_s, fingerprint)
        except TimeoutError:
            raise Rejection(
                409,
                f"a request with Idempotency-Key {key!r} is still in flight",
                CONFLICT,
                param="idempotency_key",
                code="in_flight",
            ) from None
        if claim.mismatch:
            raise Rejection(
                422,
                f"Idempotency-Key {key!r} was already used with a different request body; "
                "use a new key for a different request",
                CONFLICT,
                param="idempotency_key",
                code="key_reused",
            )
        if claim.unavailable:
            side_effects = self.state.engine.side_effects(p.decision, p.inbound.chat)
            if side_effects and not policy.reliability.idempotency_fail_open:
                raise Rejection(
                    503,
                    f"the idempotency store is unavailable, so Idempotency-Key {key!r} cannot "
                    "guarantee one execution of this request's non-idempotent tools; refused "
                    "rather than risk running them twice (retry later; the policy may allow "
                    "this with reliability.idempotencyUnavailable: failOpen)",
                    CONFLICT,
                    param="idempotency_key",
                    code="idempotency_unavailable",
                    facts={"Retry-After": "1"},
                )
            return None  # served without deduplication: nothing to settle
        return claim

    async def _settle(self, claim: Claim | None, served: Served | None, p: Prepared) -> None:
        """Store the answer or the failure under its key, or free it (``wire.settlement``)."""
        if claim is None:
            return
        store = self.state.idempotency
        ttl = p.decision.policy.reliability.idempotency_ttl_s
        how = settlement(served)
        if how == "complete" and served is not None:
            await store.complete(claim, record(served, facts(served)), ttl)
        elif how == "fail":
            r = failure(served) if served is not None else _INTERRUPTED
            await store.complete(claim, stored_failure(r), ttl)
        else:
            await store.release(claim)

    async def _serve(
        self, codec: Codec[W, R, F], p: Prepared, claim: Claim | None, sink: Sink[R, F]
    ) -> None:
        engine = self.state.engine
        reply: R | None = None
        try:
            if p.ctx.stream:
                served = await self._stream(codec, p, sink)
            else:
                served = await engine.complete(p.decision, p.signals, p.inbound.chat, p.ctx)
                ok = served.error is None and served.result is not None
                reply = codec.answer(_answer(p, served)) if ok else codec.reject(failure(served))
        except BaseException:
            # Interrupted: an attempt may have reached an upstream, so the key keeps a failure.
            await self._settle(claim, None, p)
            raise
        await self._settle(claim, served, p)
        if reply is not None:
            await sink.send(reply)

    async def _stream(self, codec: Codec[W, R, F], p: Prepared, sink: Sink[R, F]) -> Served | None:
        """The engine's stream through the codec's framing; the Served it ended with."""
        enc = codec.stream(p)
        opened = False
        async for item in self.state.engine.stream(p.decision, p.signals, p.inbound.chat, p.ctx):
            if isinstance(item, TextDelta):
                await sink.write(enc.text(item.text))
            elif isinstance(item, ToolCallEvent):
                await sink.write(enc.tool_call(item.call))
            elif isinstance(item, StreamStarted):
                # Held until the first upstream token: the head names the model that answers.
                await sink.open(enc.head(facts(item.served)))
                opened = True
                for frame in enc.start(item.served.model):
                    await sink.write(frame)
            elif isinstance(item, StreamDone):
                for frame in enc.done(_answer(p, item.served)):
                    await sink.write(frame)
                await sink.close()
                return item.served
            elif isinstance(item, StreamFailed):
                if not opened:  # nothing sent yet: an ordinary error
                    await sink.send(codec.reject(failure(item.served)))
                else:  # never a clean end: the client must not take it for a whole answer
                    await sink.write(enc.cut(item.served))
                    await sink.close(cut=True)
                return item.served
        await sink.send(codec.reject(Rejection(502, "stream produced nothing", UPSTREAM)))
        return None

    async def _replay(self, codec: Codec[W, R, F], answer: Answer, sink: Sink[R, F]) -> None:
        """A stored answer, as the unary reply or the stream a live one would have been."""
        if not answer.prepared.ctx.stream:
            await sink.send(codec.answer(answer))
            return
        enc = codec.stream(answer.prepared)
        rec: Mapping[str, Any] = answer.rec
        await sink.open(enc.head(answer.facts))
        for frame in enc.start(rec["model"]):
            await sink.write(frame)
        if rec["content"]:
            await sink.write(enc.text(rec["content"]))
        for call in rec["tool_calls"]:
            await sink.write(enc.tool_call(call))
        for frame in enc.done(answer):
            await sink.write(frame)
        await sink.close()
