"""A router process: distribution client, engine, and both front doors.

``skyroute router --control HOST:PORT --grpc HOST:PORT --http HOST:PORT
--admin-listen HOST:PORT`` starts serving at once: ``/healthz`` answers
immediately, ``/readyz`` and the APIs answer 503 until the first snapshot is
loaded (and gRPC health reports ``skyroute.v1.Router`` NOT_SERVING until then,
see :mod:`skyroute.link`). From then on the router
serves from its last known good snapshot whatever happens to the control
plane, and swaps in each new version as it is ACKed. SIGTERM drains it
(:mod:`.drain`): no request in flight is lost.

One shared aiohttp client session (keep-alive connection pool) serves every
upstream call; uvloop runs the event loop where it is installed.

Once listening, start-up objects are frozen out of the garbage collector's
sight and its youngest generation collects less often (:func:`_tune_gc`).

Telemetry (:mod:`.telemetry`) is configured here, before the engine exists:
``GET /metrics`` on the admin listener (``--admin-listen``, loopback by
default, never the client port; with ``/debug/status``), OTLP export when the standard
``OTEL_EXPORTER_OTLP_*`` variables name an endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import uuid

import aiohttp
import grpc
from aiohttp import web

from skyroute.link import DOOR_MAX_BYTES, Health, server_options
from skyroute.router import logs
from skyroute.router.cache import from_settings
from skyroute.router.drain import DRAIN_DEFAULTS, DrainSettings, drain
from skyroute.router.engine import Engine
from skyroute.router.idempotency import RedisStore
from skyroute.router.ingress.guards.door import OPEN_WARNING, Door
from skyroute.router.ingress.guards.kube_access import in_cluster
from skyroute.router.ingress.guards.limits_guard import Limiter
from skyroute.router.ingress.guards.limits_redis import RedisLimitStore
from skyroute.router.ingress.guards.sa_tokens import ServiceAccountVerifier
from skyroute.router.response_store import DEFAULT_TTL_S, MemoryResponses, RedisResponses
from skyroute.router.state import RouterState
from skyroute.router.sync import (
    LinkTls,
    OutcomeReporter,
    SnapshotSubscriber,
    channel,
    no_metadata,
)
from skyroute.router.table import RoutingTable
from skyroute.router.telemetry import configure, shutdown
from skyroute.router.transports.grpc import RouterService
from skyroute.router.transports.http import (
    build_admin_app,
    build_app,
    mount_worker_invalidation,
)
from skyroute.router.transports.http_protocol import Runner
from skyroute.router.worker_metrics import WorkerMetrics
from skyroute.v1 import distribution_pb2, router_pb2, router_pb2_grpc

log = logging.getLogger("skyroute.router")


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"skyroute router: address {addr!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


async def serve(
    control: str,
    grpc_addr: str,
    http_addr: str,
    node_id: str | None,
    max_inflight: int = 512,
    redis_url: str | None = None,
    cache_redis: str | None = None,
    cache_embedder: str = "hashing",
    reuse_port: bool = False,
    worker_index: int = 0,
    worker_peers: tuple[str, ...] = (),
    drain_settings: DrainSettings = DRAIN_DEFAULTS,
    allow_anonymous: bool = False,
    limits_local_share: float = 1.0,
    control_tls: LinkTls | None = None,
    open_without_tenants: bool = False,
    admin_addr: str = "",
    responses_ttl_s: float = DEFAULT_TTL_S,
    body_timeout_s: float = 30.0,
    max_sending: int = 1024,
    header_timeout_s: float = 30.0,
    admin_token: str | None = None,
) -> None:
    prefix = control_tls.name if control_tls is not None else socket.gethostname()
    node = distribution_pb2.Node(
        id=node_id or f"{prefix}-{uuid.uuid4().hex[:6]}",
        hostname=socket.gethostname(),
        grpc_address=grpc_addr,
        http_address=http_addr,
    )
    configure()
    ch = channel(control, control_tls)
    if control_tls is None:
        logs.event(log, "control_plaintext", logging.WARNING, control=control)
    metadata = control_tls.metadata if control_tls is not None else no_metadata
    reporter = OutcomeReporter(ch, node, metadata=metadata)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent",),
    )
    # The response cache: in-process, or shared by every router through Redis.
    engine = Engine(session, reporter.record, from_settings(cache_redis, cache_embedder))
    reporter.endpoints = engine.health.report
    reporter.stats = engine.stats.drain
    state = RouterState(
        node=node,
        engine=engine,
        max_inflight=max_inflight,
        body_timeout_s=body_timeout_s,
        max_sending=max_sending,
        admin_token=admin_token,
    )
    # Idempotency keys and stored responses: shared by every replica through Redis.
    if redis_url:
        state.idempotency = RedisStore(redis_url)
        state.responses = RedisResponses(redis_url, responses_ttl_s)
    else:
        state.responses = MemoryResponses(responses_ttl_s)
        if worker_peers:  # --workers N: each worker's memory is its own
            logs.event(
                log,
                "responses_per_worker",
                logging.WARNING,
                note="stored responses are kept in each worker's memory: a GET or "
                "previous_response_id reaching another worker finds nothing; use --redis",
            )
    state.door = build_door(redis_url, allow_anonymous, limits_local_share, open_without_tenants)
    state.feedback.forward = reporter.feedback  # verified feedback rides the outcome stream
    # SO_REUSEPORT only for --workers (see workers.py): otherwise a taken port is an error.
    server = grpc.aio.server(options=server_options(DOOR_MAX_BYTES, reuse_port=reuse_port))
    router_pb2_grpc.add_RouterServicer_to_server(RouterService(state), server)
    # skyroute.v1.Router is SERVING exactly while /readyz is 200: a snapshot is loaded.
    health = Health(server, [router_pb2.DESCRIPTOR.services_by_name["Router"].full_name])
    await health.start(ready=False)
    loop = asyncio.get_running_loop()

    def on_table(table: RoutingTable) -> None:
        first = state.table is None
        state.set_table(table)
        if first:
            health.set_ready(True)

    subscriber = SnapshotSubscriber(ch, node, on_table, metadata)
    subscriber.door = lambda: state.door.report()
    observe_process(state, subscriber, reporter)
    state.status_hook = lambda: {
        "control_connected": subscriber.connected,
        "acks": subscriber.acks,
        "nacks": subscriber.nacks,
        "last_nack": subscriber.last_nack,
        "outcomes_recorded": reporter.recorded,
        "outcomes_sent": reporter.sent,
        "outcomes_dropped": reporter.dropped,
        "cache": engine.cache.stats(),
        "door": state.door.status(),
        "feedback": {"accepted": state.feedback.accepted, "refused": state.feedback.refused},
        "responses": state.responses.stats(),
    }

    workers = (
        WorkerMetrics(worker_index, list(worker_peers), mount_worker_invalidation(state))
        if worker_peers
        else None
    )
    if workers is not None:  # one of --workers N: /metrics answers for all of them
        await workers.start()
        state.exposition = workers.exposition
        state.siblings, state.workers = workers.fan_out, len(worker_peers)
    if server.add_insecure_port(grpc_addr) == 0:
        raise SystemExit(f"skyroute router: cannot listen for gRPC on {grpc_addr}")
    await server.start()
    # Malformed HTTP answered as JSON, and a deadline for the request head (http_protocol).
    runner = Runner(build_app(state), header_timeout_s, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    host, port = _split(http_addr)
    await web.TCPSite(runner, host, port, backlog=1024, reuse_port=reuse_port or None).start()
    admin = web.AppRunner(build_admin_app(state), access_log=None, shutdown_timeout=1.0)
    await admin.setup()
    if admin_addr:  # operators' endpoints on their own port, never the client's
        ahost, aport = _split(admin_addr)
        await web.TCPSite(admin, ahost, aport, reuse_port=reuse_port or None).start()
    logs.event(
        log,
        "listening",
        node=node.id,
        grpc=grpc_addr,
        http=http_addr,
        admin=admin_addr,
        control=control,
    )
    _tune_gc()

    tasks = [
        asyncio.create_task(subscriber.run()),
        asyncio.create_task(reporter.run()),
    ]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logs.event(
        log, "draining", node=node.id, inflight=state.inflight, delay_s=drain_settings.delay_s
    )
    grace = await drain(drain_settings, state, health, server, runner)
    logs.event(log, "stopping", node=node.id, grace_s=grace, inflight=state.inflight)
    await admin.cleanup()
    if workers is not None:
        await workers.close()
    # The requests drain let finish may still be settling their limits in Redis, and
    # have outcomes (charges) buffered: finish both.
    left = await state.door.settled()
    if left:
        logs.event(log, "limits_unsettled_at_stop", logging.WARNING, settlements=left)
    await reporter.flush(tasks[1])
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    await engine.cache.close()
    await session.close()
    await ch.close()
    shutdown()


def _tune_gc() -> None:
    """Fewer, cheaper collections: what start-up allocated (modules, servers, the
    engine) lives as long as the process and is frozen out of the collector's
    sight, and the youngest generation collects after 25,000 allocations instead
    of 700 (a request allocates a few hundred short-lived objects, freed by
    reference counting, not by the collector)."""
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(25_000, g1, g2)


def observe_process(
    state: RouterState, subscriber: SnapshotSubscriber, reporter: OutcomeReporter
) -> None:
    """Counters kept as plain integers elsewhere, read only when metrics are collected."""
    engine, m = state.engine, state.engine.metrics
    m.observe(
        "skyroute.router.ejections",
        "Endpoint ejections by outlier detection",
        lambda: engine.health.ejected_total,
    )
    m.observe(
        "skyroute.router.retry_budget.denied",
        "Retries refused by the retry budget",
        lambda: engine.budget.denied,
    )
    m.observe(
        "skyroute.router.shed", "Requests shed at the door (429, at capacity)", lambda: state.shed
    )
    m.observe(
        "skyroute.router.internal_errors",
        "Requests a router bug failed (a JSON 500 in the door's error format, logged)",
        lambda: state.internal_errors,
    )
    m.observe("skyroute.router.hedges", "Hedged second attempts launched", lambda: engine.hedges)
    m.observe(
        "skyroute.router.outcomes.dropped",
        "Outcomes dropped before reaching the control plane",
        lambda: reporter.dropped,
    )
    m.observe_gauge(
        "skyroute.router.inflight", "Requests in flight", lambda: [(state.inflight, {})]
    )
    m.observe_counts(
        "skyroute.router.door.refused",
        "Requests the door refused, by reason (unauthenticated, forbidden, rate_limited, ...)",
        lambda: [(n, {"skyroute.reason": r}) for r, n in list(state.door.refused.items())],
    )
    m.observe_counts(
        "skyroute.router.limits.shadow_denied",
        "Requests a shadow limit would have refused (counted, not enforced)",
        lambda: [
            (n, {"skyroute.tenant": t, "skyroute.limit.scope": sc, "skyroute.limit.metric": mt})
            for (t, sc, mt), n in list(state.door.shadow_denied.items())
        ],
    )
    m.observe_gauge(
        "skyroute.router.limits.redis_up",
        "1 while the limits' Redis answers, 0 after a failed call (absent without --redis)",
        lambda: (
            []
            if state.door.limiter.redis is None
            else [(int(state.door.limiter.redis_down_since is None), {})]
        ),
    )
    m.observe_gauge(
        "skyroute.router.control.connected",
        "1 while the control-plane stream is up, by snapshot version",
        lambda: [
            (
                int(subscriber.connected),
                {"skyroute.snapshot_version": state.table.version if state.table else ""},
            )
        ],
    )


def build_door(
    redis_url: str | None, allow_anonymous: bool, local_share: float, open_without_tenants: bool
) -> Door:
    """The door stage: limits in Redis with --redis (else in process), ServiceAccount
    tokens verified in a pod (its API server's JWKS), anonymous callers only if asked
    (closed by default: with no Tenant, nobody gets in)."""
    limiter = Limiter(RedisLimitStore(redis_url) if redis_url else None, local_share)
    access = in_cluster()
    sa = ServiceAccountVerifier(access) if access is not None else None
    if allow_anonymous:
        logs.event(
            log,
            "anonymous_allowed",
            logging.WARNING,
            note="--allow-anonymous: requests without a key are admitted as anonymous, no "
            "limits; while no Tenant is configured the router is " + OPEN_WARNING,
        )
    elif open_without_tenants:
        logs.event(
            log,
            "open_without_tenants",
            logging.WARNING,
            note="--open-without-tenants: while no Tenant is configured the router is "
            + OPEN_WARNING
            + "; the first Tenant turns keys on",
        )
    return Door(limiter, sa, allow_anonymous, open_without_tenants)


def main(
    control: str,
    grpc: str,
    http: str,
    node_id: str | None,
    max_inflight: int = 512,
    redis_url: str | None = None,
    cache_redis: str | None = None,
    cache_embedder: str = "hashing",
    reuse_port: bool = False,
    worker_index: int = 0,
    worker_peers: tuple[str, ...] = (),
    drain_settings: DrainSettings = DRAIN_DEFAULTS,
    allow_anonymous: bool = False,
    limits_local_share: float = 1.0,
    control_tls: LinkTls | None = None,
    open_without_tenants: bool = False,
    admin: str = "",
    responses_ttl_s: float = DEFAULT_TTL_S,
    body_timeout_s: float = 30.0,
    max_sending: int = 1024,
    header_timeout_s: float = 30.0,
    admin_token: str | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then drain (the CLI has configured logging, see cli.logs)."""
    coro = serve(
        control,
        grpc,
        http,
        node_id,
        max_inflight,
        redis_url,
        cache_redis,
        cache_embedder,
        reuse_port,
        worker_index,
        worker_peers,
        drain_settings,
        allow_anonymous,
        limits_local_share,
        control_tls,
        open_without_tenants,
        admin,
        responses_ttl_s,
        body_timeout_s,
        max_sending,
        header_timeout_s,
        admin_token,
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro)
    else:
        uvloop.run(coro)
