"""The one inbound pipeline every door runs.

decode → identity (the door: who is calling, may they use the policy) →
signals → decide → idempotency → limits (the door: every limit reserved
for the chosen candidate) → engine (which consults the cache first) →
encode → settle (the limits, the idempotency key). A transport hands
:meth:`Pipeline.serve` its codec, the wire request and a sink; everything
between decoding and encoding happens here once, so the HTTP and gRPC doors
(and any door added later) cannot drift apart on identity, limits, policy
lookup, canaries, signals, the decision, Idempotency-Key handling,
streaming commitment or error mapping.

A prompt no model of the chosen pool can hold (every context window smaller
than its token estimate) is a 400 ``context_length_exceeded`` before any
upstream call (Explain and ``count_tokens`` still answer).

Load is shed before decoding: beyond ``--max-inflight`` requests in flight
the answer is "overloaded" at once rather than a queue. ``Idempotency-Key``
(``idempotency_key`` over gRPC) makes a repeated request wait for, or
replay, the first one's answer or failure, keyed per policy and tenant; a
stored answer is kept in a door-neutral form, so either door can replay it.
Limits are reserved after the key is claimed, so a replay costs no quota.
An Embeddings request (``Inbound.embed``) is decided among embedding models
only and served by the engine's embeddings walk, answered whole. A
Responses request (``Inbound.kept``) continues a stored conversation before
its signals are read and has its complete answer stored before it is
encoded (:mod:`.stored`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from skyroute.router.canary import choose
from skyroute.router.decide import decide, largest_window
from skyroute.router.engine import (
    RequestContext,
    Served,
    StreamDone,
    StreamFailed,
    StreamStarted,
)
from skyroute.router.feedback import FeedbackDesk
from skyroute.router.idempotency import Claim
from skyroute.router.ids import new_id
from skyroute.router.ingress import admission
from skyroute.router.ingress.codecs.base import Codec, Sink
from skyroute.router.ingress.facts import (
    FEEDBACK_ID,
    INTERRUPTED,
    REPLAY,
    facts,
    failure,
    feedback_of,
    replayed_failure,
    stored_failure,
)
from skyroute.router.ingress.stored import keep, resume
from skyroute.router.ingress.types import (
    CONFLICT,
    INVALID,
    NOT_FOUND,
    OVERLOADED,
    UNAVAILABLE,
    UPSTREAM,
    Answer,
    Inbound,
    Prepared,
    Rejection,
)
from skyroute.router.providers.types import TextDelta, ThinkingEvent, ToolCallEvent
from skyroute.router.signals import signals_from_messages
from skyroute.router.state import RouterState
from skyroute.router.wire import idempotency_scope, record, request_fingerprint, settlement

W = TypeVar("W")
R = TypeVar("R")
F = TypeVar("F")


def _facts(desk: FeedbackDesk, p: Prepared, served: Served) -> dict[str, str]:
    """The served facts, the answer's feedback id and the door's ``x-ratelimit-*`` headers."""
    f = facts(served)
    f[FEEDBACK_ID] = desk.mint(feedback_of(p, served))
    if p.admission is not None:
        f.update(p.admission.headers)
    return f


def _limits(p: Prepared) -> Mapping[str, str]:
    return p.admission.headers if p.admission is not None else {}


def _answer(desk: FeedbackDesk, p: Prepared, served: Served) -> Answer:
    return Answer(p, record(served, facts(served)), _facts(desk, p, served), served)


def _fits(p: Prepared) -> None:
    """Refuse, before any upstream call, a request no candidate can serve as asked: a
    parameter no family of the pool can honour, or a prompt no context window can hold."""
    d = p.decision
    if d.chain or p.inbound.embed is not None:
        return
    if d.unhonoured:
        name = d.unhonoured[0][1]
        families = sorted({c.provider for c in d.policy.pools[d.pool]})
        raise Rejection(
            400,
            f"{name}: no model of pool {d.pool!r} can honour it (its "
            f"{', '.join(families)} family cannot); remove it",
            INVALID,
            param=name,
            code="unsupported_parameter",
        )
    window = largest_window(d.policy.pools[d.pool], p.signals)
    if window is not None:
        raise Rejection(
            400,
            f"this request's prompt is about {p.signals.prompt_tokens} tokens, more than any "
            f"model of pool {d.pool!r} can hold (the largest context window is {window} "
            "tokens); shorten the messages",
            INVALID,
            param="messages",
            code="context_length_exceeded",
        )


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
                p = await self.prepare(codec.decode(wire))
                if dry_run:
                    d = p.decision
                    if d.cacheable:
                        d.cache_note = state.engine.cache.describe(d.policy.cache, d.intent)
                    await sink.send(codec.explained(p))
                    return
                _fits(p)
                claim = await self._claim(p)
            except Rejection as r:
                await sink.send(codec.reject(r))
                return
            if claim is not None and claim.stored is not None:
                await self._replay(codec, p, claim.stored, sink)
                return
            try:
                await admission.admit(state.door, p)
            except Rejection as r:
                if claim is not None:  # refused before any upstream call: a retry may run
                    await state.idempotency.release(claim)
                await sink.send(codec.reject(r))
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

    async def prepare(self, inbound: Inbound) -> Prepared:
        """Identity, policy (and canary), signals and the decision for one request."""
        table = self.state.table
        if table is None:
            raise Rejection(503, "router has no policy snapshot yet", UNAVAILABLE, code="not_ready")
        door = self.state.door
        ident = await admission.identify(door, inbound)
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
        admission.authorize(door, ident, policy.name)
        if inbound.kept is not None and inbound.kept.previous:
            # Before the signals: a continued conversation is routed on all of it.
            await resume(self.state.responses, ident, inbound)
        chat = inbound.chat
        # The authenticated tenant and tier, never a client's header unless delegated.
        declared = {**inbound.declared, "tenant": ident.tenant, "user_tier": ident.tier}
        if policy.canary is not None:
            policy = choose(
                policy,
                user=inbound.user,
                session=inbound.session,
                tenant=ident.tenant,
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
            account=ident.account,
            key_id=ident.key_id,
        )
        pressure = door.pressure_pool(ident)
        embeddings = inbound.embed is not None
        decision = decide(
            policy,
            signals,
            self.state.engine.health,
            pressure_pool=pressure,
            embeddings=embeddings,
            request_id=ctx.request_id,
            options=chat.options,
            stops=len(chat.stop),
        )
        if embeddings and not decision.chain:
            raise Rejection(
                404,
                f"policy {policy.name!r} routes this request to pool {decision.pool!r}, which has "
                "no embedding model (a ModelPool model with embeddingSpace)",
                NOT_FOUND,
                param="model",
                code="model_not_found",
            )
        return Prepared(inbound, signals, decision, ctx, ident)

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

    async def _settle(
        self, claim: Claim | None, served: Served | None, p: Prepared, received: str = ""
    ) -> None:
        """Charge the limits, then store the answer or the failure under the key, or free it."""
        await admission.settle(self.state.door, p, served, received)
        if claim is None:
            return
        store = self.state.idempotency
        ttl = p.decision.policy.reliability.idempotency_ttl_s
        how = settlement(served)  # wire.settlement: the rule both doors share
        if how == "complete" and served is not None:
            await store.complete(claim, record(served, facts(served)), ttl)
        elif how == "fail":
            r = failure(served) if served is not None else INTERRUPTED
            await store.complete(claim, stored_failure(r), ttl)
        else:
            await store.release(claim)

    async def _serve(
        self, codec: Codec[W, R, F], p: Prepared, claim: Claim | None, sink: Sink[R, F]
    ) -> None:
        engine = self.state.engine
        received: list[str] = []
        try:
            if p.ctx.stream:
                served, last = await self._stream(codec, p, sink, received)
            else:
                embed = p.inbound.embed
                served = await (
                    engine.complete(p.decision, p.signals, p.inbound.chat, p.ctx)
                    if embed is None
                    else engine.embed(
                        p.decision,
                        p.signals,
                        replace(embed, prompt_tokens=p.signals.prompt_tokens),
                        p.ctx,
                    )
                )
                if served.error is None and served.result is not None:
                    answer = _answer(self.state.feedback, p, served)
                    await keep(self.state.responses, p, answer.rec)
                    reply = codec.answer(answer)
                else:
                    reply = codec.reject(failure(served, _limits(p)))
                last = partial(sink.send, reply)
        except BaseException:
            # Interrupted: an attempt may have reached an upstream, so the key keeps a failure.
            await self._settle(claim, None, p, "".join(received))
            raise
        # Settled before the last step: a transport whose error reply raises (gRPC's abort)
        # must not leave the key looking interrupted, and a retry finds the outcome stored.
        await self._settle(claim, served, p, "".join(received))
        await last()

    async def _stream(
        self, codec: Codec[W, R, F], p: Prepared, sink: Sink[R, F], received: list[str]
    ) -> tuple[Served | None, Callable[[], Awaitable[None]]]:
        """The engine's stream through the codec's framing; the Served it ended with and
        the step that ends the reply (a close, a cut, or an error before any frame).

        ``received`` collects the streamed text, which a stream that dies is charged for.
        """
        enc = codec.stream(p)
        opened = False
        async for item in self.state.engine.stream(p.decision, p.signals, p.inbound.chat, p.ctx):
            if isinstance(item, TextDelta):
                received.append(item.text)
                await sink.write(enc.text(item.text))
            elif isinstance(item, ToolCallEvent):
                await sink.write(enc.tool_call(item.call))
            elif isinstance(item, ThinkingEvent):
                thought = enc.thinking(item.block)
                if thought is not None:
                    await sink.write(thought)
            elif isinstance(item, StreamStarted):
                # Held until the first upstream token: the head names the model that answers
                # (and carries the x-ratelimit-* headers, which must precede the stream).
                await sink.open(enc.head(_facts(self.state.feedback, p, item.served)))
                opened = True
                for frame in enc.start(item.served.model):
                    await sink.write(frame)
            elif isinstance(item, StreamDone):
                answer = _answer(self.state.feedback, p, item.served)
                await keep(self.state.responses, p, answer.rec)
                for frame in enc.done(answer):
                    await sink.write(frame)
                return item.served, sink.close
            elif isinstance(item, StreamFailed):
                if not opened:  # nothing sent yet: an ordinary error
                    return item.served, partial(
                        sink.send, codec.reject(failure(item.served, _limits(p)))
                    )
                # never a clean end: the client must not take it for a whole answer
                await sink.write(enc.cut(item.served))
                return item.served, partial(sink.close, cut=True)
        return None, partial(
            sink.send, codec.reject(Rejection(502, "stream produced nothing", UPSTREAM))
        )

    async def _replay(
        self, codec: Codec[W, R, F], p: Prepared, stored: Mapping[str, Any], sink: Sink[R, F]
    ) -> None:
        """A stored answer, as the unary reply or the stream a live one would have been;
        a stored failure, as the error the first request was answered with."""
        if "error" in stored:
            await sink.send(codec.reject(replayed_failure(stored)))
            return
        answer = Answer(p, stored, {**stored["headers"], REPLAY: "true"})
        await keep(self.state.responses, p, stored)
        if not p.ctx.stream:
            await sink.send(codec.answer(answer))
            return
        enc = codec.stream(p)
        await sink.open(enc.head(answer.facts))
        for frame in enc.start(stored["model"]):
            await sink.write(frame)
        for block in stored.get("thinking") or ():
            thought = enc.thinking(block)
            if thought is not None:
                await sink.write(thought)
        if stored["content"]:
            await sink.write(enc.text(stored["content"]))
        for call in stored["tool_calls"]:
            await sink.write(enc.tool_call(call))
        for frame in enc.done(answer):
            await sink.write(frame)
        await sink.close()
