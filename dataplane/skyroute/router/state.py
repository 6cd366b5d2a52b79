"""What one router process holds: its identity, its table, its parts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from skyroute.router.engine import Engine
from skyroute.router.feedback import FeedbackDesk
from skyroute.router.idempotency import IdempotencyStore, MemoryStore
from skyroute.router.ingress.guards.door import Door
from skyroute.router.response_store import MemoryResponses, ResponseStore
from skyroute.router.table import RoutingTable
from skyroute.router.telemetry import prometheus_text
from skyroute.v1 import distribution_pb2


async def _own_exposition() -> tuple[bytes, str]:
    return prometheus_text()


@dataclass(slots=True)
class RouterState:
    node: distribution_pb2.Node
    engine: Engine
    table: RoutingTable | None = None
    # Load shedding: beyond this many requests in flight, answer 429 at once.
    max_inflight: int = 512
    inflight: int = 0
    shed: int = 0
    # Requests a bug in a handler failed: answered 500 in the door's error format, logged.
    internal_errors: int = 0
    # Slow and large clients (transports/http.py): seconds a body may take once the headers
    # are in (then a 408), and how many requests may be still sending one (then a 429).
    body_timeout_s: float = 30.0
    max_sending: int = 1024
    sending: int = 0
    # Set on SIGTERM (drain.py): /readyz fails and gRPC health says NOT_SERVING.
    draining: bool = False
    idempotency: IdempotencyStore = field(default_factory=MemoryStore)
    # Identity and limits at the door (tenants and keys follow every table).
    door: Door = field(default_factory=Door)
    # Live facts from the distribution client for /debug/status, set by the server.
    status_hook: Callable[[], dict[str, object]] | None = None
    # GET /metrics: this process's instruments, or every worker's (see worker_metrics).
    exposition: Callable[[], Awaitable[tuple[bytes, str]]] = _own_exposition
    # Feedback ids on answers, feedback verified and forwarded (router.feedback).
    feedback: FeedbackDesk = field(default_factory=FeedbackDesk)
    # Stored responses (the Responses API's store), in process or shared through Redis.
    responses: ResponseStore = field(default_factory=MemoryResponses)
    # The bearer token admin writes on the admin listener need (--admin-token-file);
    # None: only loopback peers may write.
    admin_token: str | None = None
    # --workers N: forwards an invalidation (body, Authorization) to the sibling workers,
    # answering (entries they removed, siblings that did not confirm); None: one process.
    siblings: Callable[[bytes, str], Awaitable[tuple[int, int]]] | None = None
    workers: int = 1  # processes of this router (--workers)

    def admit(self) -> bool:
        """Take a slot for a request, or say no (the caller answers 429 at once)."""
        if self.inflight >= self.max_inflight:
            self.shed += 1
            return False
        self.inflight += 1
        return True

    def done(self) -> None:
        self.inflight -= 1

    def set_table(self, table: RoutingTable) -> None:
        # One reference swap: requests already running keep the table they started with.
        self.table = table
        self.door.use(table.tenants, table.keys)
