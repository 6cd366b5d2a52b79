"""Graceful drain: what a router does between SIGTERM and its exit.

A rolling update must not fail one request. On SIGTERM the router

1. reports NOT_SERVING on ``grpc.health.v1`` and fails ``/readyz`` (load
   balancers, meshes and health-checking gRPC clients move away),
2. keeps accepting for ``delay_s`` while Endpoints and proxies catch up
   (Kubernetes' preStop hook covers kube-proxy before SIGTERM is even sent),
3. stops accepting on both doors, and lets every request, gRPC call and
   stream already in flight finish within the grace: ``grace_s`` or the
   longest request deadline of the policies it serves, whichever is longer
   (a request never legitimately runs past its deadline),
4. exits.

``terminationGracePeriodSeconds`` must cover preStop + delay + grace
(deploy/base/router.yaml spells the sum out).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from aiohttp import web

from skyroute.link import Health
from skyroute.router.state import RouterState


@dataclass(frozen=True, slots=True)
class DrainSettings:
    """``--drain-delay`` and ``--drain-grace`` (seconds)."""

    delay_s: float = 0.0
    grace_s: float = 30.0

    def grace_for(self, state: RouterState) -> float:
        """The grace: configured, or the longest request deadline served, if longer."""
        policies = state.table.policies.values() if state.table else ()
        longest = max((p.request_timeout_s for p in policies), default=0.0)
        return max(self.grace_s, longest + 1.0 if policies else 0.0)


DRAIN_DEFAULTS = DrainSettings()


async def drain(
    settings: DrainSettings,
    state: RouterState,
    health: Health,
    grpc_server: grpc.aio.Server,
    http: web.AppRunner,
) -> float:
    """Steps 1 to 3 above; returns the grace it allowed."""
    state.draining = True
    await health.drain()
    await asyncio.sleep(settings.delay_s)
    grace = settings.grace_for(state)
    for site in list(http.sites):
        await site.stop()  # the HTTP listener closes; connections in use go on
    # The gRPC server refuses new calls at once and would wait up to the grace for the
    # rest, health Watch streams included; once no request is in flight, it stops now.
    stopping = asyncio.create_task(grpc_server.stop(grace))
    await _idle(state, grace)
    await grpc_server.stop(None)
    await stopping
    await http.cleanup()
    return grace


async def _idle(state: RouterState, grace: float, poll_s: float = 0.05) -> None:
    """Until no request is in flight on either door, or the grace is over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while state.inflight > 0 and loop.time() < deadline:
        await asyncio.sleep(poll_s)
