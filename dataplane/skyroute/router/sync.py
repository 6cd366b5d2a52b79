"""The router's side of the distribution protocol: snapshots in, outcomes out.

Snapshots arrive on an xDS-style state-of-the-world stream. The router sends
its node identity and the version it serves; for every pushed snapshot it
builds a routing table, and only if that succeeds swaps it in and ACKs
(echoing version and nonce). If the table cannot be built it NACKs with the
reason and keeps serving its last known good table. A lost control plane
never stops serving: the client reconnects with back-off and announces the
version it holds, so a restarted control plane with the same input sends
nothing new.

Outcomes are buffered in a bounded deque and sent in batches on a
long-lived client stream. When the control plane is away the buffer keeps
the newest outcomes and counts what it dropped; reporting never blocks or
fails a request.

The link is mutual TLS when the router is given the control plane's CA and
its own certificate (``--control-ca``, ``--identity``: :class:`LinkTls`);
the control plane binds the node id to that certificate. On a cluster the
router instead presents its projected ServiceAccount token (``--control-ca``
with ``--control-token FILE``, audience ``skyroute-control``) as
``authorization: Bearer`` metadata on every stream it opens, read from the
file at each (re)connect, so the kubelet's rotation of that file is picked
up; the operator verifies it with a TokenReview and binds the node id to the
ServiceAccount (and pod). The token only ever travels over TLS. Without any
of these the channel is plaintext, for a control plane run with ``--insecure``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from skyroute.link import link_channel_options
from skyroute.router.logs import event
from skyroute.router.table import RoutingTable, SnapshotError, build_table
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

log = logging.getLogger("skyroute.router.sync")

_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Keepalive and message limits as the control plane's server expects them.
    *link_channel_options(),
]


Metadata = tuple[tuple[str, str], ...]
#: A projected token is a few KB; a file much larger is not one.
MAX_TOKEN_BYTES = 16_384
#: How often the router looks whether its door changed (then reports it at once).
DOOR_INTERVAL_S = 1.0


def no_metadata() -> Metadata:
    return ()


@dataclass(frozen=True, slots=True)
class LinkTls:
    """The CA this router trusts for the control plane, and how it proves who it is.

    Either a client certificate (``cert``/``key``) or a ServiceAccount token file.
    """

    ca: bytes
    cert: bytes | None
    key: bytes | None
    name: str  # the identity file's name, or the host name: the default node id's prefix
    token_file: str | None = None

    @classmethod
    def from_files(cls, ca: str, identity: str) -> LinkTls:
        """``ca`` and the ``identity``.crt / ``identity``.key pair beside that prefix."""
        return cls(
            Path(ca).read_bytes(),
            Path(f"{identity}.crt").read_bytes(),
            Path(f"{identity}.key").read_bytes(),
            Path(identity).name,
        )

    @classmethod
    def with_token(cls, ca: str, token_file: str, name: str) -> LinkTls:
        """Trust ``ca``; present the token in ``token_file`` (checked readable now)."""
        tls = cls(Path(ca).read_bytes(), None, None, name, token_file)
        tls.metadata()
        return tls

    def metadata(self) -> Metadata:
        """The call metadata of a new stream: the token as it is in the file now."""
        if self.token_file is None:
            return ()
        with open(self.token_file, "rb") as fh:
            token = fh.read(MAX_TOKEN_BYTES + 1).decode("ascii", "replace").strip()
        if not token or len(token) > MAX_TOKEN_BYTES:
            raise OSError(f"{self.token_file}: no token (empty, or over {MAX_TOKEN_BYTES} bytes)")
        return (("authorization", f"Bearer {token}"),)


def channel(target: str, tls: LinkTls | None = None) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
    creds = grpc.ssl_channel_credentials(tls.ca, private_key=tls.key, certificate_chain=tls.cert)
    return grpc.aio.secure_channel(target, creds, options=_CHANNEL_OPTIONS)


class SnapshotSubscriber:
    """Keeps ``on_table`` fed with the newest snapshot the router can serve."""

    def __init__(
        self,
        ch: grpc.aio.Channel,
        node: distribution_pb2.Node,
        on_table: Callable[[RoutingTable], None],
        metadata: Callable[[], Metadata] = no_metadata,
    ) -> None:
        self._stub = distribution_pb2_grpc.PolicyDistributionStub(ch)
        self._metadata = metadata  # read at every (re)connect: the token file rotates
        self.node = node
        self.on_table = on_table
        self.version = ""  # the version this router serves (its last known good)
        self.connected = False
        self.last_nack = ""
        self.acks = 0
        self.nacks = 0
        # The router's door, sent with every request (after the table is applied), and
        # on its own when it changes (Redis down or back, shadow refusals counted).
        self.door: Callable[[], distribution_pb2.DoorStatus] = distribution_pb2.DoorStatus
        self.door_interval_s = DOOR_INTERVAL_S

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as e:
                event(log, "control_stream_ended", logging.WARNING, code=e.code().name)
            except Exception:  # a bug here must not kill the router's serving
                log.exception("control_stream_failed")
            else:
                backoff = 0.1
            self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _session(self) -> None:
        outbox: asyncio.Queue[distribution_pb2.SnapshotRequest] = asyncio.Queue()
        hello = distribution_pb2.SnapshotRequest(
            node=self.node, version_info=self.version, door=self.door()
        )
        outbox.put_nowait(hello)

        async def requests() -> AsyncIterator[distribution_pb2.SnapshotRequest]:
            while True:
                yield await outbox.get()

        call = self._stub.StreamSnapshots(
            requests(), wait_for_ready=True, metadata=self._metadata()
        )
        watch = asyncio.create_task(self._watch_door(outbox, hello.door))
        try:
            async for resp in call:
                self.connected = True
                outbox.put_nowait(await self._apply(resp))
        finally:
            watch.cancel()

    async def _watch_door(
        self,
        outbox: asyncio.Queue[distribution_pb2.SnapshotRequest],
        sent: distribution_pb2.DoorStatus,
    ) -> None:
        """Report the door when it changes: a request with no nonce, which the control
        plane takes as news about this router, never as an ACK (xDS: a stale nonce)."""
        last = sent
        while True:
            await asyncio.sleep(self.door_interval_s)
            door = self.door()
            if door != last and self.connected:
                outbox.put_nowait(
                    distribution_pb2.SnapshotRequest(
                        node=self.node, version_info=self.version, door=door
                    )
                )
                last = door

    async def _apply(
        self, resp: distribution_pb2.SnapshotResponse
    ) -> distribution_pb2.SnapshotRequest:
        try:
            if resp.snapshot.version != resp.version_info:
                raise SnapshotError(
                    f"version_info {resp.version_info!r} differs from snapshot.version "
                    f"{resp.snapshot.version!r}"
                )
            # In a worker thread: building reads key files (table.KeyAccess), never on
            # the loop that serves requests.
            table = await asyncio.to_thread(build_table, resp.snapshot)
        except SnapshotError as e:
            self.nacks += 1
            self.last_nack = f"{resp.version_info}: {e}"
            event(
                log,
                "nack",
                logging.ERROR,
                version=resp.version_info,
                error=str(e),
                serving=self.version or "-",
            )
            return distribution_pb2.SnapshotRequest(
                node=self.node,
                version_info=self.version,
                response_nonce=resp.nonce,
                error_detail=distribution_pb2.ErrorDetail(code=3, message=str(e)),
                door=self.door(),
            )
        self.on_table(table)
        self.version = table.version
        self.acks += 1
        event(log, "ack", version=table.version)
        return distribution_pb2.SnapshotRequest(
            node=self.node, version_info=self.version, response_nonce=resp.nonce, door=self.door()
        )


class OutcomeReporter:
    """Batches outcomes to the control plane; bounded, never blocking a request."""

    def __init__(
        self,
        ch: grpc.aio.Channel,
        node: distribution_pb2.Node,
        max_buffer: int = 50_000,
        batch_size: int = 500,
        interval_s: float = 0.25,
        metadata: Callable[[], Metadata] = no_metadata,
    ) -> None:
        self._stub = distribution_pb2_grpc.PolicyDistributionStub(ch)
        self._metadata = metadata
        self.node = node
        self._buffer: collections.deque[distribution_pb2.Outcome] = collections.deque(
            maxlen=max_buffer
        )
        # Verified feedback (router.feedback), sent with the next batch; bounded the same way.
        self._feedback: collections.deque[distribution_pb2.Feedback] = collections.deque(
            maxlen=max_buffer
        )
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.recorded = 0
        self.sent = 0
        self._wake = asyncio.Event()
        # Set by flush(): send what is buffered, end the call cleanly, stop.
        self._closing = False
        # The engine's endpoint-health view, sent along with every batch.
        self.endpoints: Callable[[], list[distribution_pb2.EndpointHealth]] = list
        # The engine's per-(model, intent) window (sketches), drained into each batch.
        self.stats: Callable[[], list[distribution_pb2.ModelStats]] = list

    @property
    def dropped(self) -> int:
        return self.recorded - self.sent - len(self._buffer)

    def record(self, outcome: distribution_pb2.Outcome) -> None:
        self.recorded += 1
        self._buffer.append(outcome)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    def feedback(self, fb: distribution_pb2.Feedback) -> None:
        self._feedback.append(fb)
        self._wake.set()

    async def run(self) -> None:
        while not self._closing:
            try:
                await self._stream()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as e:
                event(log, "outcome_stream_ended", logging.WARNING, code=e.code().name)
            except Exception:
                log.exception("outcome_stream_failed")
            if not self._closing:
                await asyncio.sleep(0.2)

    async def flush(self, task: asyncio.Task[None], timeout_s: float = 2.0) -> None:
        """A stopping router's last outcomes (its last charges): send what is buffered,
        half-close the call and wait for the control plane's answer, for at most
        ``timeout_s``; ``task`` is the one running :meth:`run`."""
        self._closing = True
        self._wake.set()
        with contextlib.suppress(Exception):  # too slow, or failed (logged): stop anyway
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        if self._buffer:
            event(log, "outcomes_unsent_at_stop", logging.WARNING, outcomes=len(self._buffer))

    async def _stream(self) -> None:
        """One ``ReportOutcomes`` call, written batch by batch until it fails.

        Explicit writes, not a request iterator: grpc keeps pulling from the iterator
        of a call that already ended (the control plane went away), so the first
        batch after a restart would vanish into the dead call. A write to a call that
        ended raises instead, and that batch goes back to the front of the buffer
        for the next call (a batch sent twice is counted once by the spend ledger,
        whose charges carry their ids).
        """
        call = self._stub.ReportOutcomes(wait_for_ready=True, metadata=self._metadata())
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            if call.done():
                await call  # raises the status it ended with
                return
            closing = self._closing
            while self._buffer or self._feedback:
                batch = self._next_batch()
                try:
                    await call.write(batch)
                except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                    self._requeue(batch)
                    await call
                    return
                self.sent += len(batch.outcomes)
            if closing:  # everything buffered before the flush is written
                await call.done_writing()
                await call
                return

    def _next_batch(self) -> distribution_pb2.OutcomeBatch:
        n = min(self.batch_size, len(self._buffer))
        items = [self._buffer.popleft() for _ in range(n)]
        k = min(self.batch_size, len(self._feedback))
        fb = [self._feedback.popleft() for _ in range(k)]
        return distribution_pb2.OutcomeBatch(
            node=self.node,
            outcomes=items,
            endpoints=self.endpoints(),
            stats=self.stats(),
            feedback=fb,
        )

    def _requeue(self, batch: distribution_pb2.OutcomeBatch) -> None:
        """A batch that was not written goes back first (a full buffer drops its newest)."""
        self._buffer.extendleft(reversed(batch.outcomes))
        self._feedback.extendleft(reversed(batch.feedback))
