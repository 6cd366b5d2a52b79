"""Followers forward rollout outcomes to the leader, so its analysis sees the fleet.

Every operator replica serves routers (a Service spreads them), but only the
Lease holder analyses rollouts and writes their status. Without help the
leader would judge a canary on the outcomes of its own routers alone, and on
none at all if every router happened to connect to a follower (the rollout
would hold forever). So each follower forwards, to the leader, the outcomes
its routers report for policy versions under rollout: the leader advertises
its gRPC address on the Lease (``skyroute.io/grpc-address``), and a follower
sends them with the ordinary ``ReportOutcomes`` call under a node id starting
with ``forwarded/``, which the leader feeds to the rollout analysis and the
spend ledger only
(its own status counts stay its own routers').

Feedback on versions under rollout goes the same way (in the batch's
``feedback``, the pieces this replica's learner accepted), so a canary that
judges quality counts its followers' routers' ratings too.

Charges (outcomes naming the tenant that pays) are forwarded too: the
leader alone keeps the spend ledger (``spendmap.py``), which counts each
charge once by its id. Other outcomes are forwarded only for versions being
analysed (a few per request at most, none when nothing is in flight). All
are batched every ``flush_s``; a leader that is away loses them, exactly as
the analysis would lose a router's, and the interval is judged on what
arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

import grpc

from skyroute.control.distribution.service import FORWARDED_PREFIX
from skyroute.control.logs import event
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

log = logging.getLogger("skyroute.control.kube.forward")
MAX_PENDING = 50_000


class OutcomeForwarder:
    """Queue watched outcomes while following; ship them to the leader's address."""

    def __init__(
        self,
        identity: str,
        leader_address: Callable[[], str],
        following: Callable[[], bool],
        watched: Callable[[str, str], bool],
        flush_s: float = 0.5,
    ) -> None:
        self.node = distribution_pb2.Node(id=f"{FORWARDED_PREFIX}{identity}")
        # On a TLS link (operator.py sets them): trust the link's CA for the name its
        # certificate carries (the leader is dialled by pod IP), and present this
        # replica's ServiceAccount token, read anew for every batch.
        self.credentials: grpc.ChannelCredentials | None = None
        self.server_name = ""
        self.metadata: Callable[[], tuple[tuple[str, str], ...]] = tuple
        self.leader_address = leader_address
        self.following = following
        self.watched = watched
        self.flush_s = flush_s
        self.pending: list[distribution_pb2.Outcome] = []
        self.pending_feedback: list[distribution_pb2.Feedback] = []
        self.forwarded = 0
        self.dropped = 0
        self._channel: grpc.aio.Channel | None = None
        self._target = ""

    def record(self, router_id: str, outcomes: Sequence[distribution_pb2.Outcome]) -> None:
        """The outcome aggregator's listener."""
        if not self.following():
            return
        for o in outcomes:
            if o.account or self.watched(o.policy, o.policy_version):
                if len(self.pending) >= MAX_PENDING:
                    self.dropped += 1
                    continue
                self.pending.append(o)

    def feedback(self, kept: Sequence[distribution_pb2.Feedback]) -> None:
        """The learner's feedback listener: ratings of versions under rollout."""
        if not self.following():
            return
        for fb in kept:
            if self.watched(fb.policy, fb.policy_version):
                if len(self.pending_feedback) >= MAX_PENDING:
                    self.dropped += 1
                    continue
                self.pending_feedback.append(fb)

    async def _send(
        self,
        target: str,
        batch: list[distribution_pb2.Outcome],
        feedback: list[distribution_pb2.Feedback],
    ) -> None:
        if self._channel is None or target != self._target:
            if self._channel is not None:
                await self._channel.close()
            if self.credentials is None:
                self._channel = grpc.aio.insecure_channel(target)
            else:
                options = [("grpc.ssl_target_name_override", self.server_name)]
                self._channel = grpc.aio.secure_channel(target, self.credentials, options=options)
            self._target = target
        stub = distribution_pb2_grpc.PolicyDistributionStub(self._channel)

        async def one() -> AsyncIterator[distribution_pb2.OutcomeBatch]:
            yield distribution_pb2.OutcomeBatch(node=self.node, outcomes=batch, feedback=feedback)

        await stub.ReportOutcomes(one(), timeout=5.0, metadata=self.metadata())

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.flush_s)
            if not self.following():
                self.pending.clear()  # became the leader: its own windows have them
                self.pending_feedback.clear()
                continue
            target = self.leader_address()
            if not (self.pending or self.pending_feedback) or not target:
                continue
            batch, self.pending = self.pending, []
            ratings, self.pending_feedback = self.pending_feedback, []
            try:
                await self._send(target, batch, ratings)
                self.forwarded += len(batch) + len(ratings)
            except Exception as exc:  # the leader is away: those outcomes are lost
                self.dropped += len(batch) + len(ratings)
                event(
                    log,
                    "forward_failed",
                    logging.WARNING,
                    leader=target,
                    outcomes=len(batch),
                    error=repr(exc),
                )
        if self._channel is not None:
            await self._channel.close()
