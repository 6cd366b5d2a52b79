"""``skyroute operator``: the control plane on a Kubernetes API server.

One asyncio loop runs kopf (watches and the admission webhook), the gRPC
distribution server routers connect to (the same ``DistributionService``
that ``skyroute control`` runs), the reconcile loop, the status writer, the
Lease and, optionally, the admin HTTP server. No locks: every part touches
the world only from this loop.

Start-up order is what makes a restart silent. Before the gRPC port opens,
the operator lists every RoutingPolicy and ModelPool itself and compiles
them all at once, so the first snapshot it serves is the whole cluster's,
with the same content hash the previous process served; routers that
reconnect announce that version and get nothing pushed. Only then does kopf
start watching (its initial listing finds nothing new). If the CRDs are not
installed yet the operator waits for them, saying so in its log, with the
port still closed, so routers keep their last snapshot.

API keys kept as Secrets (``skyroute keys create --namespace NS``) are read
only in ``--key-namespaces``, listed with the rest before the port opens and
then watched (``keysecrets.py``); a new or deleted key Secret recompiles like
an object change, so a revoked key leaves routers with the next push.

The routers' link is TLS (``linktls.py``: a CA kept in a Secret, published
in a ConfigMap, or given files) and every call carries a ServiceAccount token
the operator checks with a TokenReview (``linkauth.py``); the admin port is
then HTTPS and its writes need a SubjectAccessReview. Plaintext, checking
nobody, only with ``--insecure``.

Changes are debounced briefly (``debounce_ms``) so that ``kubectl apply -f
dir/`` of several objects compiles once, the way Istio batches pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import kopf

from skyroute.control import telemetry
from skyroute.control.distribution.admin import AdminServer
from skyroute.control.distribution.routers import RouterRegistry
from skyroute.control.distribution.service import DistributionService
from skyroute.control.distribution.serving import DistributionServer
from skyroute.control.distribution.tls import ServingCert
from skyroute.control.kube import certs
from skyroute.control.kube.admission import Verdict, review
from skyroute.control.kube.api import PLURALS, KubeApi, NotInstalled
from skyroute.control.kube.conditions import summary
from skyroute.control.kube.fleet import Fleet
from skyroute.control.kube.forward import OutcomeForwarder
from skyroute.control.kube.handlers import build_registry, build_settings, quiet_kopf
from skyroute.control.kube.history import HistoryStore
from skyroute.control.kube.keysecrets import KeySecretWatch
from skyroute.control.kube.learned import LearnedStateMap
from skyroute.control.kube.lease import LeaseElector
from skyroute.control.kube.linkauth import (
    AUDIENCE,
    AdminAuthorizer,
    LinkAuthenticator,
    Reviews,
    parse_accounts,
)
from skyroute.control.kube.linktls import link_files
from skyroute.control.kube.rollouts import ClusterRollouts
from skyroute.control.kube.spendmap import SpendKeeper
from skyroute.control.kube.world import World, key_of, plain
from skyroute.control.kube.writer import StatusWriter
from skyroute.control.learning.loop import Learner
from skyroute.control.learning.outcomes import OutcomeAggregator
from skyroute.control.logs import event
from skyroute.control.policy.model import KIND_POLICY, RoutingPolicy
from skyroute.control.policy.store import SnapshotStore
from skyroute.control.spend.views import query as spend_query
from skyroute.control.spend.views import tenant_status

log = logging.getLogger("skyroute.control.kube.operator")

LEADER_LABEL = "skyroute.io/leader"


@dataclass(frozen=True, slots=True)
class OperatorOptions:
    """Everything ``skyroute operator`` takes (see cli/skyroute/cli/main.py for help texts)."""

    namespace: str | None = None
    listen: str = "127.0.0.1:7070"
    admin: str | None = None
    webhook: str | None = None
    webhook_cert: str | None = None
    webhook_key: str | None = None
    webhook_ca: str | None = None
    webhook_tls_secret: str | None = None
    webhook_config: str | None = None
    webhook_hostnames: tuple[str, ...] = ()
    lease: str | None = "skyroute-operator"
    lease_namespace: str | None = None
    lease_duration: float = 15.0
    lease_renew_deadline: float | None = None
    lease_retry_period: float | None = None
    identity: str | None = None
    advertise: str | None = None
    status_interval: float = 0.5
    learned_state_interval: float = 30.0  # seconds between saves of the learned state
    status_settle: float = 10.0
    debounce_ms: int = 20
    key_namespaces: tuple[str, ...] = ()  # where key Secrets are read (none: spec.keys only)
    secret_env_prefixes: tuple[str, ...] = ()  # the routers' --secret-env-prefix (keyrefs.py)
    # The routers' link (linktls.py, linkauth.py): TLS and ServiceAccount tokens, or
    # plaintext and nobody checked with ``insecure``.
    insecure: bool = False
    health_listen: str | None = None  # plaintext grpc.health.v1 only, for kubelet probes
    link_cert: str | None = None
    link_key: str | None = None
    link_ca: str | None = None
    link_tls_secret: str | None = None
    link_hostnames: tuple[str, ...] = ()
    link_ca_configmap: str | None = None
    link_audience: str = AUDIENCE
    link_token_file: str | None = None  # this replica's own token, to forward outcomes
    router_service_accounts: tuple[str, ...] = ()  # NS/NAME; default skyroute-router here
    operator_service_accounts: tuple[str, ...] = ()  # NS/NAME; default skyroute-operator here


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Operator:
    """The operator's parts; ``run`` until SIGTERM/SIGINT (kopf handles the signals)."""

    def __init__(self, opts: OperatorOptions, api: KubeApi) -> None:
        self.opts = opts
        self.api = api
        self.own_namespace = (
            opts.lease_namespace or os.environ.get("POD_NAMESPACE") or opts.namespace or "default"
        )
        self.identity = (
            opts.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        )
        scope = f"namespace {opts.namespace}" if opts.namespace else "all namespaces"
        self.world = World(opts.secret_env_prefixes)
        self.store = SnapshotStore(source=f"kubernetes ({scope})")
        self.registry = RouterRegistry()
        self.outcomes = OutcomeAggregator()
        self.service = DistributionService(self.store, self.registry, self.outcomes)
        self.fleet = Fleet(self.registry)
        self.writer = StatusWriter(
            api,
            self.world,
            self.fleet,
            self.identity,
            interval=opts.status_interval,
            settle=opts.status_settle,
        )
        # The learning loop, as in ``skyroute control``: fleet sketches in, priors out
        # (store.prepare), drift alerts as ModelPool conditions and events (the writer).
        self.learner = Learner(self.store, on_drift=self.writer.drift)
        self.service.learner = self.learner
        # What it learned survives restarts: a ConfigMap the leader writes (learned.py).
        self.learned = LearnedStateMap(api, self.own_namespace)
        # The spend ledger: counted and saved (a ConfigMap) by the leader alone.
        self.spend = SpendKeeper(api, self.own_namespace)
        self.service.ledger = self.spend.ledger
        self.service.charge = self.spend.record
        self.writer.spend = self._tenant_spend
        # Rollouts (canary, analysis, promotion, rollback, pin): the controller turns
        # the accepted specs into the snapshot routers get; its state lives in the
        # policies' status (written by the leader, mirrored by followers).
        self.rollouts = ClusterRollouts(
            api, self.world, self.writer, HistoryStore(api, opts.namespace), self._serve
        )
        self.outcomes.add_listener(self.rollouts.controller.windows.record)
        self.learner.feedback_listeners.append(self.rollouts.controller.windows.feedback)
        self.store.subscribe(self._served)
        try:
            self.elector = self._elector(api)
        except ValueError as exc:
            raise SystemExit(f"skyroute operator: {exc}") from None
        if self.elector is not None:
            # Every leader write is fenced by the renew deadline, checked just before it.
            api.fence = self.elector.may_write
        # Followers forward rollout outcomes to the leader (see forward.py).
        elector = self.elector
        self.forwarder = OutcomeForwarder(
            self.identity,
            lambda: elector.leader_address if elector else "",
            lambda: not self.writer.active,
            self.rollouts.controller.windows.watches,
        )
        self.outcomes.add_listener(self.forwarder.record)
        self.service.on_forwarded = self.rollouts.controller.windows.record
        self.learner.feedback_listeners.append(self.forwarder.feedback)
        self.service.on_forwarded_feedback = self.rollouts.controller.windows.feedback
        self.keys = KeySecretWatch(api.core, opts.key_namespaces)
        secured = bool(opts.link_cert or opts.link_key or opts.link_tls_secret)
        if secured == opts.insecure:
            raise SystemExit(
                "skyroute operator: serve the routers' link on TLS (--link-tls-secret NAME "
                "with --link-hostname, or --link-cert/--link-key), or pass --insecure for "
                "plaintext without authentication"
                if not secured
                else "skyroute operator: --insecure and --link-* TLS exclude each other"
            )
        self.reviews = Reviews(api.client)
        try:
            self.link_auth = LinkAuthenticator(
                self.reviews,
                parse_accounts(
                    opts.router_service_accounts or ["skyroute-router"], self.own_namespace
                ),
                parse_accounts(
                    opts.operator_service_accounts or ["skyroute-operator"], self.own_namespace
                ),
                opts.link_audience,
            )
        except ValueError as exc:
            raise SystemExit(f"skyroute operator: {exc}") from None
        self._link: ServingCert | None = None
        self.stop = asyncio.Event()
        self.port = 0
        self._dirty = asyncio.Event()
        self._server: DistributionServer | None = None
        self._admin: AdminServer | None = None

    def _elector(self, api: KubeApi) -> LeaseElector | None:
        opts = self.opts
        if not opts.lease:
            return None
        return LeaseElector(
            api,
            self.own_namespace,
            opts.lease,
            self.identity,
            duration=opts.lease_duration,
            on_change=self._leadership,
            renew_deadline=opts.lease_renew_deadline,
            retry_period=opts.lease_retry_period,
        )

    # --- what kopf's handlers call (handlers.App) -----------------------------------

    def observed(self, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        status = plain(body.get("status"))
        self.writer.seen(key, status)
        changed = self.world.observe(body)
        if key.kind == KIND_POLICY:
            changed = self.rollouts.observed(key, body, status) or changed
        if changed:
            self._dirty.set()

    def deleted(self, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        self.writer.forget(key)
        if self.world.forget(key):
            self._dirty.set()

    def key_secret(self, namespace: str, kind: str, body: Any) -> None:
        """A key Secret event (or a fresh ``LIST`` of a namespace) from the watch thread."""
        secrets = self.world.key_secrets
        if kind == "LIST":
            changed = secrets.replace(namespace, body)
        elif kind == "DELETED":
            meta = body.get("metadata") or {}
            changed = secrets.remove(namespace, str(meta.get("name", "")))
        else:
            changed = secrets.upsert(body)
        if changed:
            self.world.keys_changed()
            self._dirty.set()

    def review(self, body: Mapping[str, Any]) -> Verdict:
        verdict = self.rollouts.review(key_of(body), body, review(self.world, body))
        event(
            log,
            "admission",
            object=key_of(body).ref,
            allowed=verdict.allowed,
            warnings=len(verdict.warnings),
            reason=verdict.message() or "-",
        )
        return verdict

    def _served(self) -> None:
        """A new served version (a compile, or learned priors on the same compile)."""
        served = self.store.snapshot
        if self.world.snapshot is not None and served is not None:
            self.fleet.record(self.world.snapshot, served.version)
        self.writer.wake()

    # --- reconcile ------------------------------------------------------------

    def reconcile(self) -> bool:
        """Accept what fits and publish; True if routers get a new snapshot."""
        changed = self.world.reconcile()
        rejected = self.world.rejections()
        problems = "; ".join(
            f"{key.ref}: {summary(found, key.ref)}" for key, found in sorted(rejected.items())
        )
        snapshot = self.world.snapshot
        if snapshot is not None and changed:
            self.fleet.record(snapshot)
        published = self._serve()
        self.store.last_error = problems  # publish() clears it; rejections still stand
        if not published or snapshot is None:
            self.writer.wake()
            return False
        event(
            log,
            "compiled",
            version=self.store.version,
            changed=published,
            policies=",".join(f"{p.name}@{p.version}" for p in snapshot.policies) or "-",
            pools=",".join(p.name for p in snapshot.pools) or "-",
            rejected=len(rejected),
            retained=len(self.world.retained()),
        )
        self.writer.wake()
        return published

    def _serve(self) -> bool:
        """Publish the accepted snapshot as the rollouts shape it; True if it changed."""
        snapshot = self.world.snapshot
        if snapshot is None:
            return False
        policies = {
            (k.namespace, k.name): p.obj
            for k, p in self.world.accepted_objects().items()
            if isinstance(p.obj, RoutingPolicy)
        }
        return self.store.publish(self.rollouts.controller.apply(snapshot, policies))

    async def _reconcile_loop(self) -> None:
        while not self.stop.is_set():
            await self._dirty.wait()
            await asyncio.sleep(self.opts.debounce_ms / 1000)
            self._dirty.clear()
            try:
                self.reconcile()
            except Exception:  # a bug must not stop the operator from serving routers
                log.exception("reconcile failed")

    async def load(self) -> None:
        """List both kinds and compile them together, waiting for the CRDs if needed."""
        waited = 0.0
        while True:
            try:
                bodies = [
                    body
                    for kind in PLURALS
                    for body in await self.api.list_objects(kind, self.opts.namespace)
                ]
                break
            except NotInstalled as exc:
                if self.stop.is_set():
                    return
                if waited % 10 == 0:
                    event(log, "waiting_for_crds", logging.WARNING, error=str(exc))
                await asyncio.sleep(1.0)
                waited += 1
        for ns, secrets in (await self.keys.load()).items():
            self.key_secret(ns, "LIST", secrets)
        await self.rollouts.load_history()
        self.learner.restored = (await self.learned.load(self.learner)).as_dict()
        for body in bodies:
            self.observed(body)
        self.reconcile()
        self._dirty.clear()
        event(log, "loaded", objects=len(bodies), version=self.store.version or "-")

    # --- leadership -----------------------------------------------------------

    def _tenant_spend(self, name: str) -> dict[str, Any] | None:
        """``Tenant.status.spend`` from the ledger (None until this leader has loaded it)."""
        if not self.spend.keeping:
            return None
        return tenant_status(self.spend.ledger, self.store.snapshot, name, int(time.time() * 1000))

    def _spend_query(self, tenant: str, since_ms: int, by: str) -> dict[str, object]:
        body = spend_query(
            self.spend.ledger, self.store.snapshot, tenant, since_ms, int(time.time() * 1000), by
        )
        body["keeper"] = self.identity if self.spend.keeping else ""  # "": ask the leader
        return body

    async def _leadership(self, leader: bool) -> None:
        await self.spend.lead(leader)
        self.writer.set_active(leader)
        pod, ns = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
        if pod and ns:
            try:
                await self.api.patch_pod_labels(ns, pod, {LEADER_LABEL: "true" if leader else None})
            except Exception as exc:
                event(log, "leader_label_failed", logging.WARNING, error=repr(exc))

    # --- serving --------------------------------------------------------------

    async def _webhook_server(self) -> kopf.WebhookServer | None:
        opts = self.opts
        if not opts.webhook:
            return None
        host, port = _split(opts.webhook)
        if opts.webhook_cert and opts.webhook_key:
            return kopf.WebhookServer(
                addr=host,
                port=port,
                certfile=opts.webhook_cert,
                pkeyfile=opts.webhook_key,
                cafile=opts.webhook_ca,
            )
        if not opts.webhook_tls_secret:
            raise SystemExit(
                "skyroute operator: --webhook needs --webhook-cert and --webhook-key, "
                "or --webhook-tls-secret"
            )
        hostnames = list(opts.webhook_hostnames) or [host]
        files = await certs.shared_secret(
            self.api, self.own_namespace, opts.webhook_tls_secret, hostnames
        )
        if opts.webhook_config:
            changed = await certs.inject_ca(self.api, opts.webhook_config, files.ca)
            event(log, "webhook_ca", config=opts.webhook_config, changed=changed)
        return kopf.WebhookServer(
            addr=host,
            port=port,
            certfile=str(files.cert),
            pkeyfile=str(files.key),
            cadata=files.ca,
        )

    async def _link_tls(self) -> None:
        """TLS files for the link; the service then takes ServiceAccount tokens only."""
        opts = self.opts
        files = await link_files(
            self.api,
            self.own_namespace,
            cert=opts.link_cert,
            key=opts.link_key,
            ca=opts.link_ca,
            secret=opts.link_tls_secret,
            hostnames=list(opts.link_hostnames),
            configmap=opts.link_ca_configmap,
        )
        if files is None:
            event(log, "link_plaintext", logging.WARNING, listen=opts.listen)
            return
        self._link = ServingCert(files.cert, files.key)
        self.service.token_auth = self.link_auth
        self.forwarder.credentials = grpc.ssl_channel_credentials(files.ca)
        self.forwarder.server_name = opts.link_hostnames[0] if opts.link_hostnames else ""
        token_file = opts.link_token_file
        if token_file:
            self.forwarder.metadata = lambda: _bearer_from(token_file)

    async def _start_grpc(self) -> None:
        server = DistributionServer(self.service, self.store)
        link = self._link
        try:
            if link is None:
                self.port = server.listen(self.opts.listen)
            else:
                self.port = server.listen(self.opts.listen, link.grpc_credentials(), mtls=False)
        except RuntimeError as exc:
            raise SystemExit(
                f"skyroute operator: cannot listen on {self.opts.listen}: {exc}"
            ) from None
        if self.port == 0:
            raise SystemExit(f"skyroute operator: cannot listen on {self.opts.listen}")
        if self.opts.health_listen and not server.listen_health(self.opts.health_listen):
            raise SystemExit(f"skyroute operator: cannot listen on {self.opts.health_listen}")
        await server.start()
        self._server = server

    async def run(self) -> None:
        webhook = await self._webhook_server()
        await self._link_tls()
        self._handle_signals()
        await self.load()
        if self.stop.is_set():
            return
        await self._start_grpc()
        self.keys.start(asyncio.get_running_loop(), self.key_secret)
        if self.opts.admin:
            self._admin = AdminServer(
                self.opts.admin,
                self.store,
                self.service.status,
                self.outcomes,
                learning=self.learner.as_dict,
                rollouts=self.rollouts.controller,
                rollout_action=self.rollouts.admin_action,
                # On a TLS link the admin port is HTTPS too, and writes need a Kubernetes
                # token allowed to update routingpolicies/rollout (linkauth.py).
                ssl_context=self._link.ssl_context() if self._link else None,
                authorize=AdminAuthorizer(self.reviews) if self._link else None,
                spend=self._spend_query,
                recent=self.learner.recent,
            )
            await self._admin.start()
        tasks = [
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
            asyncio.create_task(self.writer.run(self.stop), name="status-writer"),
            asyncio.create_task(self.learner.run(self.stop), name="learning"),
            asyncio.create_task(self._save_learned_loop(), name="learned-state"),
            asyncio.create_task(self.spend.run(self.stop), name="spend-ledger"),
            asyncio.create_task(self.rollouts.run(self.stop), name="rollouts"),
        ]
        if self.elector is not None:
            self.elector.advertise = self._advertise()
            tasks.append(asyncio.create_task(self.elector.run(self.stop), name="lease"))
            tasks.append(asyncio.create_task(self.forwarder.run(self.stop), name="forward"))
        else:
            await self.spend.lead(True)
            self.writer.set_active(True)
        host = self.opts.listen.rpartition(":")[0] or "127.0.0.1"
        event(
            log,
            "listening",
            grpc=f"{host}:{self.port}",
            webhook=self.opts.webhook or "-",
            scope=self.opts.namespace or "cluster",
            identity=self.identity,
            version=self.store.version or "-",
        )
        ready = asyncio.Event()
        kopf_task = asyncio.create_task(
            kopf.operator(
                registry=build_registry(self, webhooks=webhook is not None),
                settings=build_settings(webhook),
                clusterwide=self.opts.namespace is None,
                namespaces=[self.opts.namespace] if self.opts.namespace else (),
                standalone=True,
                stop_flag=self.stop,
                ready_flag=ready,
            ),
            name="kopf",
        )
        try:
            await _first(kopf_task, ready.wait())
            # kopf's own signal handlers only stop kopf, then wait for "hung" tasks (our
            # gRPC streams among them); ours stop everything at once, kopf included.
            self._handle_signals()
            await _first(kopf_task, self.stop.wait())
        finally:
            self.stop.set()
            self._dirty.set()
            await self.shutdown()
            for task in [*tasks, kopf_task]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=10.0)
            event(log, "stopped", identity=self.identity)

    def _advertise(self) -> str:
        """Where other replicas reach this one's gRPC port (on the Lease while leading)."""
        if self.opts.advertise:
            return self.opts.advertise
        host = self.opts.listen.rpartition(":")[0].strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = os.environ.get("POD_IP") or socket.gethostname()
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def _handle_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)

    async def _save_learned(self) -> None:
        if not self.writer.active:  # followers only read it
            return
        try:
            await self.learned.save(self.learner)
        except Exception as exc:  # NotLeader past the deadline, or the API server
            event(log, "learned_state_unsaved", logging.WARNING, error=repr(exc))

    async def _save_learned_loop(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.opts.learned_state_interval)
            if not self.stop.is_set():
                await self._save_learned()

    async def shutdown(self) -> None:
        self.keys.stop()
        await self._save_learned()
        await self.spend.save(force=True)
        if self._admin is not None:
            await self._admin.stop()
        if self._server is not None:
            await self._server.stop(1.0)
            self._server = None


def _bearer_from(path: str) -> tuple[tuple[str, str], ...]:
    """This replica's projected token as call metadata, read anew each time (it rotates)."""
    with open(path, encoding="ascii", errors="replace") as fh:
        return (("authorization", f"Bearer {fh.read(16_384).strip()}"),)


async def _first(task: asyncio.Task[None], other: Coroutine[Any, Any, Any]) -> None:
    """Until ``task`` ends or ``other`` returns (``other`` is cancelled if still waiting)."""
    waiter = asyncio.ensure_future(other)
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _main(opts: OperatorOptions) -> None:
    api = KubeApi()
    await Operator(opts, api).run()


def main(opts: OperatorOptions) -> None:
    """Run the operator until SIGTERM/SIGINT; logs go to stderr as JSON lines (see logs.py)."""
    quiet_kopf()
    telemetry.configure("skyroute-operator")  # /metrics on --admin, OTLP if configured
    try:
        asyncio.run(_main(opts))
    finally:
        telemetry.shutdown()
