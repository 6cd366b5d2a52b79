"""Which router holds which version: the xDS state machine, per router.

This module is the state-of-the-world protocol without the transport, so the
rules can be read (and tested) in one place:

* First request: the router says who it is (``Node``) and which version it
  already serves (``version_info``, empty on a fresh start). If that is the
  current version, it is SYNCED and nothing is sent: a restarted control
  plane recomputes the same content hash and so causes no push at all.
  Otherwise the current snapshot is sent (``needs`` says so).
* Every response carries a fresh nonce. A request echoing that nonce answers
  it: without ``error_detail`` it is an ACK (SYNCED at ``version_info``), with
  it a NACK (STALE, ``last_nack`` kept, the router still serves its last good
  version, which is what it reports in ``version_info``). A request echoing
  an older nonce answers a response that has been superseded and is ignored.
* On every change of the current version, each connected router that was not
  already sent it, and does not already serve it, gets it.

States follow Istio's proxy-status: SYNCED (ACKed the last push), STALE
(pushed and not ACKed, or NACKed), NOT_SENT (connected, nothing sent yet, for
instance because no good snapshot exists), DISCONNECTED (stream gone; listed
for ``disconnected_ttl_s`` so that an operator sees a router vanish instead
of never learning it was there).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from skyroute.control.limits import MAX_ROUTERS, MAX_TEXT, clip
from skyroute.v1 import distribution_pb2

SyncState = distribution_pb2.SyncState
#: A door mode is one short word (closed, open, keys); anything longer is cut here.
MAX_DOOR_MODE = 16


class Answer(Enum):
    """How a router's follow-up request was understood."""

    ACK = "ack"
    NACK = "nack"
    STALE_NONCE = "stale-nonce"


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class RouterRecord:
    """What the control plane knows about one router (keyed by node id)."""

    node: distribution_pb2.Node
    stream: int
    state: int = distribution_pb2.SYNC_STATE_NOT_SENT
    acked_version: str = ""
    sent_version: str = ""
    nonce: str = ""
    last_nack: str = ""
    pushes: int = 0
    acks: int = 0
    nacks: int = 0
    connected_unix_ms: int = field(default_factory=_now_ms)
    last_seen_unix_ms: int = field(default_factory=_now_ms)
    disconnected_at: float | None = None
    # The router's last reported view of its upstream endpoints (outlier ejections).
    endpoints: list[distribution_pb2.EndpointHealth] = field(default_factory=list)
    # Who the stream authenticated as ("" in insecure mode).
    identity: str = ""
    # The router's door as its last request reported it (unset: not reported).
    door: distribution_pb2.DoorStatus | None = None

    @property
    def id(self) -> str:
        return self.node.id

    def hello(self, request: distribution_pb2.SnapshotRequest, current: str) -> None:
        """Apply the stream's first request; afterwards ``needs(current)`` says whether to send."""
        self.last_seen_unix_ms = _now_ms()
        self.acked_version = request.version_info
        self._door(request)
        if current and request.version_info == current:
            self.state = distribution_pb2.SYNC_STATE_SYNCED
        else:
            self.state = distribution_pb2.SYNC_STATE_NOT_SENT

    def needs(self, current: str) -> bool:
        """Whether ``current`` must be sent: not sent already, and not already served."""
        if not current or self.sent_version == current:
            return False
        return not (not self.sent_version and self.acked_version == current)

    def sent(self, version: str, nonce: str) -> None:
        self.sent_version = version
        self.nonce = nonce
        self.pushes += 1
        self.state = distribution_pb2.SYNC_STATE_STALE

    def answer(self, request: distribution_pb2.SnapshotRequest) -> Answer:
        """Apply a follow-up request (ACK, NACK, or one for a superseded nonce)."""
        self.last_seen_unix_ms = _now_ms()
        self._door(request)
        if not self.nonce or request.response_nonce != self.nonce:
            return Answer.STALE_NONCE
        self.acked_version = request.version_info
        if request.HasField("error_detail"):
            self.nacks += 1
            detail = (
                clip(request.error_detail.message, MAX_TEXT) or f"code {request.error_detail.code}"
            )
            # Prefixed with the rejected version, so a later push does not make it ambiguous.
            self.last_nack = f"{self.sent_version}: {detail}"
            self.state = distribution_pb2.SYNC_STATE_STALE
            return Answer.NACK
        self.acks += 1
        synced = request.version_info == self.sent_version
        self.state = (
            distribution_pb2.SYNC_STATE_SYNCED if synced else distribution_pb2.SYNC_STATE_STALE
        )
        return Answer.ACK

    def _door(self, request: distribution_pb2.SnapshotRequest) -> None:
        """Keep the door a request reports (its mode cut to a short word)."""
        if request.HasField("door"):
            door = distribution_pb2.DoorStatus()
            door.CopyFrom(request.door)
            door.mode = door.mode[:MAX_DOOR_MODE]
            door.limits = door.limits[:MAX_DOOR_MODE]
            self.door = door

    def to_status(self, outcomes: int) -> distribution_pb2.RouterStatus:
        return distribution_pb2.RouterStatus(
            node=self.node,
            state=self.state,  # type: ignore[arg-type]
            acked_version=self.acked_version,
            sent_version=self.sent_version,
            last_nack=self.last_nack,
            outcomes=outcomes,
            connected_unix_ms=self.connected_unix_ms,
            last_seen_unix_ms=self.last_seen_unix_ms,
            endpoints=self.endpoints,
            identity=self.identity,
            door=self.door,
        )


class RouterRegistry:
    """Every router seen recently, connected or not, by node id."""

    def __init__(
        self,
        disconnected_ttl_s: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = disconnected_ttl_s
        self._monotonic = monotonic
        self._records: dict[str, RouterRecord] = {}
        self._streams = itertools.count(1)

    def full(self, node_id: str) -> bool:
        """Whether a new router ``node_id`` would exceed ``MAX_ROUTERS`` listed ones."""
        if node_id in self._records or len(self._records) < MAX_ROUTERS:
            return False
        self.records()  # drop the expired ones, then look again
        return len(self._records) >= MAX_ROUTERS

    def connect(self, node: distribution_pb2.Node) -> RouterRecord:
        """A new stream from ``node``; replaces any earlier record with the same id."""
        record = RouterRecord(node=distribution_pb2.Node(), stream=next(self._streams))
        record.node.CopyFrom(node)
        self._records[node.id] = record
        return record

    def disconnect(self, record: RouterRecord) -> bool:
        """Mark the stream gone, unless a newer stream of the same router took over."""
        if self._records.get(record.id) is not record:
            return False
        record.state = distribution_pb2.SYNC_STATE_DISCONNECTED
        record.disconnected_at = self._monotonic()
        record.last_seen_unix_ms = _now_ms()
        return True

    def touch(
        self, node_id: str, endpoints: Sequence[distribution_pb2.EndpointHealth] = ()
    ) -> None:
        record = self._records.get(node_id)
        if record is not None:
            record.last_seen_unix_ms = _now_ms()
            if endpoints:
                record.endpoints = list(endpoints)

    def get(self, node_id: str) -> RouterRecord | None:
        return self._records.get(node_id)

    def records(self) -> list[RouterRecord]:
        """All listed routers by id, after dropping those disconnected for too long."""
        now = self._monotonic()
        expired = [
            key
            for key, r in self._records.items()
            if r.disconnected_at is not None and now - r.disconnected_at > self._ttl
        ]
        for key in expired:
            del self._records[key]
        return [self._records[k] for k in sorted(self._records)]

    def connected(self) -> list[RouterRecord]:
        return [r for r in self._records.values() if r.disconnected_at is None]
