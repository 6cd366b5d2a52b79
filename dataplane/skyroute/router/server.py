"""A router process: distribution client, engine, and both front doors.

``skyroute router --control HOST:PORT --grpc HOST:PORT --http HOST:PORT``
starts serving at once: ``/healthz`` answers immediately, ``/readyz`` and the
APIs answer 503 until the first snapshot is loaded. From then on the router
serves from its last known good snapshot whatever happens to the control
plane, and swaps in each new version as it is ACKed.

One shared aiohttp client session (keep-alive connection pool) serves every
upstream call; uvloop runs the event loop where it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid

import aiohttp
import grpc
from aiohttp import web
from skyroute.router.cache import from_settings
from skyroute.router.engine import Engine
from skyroute.router.grpc_api import RouterService
from skyroute.router.http_api import build_app
from skyroute.router.idempotency import RedisStore
from skyroute.router.state import RouterState
from skyroute.router.sync import OutcomeReporter, SnapshotSubscriber, channel
from skyroute.v1 import distribution_pb2, router_pb2_grpc

log = logging.getLogger("skyroute.router")


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"skyroute router: address {addr!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


async def serve(control: str, grpc_addr: str, http_addr: str, node_id: str | None,
                max_inflight: int = 512, redis_url: str | None = None,
                cache_redis: str | None = None, cache_embedder: str = "hashing") -> None:
    node = distribution_pb2.Node(
        id=node_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}",
        hostname=socket.gethostname(),
        grpc_address=grpc_addr,
        http_address=http_addr,
    )
    ch = channel(control)
    reporter = OutcomeReporter(ch, node)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent",),
    )
    # The response cache: in-process, or shared by every router through Redis.
    engine = Engine(session, reporter.record, from_settings(cache_redis, cache_embedder))
    reporter.endpoints = engine.health.report
    reporter.stats = engine.stats.drain
    state = RouterState(node=node, engine=engine, max_inflight=max_inflight)
    if redis_url:
        state.idempotency = RedisStore(redis_url)
    subscriber = SnapshotSubscriber(ch, node, state.set_table)
    state.status_hook = lambda: {
        "control_connected": subscriber.connected,
        "acks": subscriber.acks,
        "nacks": subscriber.nacks,
        "last_nack": subscriber.last_nack,
        "outcomes_recorded": reporter.recorded,
        "outcomes_sent": reporter.sent,
        "outcomes_dropped": reporter.dropped,
        "cache": engine.cache.stats(),
    }

    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(RouterService(state), server)
    if server.add_insecure_port(grpc_addr) == 0:
        raise SystemExit(f"skyroute router: cannot listen for gRPC on {grpc_addr}")
    await server.start()
    runner = web.AppRunner(build_app(state), access_log=None)
    await runner.setup()
    host, port = _split(http_addr)
    await web.TCPSite(runner, host, port, backlog=1024).start()
    log.info("router %s: gRPC %s, HTTP %s, control %s", node.id, grpc_addr, http_addr, control)

    tasks = [asyncio.create_task(subscriber.run()), asyncio.create_task(reporter.run())]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("router %s: shutting down", node.id)
    await server.stop(grace=2)
    await runner.cleanup()
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    await engine.cache.close()
    await session.close()
    await ch.close()


def main(control: str, grpc: str, http: str, node_id: str | None, max_inflight: int = 512,
         redis_url: str | None = None, cache_redis: str | None = None,
         cache_embedder: str = "hashing") -> None:
    logging.basicConfig(
        level=os.environ.get("SKYROUTE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    coro = serve(control, grpc, http, node_id, max_inflight, redis_url, cache_redis,
                 cache_embedder)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro)
    else:
        uvloop.run(coro)
