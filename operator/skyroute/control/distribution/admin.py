"""The control plane's admin HTTP endpoints, for people and probes.

``/healthz`` is a liveness probe: it answers while the process serves, even
before the first good compile (a control plane with a broken folder is alive
and must not be restarted in a loop; its routers keep their last snapshot).
It says so, though: ``source`` holds since when the source has been broken
and why, and ``tasks`` each background task's record; a task that keeps
failing (``supervise.py``) makes it answer 503 ``failing``. No endpoint
answers a bare 500: an unexpected error is a JSON 503 naming the path.
``/debug/status`` is ``ControlStatus`` as JSON, the same data as ``skyroute
status``, in the spirit of ``istioctl proxy-status`` (router states as
``SYNCED``/``STALE``/``NOT_SENT``/``DISCONNECTED``, counters as numbers). ``/debug/snapshot`` is the
serving snapshot as JSON, so an operator can see exactly what routers got
(it holds no secrets: API keys are references). ``/debug/outcomes`` has the
per pool and model figures that ``ControlStatus`` has no room for.
``/debug/learning`` is the learning loop: fleet figures per model and per
(model, intent), the priors last pushed, baselines and drift alerts.
``/debug/rollouts`` is every policy's rollout state and version history
(what ``status.rollout`` and ``status.history`` say on a cluster), and
``/debug/rollouts/<namespace>/<name>/versions/<version>`` the recorded
RoutingPolicy of one version (pin it with ``spec.pinVersion``, or diff it
with ``skyroute policy diff``); ``POST /rollouts/<namespace>/<name>/promote``
(or ``/abort``) acts on a rollout in progress, which is what ``skyroute
policy promote/abort --admin`` calls.
Reads and writes are separate: every GET is a read, open to whoever reaches
the port (probes and dashboards; the NetworkPolicy narrows who does), and
the one write, ``POST /rollouts/...``, needs ``Authorization: Bearer
<admin token>`` whenever a token is configured (``--tls-dir`` always has
one, ``--admin-token-file`` sets one): 401 without it, 403 with a wrong one.
``GET /outcomes?since=UNIX_MS`` (behind the token too) is the capped ring of
recent outcomes joined with their feedback (``skyroute outcomes export``).
``GET /spend?tenant=NAME&since=UNIX_MS`` is the spend ledger (what
``skyroute spend`` prints); it is the one read behind the admin token, like
the writes, because a tenant's spend is business data.
The operator passes an ``authorize`` hook instead (``kube/linkauth.py``), which
both go through: the bearer is the caller's Kubernetes token, checked by
TokenReview and a SubjectAccessReview (``update`` on ``routingpolicies/rollout``
for a write, ``get`` on ``tenants/spend`` for the ledger).
With ``ssl_context`` the port is HTTPS.
``/metrics`` is the Prometheus exposition of the control plane's OpenTelemetry
instruments (see :mod:`.telemetry`).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from skyroute.admintoken import token_ok
from skyroute.control.learning.outcomes import OutcomeAggregator
from skyroute.control.learning.recent import MAX_EXPORT, RecentOutcomes
from skyroute.control.limits import MAX_NAME
from skyroute.control.policy.store import SnapshotStore
from skyroute.control.rollout.controller import RolloutController
from skyroute.control.spend.views import GROUPINGS
from skyroute.control.telemetry import prometheus_text
from skyroute.v1 import distribution_pb2

log = logging.getLogger("skyroute.control.admin")
Health = Callable[[], tuple[bool, dict[str, object]]]
# (tenant, since unix ms, grouping) -> the ledger's answer (spend.views.query).
SpendQuery = Callable[[str, int, str], dict[str, object]]
# (Authorization header, namespace, name, action) -> None, or (401|403, why).
Authorize = Callable[[str, str, str, str], Awaitable[tuple[int, str] | None]]


def message_to_dict(message: Message) -> dict[str, object]:
    """Proto field names, defaults included, enums as names: stable JSON for humans and tests."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def state_name(state: int) -> str:
    """``SYNC_STATE_SYNCED`` -> ``SYNCED``: the words istioctl proxy-status uses."""
    return distribution_pb2.SyncState.Name(state).removeprefix("SYNC_STATE_")  # type: ignore[arg-type]


def status_to_dict(status: distribution_pb2.ControlStatus) -> dict[str, object]:
    """ControlStatus as JSON data, router states as short names (SYNCED, STALE, ...).

    64-bit counters are numbers here, not the strings of the proto3 JSON mapping:
    this JSON is read by people and scripts, not parsed back into protobuf.
    """
    data = message_to_dict(status)
    data["outcomes_total"] = status.outcomes_total
    data["outcomes_by_pool"] = [
        {"key": c.key, "requests": c.requests} for c in status.outcomes_by_pool
    ]
    data["spend"] = [
        {
            "tenant": t.tenant,
            "usd": t.usd,
            "period": t.period,
            "budget_left_usd": t.budget_left_usd if t.HasField("budget_left_usd") else None,
            "total_usd": t.total_usd,
            "requests": t.requests,
        }
        for t in status.spend
    ]
    routers = data.get("routers")
    if isinstance(routers, list):
        for entry, router in zip(routers, status.routers, strict=True):
            entry["state"] = state_name(router.state)
            entry["outcomes"] = router.outcomes
            entry["connected_unix_ms"] = router.connected_unix_ms
            entry["last_seen_unix_ms"] = router.last_seen_unix_ms
    return data


@web.middleware
async def _no_bare_500(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """An unexpected error is logged and answered as JSON 503, never aiohttp's bare 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("admin %s failed", request.path)
        return _json({"error": f"{request.path} failed: {exc!r}"}, status=503)


def _json(data: object, status: int = 200) -> web.Response:
    body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    return web.Response(body=body + b"\n", status=status, content_type="application/json")


def _token_check(expected: str) -> Authorize:
    """The folder mode's check: the admin token, compared in constant time."""

    async def check(header: str, namespace: str, name: str, action: str) -> tuple[int, str] | None:
        if token_ok(expected, header):
            return None
        if not header:
            return 401, "admin writes need Authorization: Bearer <token>"
        return 403, "the admin token is not valid"

    return check


class AdminServer:
    """aiohttp app on ``host:port`` (port 0 picks a free one; see ``port`` after start)."""

    def __init__(
        self,
        address: str,
        store: SnapshotStore,
        status: Callable[[], distribution_pb2.ControlStatus],
        outcomes: OutcomeAggregator,
        learning: Callable[[], dict[str, object]] | None = None,
        rollouts: RolloutController | None = None,
        rollout_action: Callable[[str, str, str], Awaitable[tuple[bool, str]]] | None = None,
        health: Health | None = None,
        spend: SpendQuery | None = None,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        authorize: Authorize | None = None,
        recent: RecentOutcomes | None = None,
    ) -> None:
        self.host, _, port = address.rpartition(":")
        self.host = self.host.strip("[]") or "127.0.0.1"
        self._requested_port = int(port)
        self.port = 0
        self._store = store
        self._status = status
        self._outcomes = outcomes
        self._learning = learning
        self._rollouts = rollouts
        self._rollout_action = rollout_action
        self._health = health
        self._spend = spend
        self._authorize = authorize or (_token_check(token) if token is not None else None)
        self._ssl = ssl_context
        self._recent = recent
        self.writes_refused = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_no_bare_500])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/debug/status", self._debug_status)
        app.router.add_get("/debug/snapshot", self._debug_snapshot)
        app.router.add_get("/debug/outcomes", self._debug_outcomes)
        app.router.add_get("/debug/learning", self._debug_learning)
        app.router.add_get("/debug/rollouts", self._debug_rollouts)
        app.router.add_get(
            "/debug/rollouts/{namespace}/{name}/versions/{version}", self._debug_version
        )
        app.router.add_post("/rollouts/{namespace}/{name}/{action}", self._rollout_post)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/spend", self._get_spend)
        app.router.add_get("/outcomes", self._get_outcomes)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port, ssl_context=self._ssl)
        await site.start()
        server = site._server  # aiohttp exposes the bound socket only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._requested_port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        body: dict[str, object] = {"status": "ok", "version": self._store.version}
        if self._store.broken_since_unix_ms:
            body["source"] = {
                "broken_since_unix_ms": self._store.broken_since_unix_ms,
                "last_error": self._store.last_error,
            }
        failing = False
        if self._health is not None:
            failing, tasks = self._health()
            body["tasks"] = tasks
        if failing:
            body["status"] = "failing"
        return _json(body, status=503 if failing else 200)

    async def _debug_status(self, request: web.Request) -> web.Response:
        return _json(status_to_dict(self._status()))

    async def _debug_snapshot(self, request: web.Request) -> web.Response:
        snapshot = self._store.snapshot
        if snapshot is None:
            return _json(
                {"error": "no snapshot compiled yet", "last_error": self._store.last_error},
                status=503,
            )
        return _json(message_to_dict(snapshot))

    async def _debug_outcomes(self, request: web.Request) -> web.Response:
        return _json(self._outcomes.as_dict())

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = prometheus_text()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _debug_learning(self, request: web.Request) -> web.Response:
        if self._learning is None:
            return _json({"error": "no learning loop in this process"}, status=404)
        return _json(self._learning())

    async def _debug_rollouts(self, request: web.Request) -> web.Response:
        if self._rollouts is None:
            return _json({"error": "no rollouts in this process"}, status=404)
        out: dict[str, object] = {}
        for ref in sorted(self._rollouts.states):
            found = self._rollouts.status(ref)
            if found is not None:
                out[f"{ref[0]}/{ref[1]}"] = {"rollout": found[0], "history": found[1]}
        return _json(out)

    async def _debug_version(self, request: web.Request) -> web.Response:
        if self._rollouts is None:
            return _json({"error": "no rollouts in this process"}, status=404)
        ns, name = request.match_info["namespace"], request.match_info["name"]
        version = request.match_info["version"]
        spec = self._rollouts.spec_of((ns, name), version)
        if spec is None:
            return _json(
                {"error": f"version {version} of {ns}/{name} is not recorded in this process"},
                status=404,
            )
        return _json(orjson.loads(spec))

    async def _refuse_write(
        self, request: web.Request, action: str = "", name: str = ""
    ) -> web.Response | None:
        """401/403 unless the call is authorised (when anything is configured)."""
        if self._authorize is None:
            return None
        m = request.match_info
        found = await self._authorize(
            request.headers.get("Authorization", ""),
            m.get("namespace", ""),
            name or m.get("name", ""),
            action or m.get("action", ""),
        )
        if found is None:
            return None
        self.writes_refused += 1
        return _json({"error": found[1]}, status=found[0])

    async def _get_spend(self, request: web.Request) -> web.Response:
        """``GET /spend?tenant=NAME[&since=UNIX_MS][&by=model|key|key,model]``: the ledger.

        Per-tenant spend is business data, so unlike the other reads it needs the
        admin token whenever one is configured (401 without, 403 with a wrong one).
        """
        refused = await self._refuse_write(request, "spend", request.query.get("tenant", ""))
        if refused is not None:
            return refused
        if self._spend is None:
            return _json({"error": "no spend ledger in this process"}, status=404)
        q = request.query
        tenant, by = q.get("tenant", ""), q.get("by", "model")
        if not tenant or len(tenant) > MAX_NAME:
            return _json({"error": f"tenant: a name of 1 to {MAX_NAME} characters"}, status=400)
        if by not in GROUPINGS:
            return _json({"error": f"by: one of {', '.join(GROUPINGS)}"}, status=400)
        since = q.get("since", "0")
        if not since.isdigit() or len(since) > 15:
            return _json({"error": "since: unix milliseconds (digits)"}, status=400)
        return _json(self._spend(tenant, int(since), by))

    async def _get_outcomes(self, request: web.Request) -> web.Response:
        """``GET /outcomes[?since=UNIX_MS][&limit=N]``: recent outcomes joined with feedback.

        From the capped in-memory ring (``learning.recent``), oldest first; behind the
        admin token like ``/spend`` (tenants' traffic is business data).
        """
        refused = await self._refuse_write(request, "outcomes")
        if refused is not None:
            return refused
        if self._recent is None:
            return _json({"error": "no outcome ring in this process"}, status=404)
        since, limit = request.query.get("since", "0"), request.query.get("limit", str(MAX_EXPORT))
        if not since.isdigit() or len(since) > 15:
            return _json({"error": "since: unix milliseconds (digits)"}, status=400)
        if not limit.isdigit() or not 0 < int(limit) <= MAX_EXPORT:
            return _json({"error": f"limit: 1 to {MAX_EXPORT}"}, status=400)
        rows = self._recent.export(int(since), int(limit))
        return _json({**self._recent.summary(), "since_unix_ms": int(since), "outcomes": rows})

    async def _rollout_post(self, request: web.Request) -> web.Response:
        refused = await self._refuse_write(request)
        if refused is not None:
            return refused
        if self._rollout_action is None:
            return _json({"error": "no rollouts in this process"}, status=404)
        ns, name = request.match_info["namespace"], request.match_info["name"]
        action = request.match_info["action"]
        if action not in ("promote", "abort"):
            return _json({"error": f"unknown action {action!r}: promote or abort"}, status=400)
        acted, message = await self._rollout_action(ns, name, action)
        return _json({"acted": acted, "message": message}, status=200 if acted else 409)
