"""The PolicyDistribution gRPC service: snapshot streams, outcome reports, status.

Each router holds one long-lived ``StreamSnapshots`` stream. The handler runs
two things at once: a reader task that turns incoming requests (hello, ACK,
NACK) into queue items, and a loop that also receives "the version changed"
items from the snapshot store. A single queue per stream keeps the order of
events exact and means a push is one ``yield`` from the loop that owns the
stream, never a write from another task. The protocol rules themselves are in
``routers.py``; this module is transport and logging.

``ReportOutcomes`` checks every batch (``reports.py``: a batch from a node
that has not subscribed is refused whole, a malformed outcome or window is
dropped alone, both counted) and hands what passed to the
``OutcomeAggregator`` and the learner; it answers with the count accepted
when the router closes its stream. ``GetStatus`` assembles the
``ControlStatus`` that ``skyroute status`` and ``/debug/status`` show, in
pages (``pages.py``) that each fit in ``limits.STATUS_PAGE_BYTES``.

Authentication (``tls.py``): with ``secure`` set, every call's identity is
the verified client certificate; with ``token_auth`` set (the operator on a
TLS link, ``tokens.py``) it is what that authenticator makes of the call's
bearer token (a ServiceAccount checked by TokenReview). The rules below are
the same for both. A snapshot stream must come from a
``router`` identity that binds the node id it claims, and may not take over
a node id another identity holds; a report must name a node whose stream
that same identity opened; forwarded outcomes are taken only from an
``operator`` identity. Whatever is refused is counted in ``rejected``
(``unauthenticated``, ``wrong_role``, ``identity_mismatch``,
``not_subscribed``) and answered with UNAUTHENTICATED or PERMISSION_DENIED.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

import grpc

from skyroute.control.distribution import pages
from skyroute.control.distribution.pages import BadPageToken
from skyroute.control.distribution.reports import ReportChecker
from skyroute.control.distribution.routers import Answer, RouterRecord, RouterRegistry
from skyroute.control.distribution.tls import INSECURE, Identity, identity_of
from skyroute.control.distribution.tokens import TokenAuthenticator, TokenRefused, bearer
from skyroute.control.learning.loop import Learner
from skyroute.control.learning.outcomes import OutcomeAggregator
from skyroute.control.limits import MAX_NAME, MAX_STATUS_TEXT, STATUS_PAGE_BYTES, clip
from skyroute.control.logs import event
from skyroute.control.policy.store import SnapshotStore
from skyroute.control.spend.ledger import Ledger
from skyroute.control.spend.views import status_entries
from skyroute.control.telemetry import ControlMetrics
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

log = logging.getLogger("skyroute.control.distribution")
# Node ids of outcome batches one operator replica forwards to the leader.
FORWARDED_PREFIX = "forwarded/"
# Seconds a report from a node not (yet) listed waits for its snapshot stream before it
# is refused as not_subscribed (a restarted control plane: see _listed_soon).
SUBSCRIBE_GRACE_S = 3.0

_CHANGED = object()
_CLOSED = object()


def new_nonce() -> str:
    return secrets.token_hex(8)


class DistributionService(distribution_pb2_grpc.PolicyDistributionServicer):
    """Serves the store's snapshot to routers and tracks what each one holds."""

    def __init__(
        self, store: SnapshotStore, registry: RouterRegistry, outcomes: OutcomeAggregator
    ) -> None:
        self.store = store
        self.registry = registry
        self.outcomes = outcomes
        # Whether callers must present a client certificate (``skyroute control --tls-dir``).
        self.secure = False
        # Or a bearer token this checks (the operator: ServiceAccount tokens, linkauth.py).
        self.token_auth: TokenAuthenticator | None = None
        # Reports are checked against the names of the versions served lately.
        self.checker = ReportChecker()
        self.checker.learn(store.snapshot)
        store.subscribe(lambda: self.checker.learn(store.snapshot))
        # Extra lines for status: failing background tasks, the source's state (server.py).
        self.failing_tasks: Callable[[], list[str]] = list
        self.source_broken_since: Callable[[], int] = lambda: 0
        self._streams: set[asyncio.Queue[object]] = set()
        # The learning loop (server.py sets it): every batch's ModelStats windows.
        self.learner: Learner | None = None
        # Outcomes another operator replica forwarded (node id FORWARDED_PREFIX...): they
        # feed only this hook (the rollout analysis), never the counts of this replica's
        # own routers, which that replica reports itself.
        self.on_forwarded: Callable[[str, Sequence[distribution_pb2.Outcome]], None] | None = None
        # Feedback a follower forwarded (ratings of versions under rollout): the analysis's.
        self.on_forwarded_feedback: Callable[[Sequence[distribution_pb2.Feedback]], None] | None = (
            None
        )
        self.metrics = ControlMetrics()
        # The spend ledger (control/spend): every charge a report carries, once. An
        # operator replaces ``charge`` (kube/spendmap.py: only the leader counts).
        self.ledger = Ledger()
        self.charge: Callable[[Sequence[distribution_pb2.Outcome]], object] = self.ledger.record
        self.metrics.observe_spend(lambda: self.ledger.select())
        # nonce -> (version, monotonic push time): push-to-ACK latency.
        self._pushed_at: dict[str, tuple[str, float]] = {}
        self.metrics.observe_routers(
            lambda: [
                (
                    r.acked_version,
                    distribution_pb2.SyncState.Name(r.state).removeprefix("SYNC_STATE_"),  # type: ignore[arg-type]
                )
                for r in self.registry.records()
            ],
            lambda: self.store.version,
        )
        # Refusals and drops by reason, as in ControlStatus.rejected.
        self.metrics.observe_rejected(self.rejected)
        # Active drift alerts of the learning loop, one series per (model, kind).
        self.metrics.observe_drift(lambda: list(self.learner.alerts) if self.learner else [])

    def rejected(self) -> dict[str, int]:
        """Refused and dropped, by reason: the checker's and the series caps' drops."""
        out = dict(self.checker.rejected)
        out.update({f"series:{k}": v for k, v in self.outcomes.dropped_series.items()})
        return out

    @property
    def authentication(self) -> str:
        if self.secure:
            return "mtls"
        return "token" if self.token_auth is not None else "insecure"

    async def _identity(self, context: grpc.aio.ServicerContext, *roles: str) -> Identity:
        """The caller's verified identity (aborts the call if it has none or another role)."""
        if self.token_auth is not None and not self.secure:
            who = await self._token_identity(context)
        elif not self.secure:
            return INSECURE
        else:
            found = identity_of(context)
            if found is None:
                self.checker.reject("unauthenticated", context.peer())
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required"
                )
            assert found is not None
            who = found
        if roles and who.role not in roles:
            self.checker.reject("wrong_role", who.name)
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"identity {who.name!r} has role {who.role!r}, not {' or '.join(roles)}",
            )
        return who

    async def _token_identity(self, context: grpc.aio.ServicerContext) -> Identity:
        assert self.token_auth is not None
        try:
            token = bearer(context.invocation_metadata())
            if not token:
                raise TokenRefused("unauthenticated", "a ServiceAccount bearer token is required")
            return await self.token_auth.authenticate(token)
        except TokenRefused as refused:
            self.checker.reject(refused.reason, context.peer())
            event(
                log, "token_refused", logging.WARNING, reason=refused.reason, error=refused.message
            )
            await context.abort(refused.code, refused.message)
            raise AssertionError("abort returned") from None

    def _refuse_claim(self, who: Identity, node_id: str) -> str:
        """Why ``who`` may not open a stream as ``node_id`` ("" when it may)."""
        if not who.binds(node_id):
            return f"identity {who.name!r} may not claim node {node_id!r}"
        held = self.registry.get(node_id)
        if held is not None and held.identity != who.name and held.disconnected_at is None:
            return f"node {node_id!r} is held by another identity"
        return ""

    def close_streams(self) -> None:
        """End every snapshot stream cleanly (status OK), so routers reconnect elsewhere."""
        for queue in self._streams:
            queue.put_nowait(_CLOSED)

    async def StreamSnapshots(
        self,
        request_iterator: AsyncIterator[distribution_pb2.SnapshotRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[distribution_pb2.SnapshotResponse]:
        who = await self._identity(context, "router")
        queue: asyncio.Queue[object] = asyncio.Queue()
        self._streams.add(queue)
        reader = asyncio.create_task(self._read(request_iterator, queue))
        unsubscribe = self.store.subscribe(lambda: queue.put_nowait(_CHANGED))
        record: RouterRecord | None = None
        try:
            first = await queue.get()
            while first is _CHANGED:  # a change before the hello is covered by the hello
                first = await queue.get()
            if first is _CLOSED:
                return
            if not isinstance(first, distribution_pb2.SnapshotRequest):
                return
            if not first.node.id:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "the first SnapshotRequest must set node.id"
                )
            if first.node.ByteSize() > 4 * MAX_NAME:
                self.checker.reject("node_too_long", first.node.id[:MAX_NAME])
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"node fields over {MAX_NAME} characters"
                )
            if self.registry.full(first.node.id):
                self.checker.reject("too_many_routers", first.node.id)
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many routers listed")
            refused = self._refuse_claim(who, first.node.id)
            if refused:
                self.checker.reject("identity_mismatch", who.name)
                event(log, "stream_refused", logging.WARNING, identity=who.name, reason=refused)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
            record = self.registry.connect(first.node)
            record.identity = who.name
            record.hello(first, self.store.version)
            event(
                log,
                "router_connected",
                router=record.id,
                version_info=first.version_info or "-",
                state=distribution_pb2.SyncState.Name(record.state),  # type: ignore[arg-type]
            )
            while True:
                response = self._push_if_needed(record)
                if response is not None:
                    yield response
                item = await queue.get()
                if item is _CLOSED:
                    return
                if isinstance(item, distribution_pb2.SnapshotRequest):
                    self._answer(record, item)
        finally:
            self._streams.discard(queue)
            unsubscribe()
            reader.cancel()
            if record is not None and self.registry.disconnect(record):
                event(log, "router_disconnected", router=record.id, acked=record.acked_version)

    async def _read(
        self,
        requests: AsyncIterator[distribution_pb2.SnapshotRequest],
        queue: asyncio.Queue[object],
    ) -> None:
        try:
            async for request in requests:
                queue.put_nowait(request)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the RPC ended (cancelled, aborted, reset): the stream is over
            log.debug("snapshot stream read ended: %r", exc)
        finally:
            queue.put_nowait(_CLOSED)

    def _push_if_needed(self, record: RouterRecord) -> distribution_pb2.SnapshotResponse | None:
        snapshot = self.store.snapshot
        if snapshot is None or not record.needs(snapshot.version):
            return None
        nonce = new_nonce()
        record.sent(snapshot.version, nonce)
        self.metrics.pushed(snapshot.version)
        if len(self._pushed_at) > 10_000:  # routers that never answered
            self._pushed_at.clear()
        self._pushed_at[nonce] = (snapshot.version, time.monotonic())
        event(
            log,
            "push",
            router=record.id,
            version=snapshot.version,
            nonce=nonce,
            previous=record.acked_version or "-",
        )
        return distribution_pb2.SnapshotResponse(
            version_info=snapshot.version, nonce=nonce, snapshot=snapshot
        )

    def _answer(self, record: RouterRecord, request: distribution_pb2.SnapshotRequest) -> None:
        answer = record.answer(request)
        pushed = self._pushed_at.pop(request.response_nonce, None)
        if pushed is not None and answer in (Answer.ACK, Answer.NACK):
            self.metrics.answered(pushed[0], answer.name.lower(), time.monotonic() - pushed[1])
        if answer is Answer.ACK:
            event(
                log,
                "ack",
                router=record.id,
                version=request.version_info,
                nonce=request.response_nonce,
            )
        elif answer is Answer.NACK:
            event(
                log,
                "nack",
                logging.WARNING,
                router=record.id,
                rejected=record.sent_version,
                keeps=request.version_info or "-",
                code=request.error_detail.code,
                error=request.error_detail.message,
            )
        else:
            event(
                log,
                "stale_nonce",
                logging.DEBUG,
                router=record.id,
                nonce=request.response_nonce,
                expected=record.nonce,
            )

    async def _listed_soon(self, node: str) -> RouterRecord | None:
        """The node's record once its snapshot stream is back, waiting at most
        :data:`SUBSCRIBE_GRACE_S`: after a restart of the control plane a router's
        report call can return before its snapshot stream does, and its write of a
        batch succeeds whether the batch is kept or not (charges would be lost)."""
        deadline = time.monotonic() + SUBSCRIBE_GRACE_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            record = self.registry.get(node)
            if record is not None:
                return record
        return None

    async def ReportOutcomes(
        self,
        request_iterator: AsyncIterator[distribution_pb2.OutcomeBatch],
        context: grpc.aio.ServicerContext,
    ) -> distribution_pb2.OutcomeSummary:
        who = await self._identity(context, "router", "operator")
        received = 0
        try:
            async for batch in request_iterator:
                node = batch.node.id
                guarded = self.secure or self.token_auth is not None
                if node.startswith(FORWARDED_PREFIX) and guarded and who.role != "operator":
                    self.checker.reject("wrong_role", who.name, len(batch.outcomes) or 1)
                    continue
                if node.startswith(FORWARDED_PREFIX):
                    forwarded = self.checker.outcomes(node, batch.outcomes)
                    if self.on_forwarded is not None:
                        self.on_forwarded(node, forwarded)
                    if batch.feedback and self.on_forwarded_feedback is not None:
                        self.on_forwarded_feedback(batch.feedback)
                    self.charge(forwarded)
                    received += len(forwarded)
                    continue
                record = self.registry.get(node)
                if record is None:
                    record = await self._listed_soon(node)
                if record is None:
                    # Never subscribed (or gone for longer than the listing lasts).
                    self.checker.reject("not_subscribed", node, len(batch.outcomes) or 1)
                    continue
                if record.identity != who.name:  # another identity's node
                    self.checker.reject("identity_mismatch", who.name, len(batch.outcomes) or 1)
                    continue
                outcomes = self.checker.outcomes(node, batch.outcomes)
                n = self.outcomes.record(node, outcomes)
                self.charge(outcomes)
                received += n
                self.metrics.received(n)
                self.registry.touch(node, self.checker.endpoints(node, batch.endpoints))
                if self.learner is not None:
                    self.learner.recent.record(outcomes)  # before the feedback it may carry
                if self.learner is not None and batch.feedback:
                    self.learner.feedback(batch.feedback)  # checked by learning.quality
                if self.learner is not None:
                    stats = self.checker.stats(node, batch.stats)
                    if stats:
                        self.learner.record(stats, node)
                    self.learner.tool_use.record(node, outcomes)
        except asyncio.CancelledError:
            # The server is stopping with the stream open: what arrived is counted, and
            # grpc would otherwise print the cancellation as a traceback on stderr,
            # outside the structured log.
            event(log, "outcome_stream_closed", received=received)
        return distribution_pb2.OutcomeSummary(received=received)

    async def GetStatus(
        self, request: distribution_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> distribution_pb2.ControlStatus:
        await self._identity(context)
        try:
            return self.status(request.page_token, max(0, request.max_routers), STATUS_PAGE_BYTES)
        except BadPageToken as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # abort raises; this keeps the type checker honest

    def status(
        self, page_token: str = "", max_routers: int = 0, page_bytes: int = 0
    ) -> distribution_pb2.ControlStatus:
        """The control plane's view: version, policies, last error, routers, outcome counts.

        With ``page_bytes`` (gRPC) one page (``pages.py``): the first (no token) carries
        the head, then every list (policies, outcomes per pool, spend, quality, routers,
        at most ``max_routers`` of them) continues page after page, each under
        ``page_bytes``, ``next_page_token`` set while more follow. Without it (the
        admin HTTP port, in process) everything. Raises BadPageToken.
        """
        status = distribution_pb2.ControlStatus()
        if not page_token:
            status.version = self.store.version
            status.last_error = clip(self.store.last_error, MAX_STATUS_TEXT)
            status.outcomes_total = self.outcomes.total
            status.source = self.store.source
            status.authentication = self.authentication
            status.rejected.update(self.rejected())
            status.source_broken_since_unix_ms = self.source_broken_since()
            status.failing_tasks.extend(self.failing_tasks())
            if self.learner is not None:
                status.learned.CopyFrom(self.learner.state())
        return pages.page(status, self._sections(max_routers), page_token, page_bytes)

    def _sections(self, max_routers: int) -> list[pages.Section]:
        """The status's lists, each in key order (a page token resumes after a key)."""

        def policies() -> Iterable[pages.Item]:
            for name, version in sorted(self.store.policies().items()):
                yield pages.map_entry("policies", name, version)

        def pools() -> Iterable[pages.Item]:
            for pool, count in sorted(self.outcomes.by_pool().items()):
                row = distribution_pb2.PoolCount(key=pool, requests=count)
                yield pages.message("outcomes_by_pool", row, (pool,))

        def spend() -> Iterable[pages.Item]:
            now_ms = int(time.time() * 1000)
            rows = status_entries(self.ledger, self.store.snapshot, now_ms)
            for row in sorted(rows, key=lambda r: r.tenant):
                yield pages.message("spend", row, (row.tenant,))

        def quality() -> Iterable[pages.Item]:
            rows = self.learner.quality_rows() if self.learner is not None else []
            for row in sorted(rows, key=lambda r: (r.model, r.intent)):
                yield pages.message("quality", row, (row.model, row.intent))

        def routers() -> Iterable[pages.Item]:
            for record in self.registry.records():
                yield (record.id,), functools.partial(self._router_row, record)

        return [
            pages.Section(policies),
            pages.Section(pools),
            pages.Section(spend),
            pages.Section(quality),
            pages.Section(routers, limit=max_routers),
        ]

    def _router_row(self, record: RouterRecord) -> tuple[int, pages.Add]:
        row = record.to_status(self.outcomes.for_router(record.id))
        row.last_nack = clip(row.last_nack, MAX_STATUS_TEXT)
        return pages.appended("routers", row)
