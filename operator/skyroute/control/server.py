"""``skyroute control``: the control plane process, wired together.

One asyncio loop runs three things: the gRPC server routers connect to
(``DistributionService``, with gRPC health and reflection: :mod:`.serving`),
the folder watcher that compiles new snapshots (``SourceWatcher``) and,
optionally, the admin HTTP server. They share one ``SnapshotStore``, one
``RouterRegistry`` and one ``OutcomeAggregator``; no locks are needed
because everything runs on that single loop.

Start-up order matters for the "no spurious push" promise: the folder is
compiled before the gRPC port opens, so a router reconnecting to a restarted
control plane is compared against the real current version, not an empty
one. If the folder is invalid at start, the control plane still starts (and
says why in its log and in ``skyroute status``); routers that reconnect keep
what they have until the folder is fixed.

Secure by default: ``tls_dir`` (``--tls-dir``, made by ``skyroute certs
create``) puts mutual TLS on the gRPC port, HTTPS on the admin port and the
admin token on its writes (``distribution/tls.py``). Plaintext needs
``insecure=True`` (``--insecure``), which logs a warning; with neither the
control plane refuses to start.

``ControlPlane`` is also what tests use to run a real server in-process on a
free port (``listen="127.0.0.1:0"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

from skyroute.admintoken import read_token
from skyroute.control import telemetry
from skyroute.control.distribution.admin import AdminServer
from skyroute.control.distribution.routers import RouterRegistry
from skyroute.control.distribution.service import DistributionService
from skyroute.control.distribution.serving import DistributionServer
from skyroute.control.distribution.tls import ServerTls
from skyroute.control.learning.loop import Learner
from skyroute.control.learning.outcomes import OutcomeAggregator
from skyroute.control.learning.persist import LearnedStateFile
from skyroute.control.logs import event
from skyroute.control.policy.model import RoutingPolicy
from skyroute.control.policy.store import SnapshotStore
from skyroute.control.policy.validate import Objects
from skyroute.control.rollout.controller import PolicyRef, RolloutController
from skyroute.control.rollout.file import StateFile, load
from skyroute.control.source import SourceWatcher
from skyroute.control.spend.persist import SpendFile
from skyroute.control.spend.views import query as spend_query
from skyroute.control.supervise import Supervisor, TaskHealth
from skyroute.v1 import snapshot_pb2

log = logging.getLogger("skyroute.control.server")


class ControlPlane:
    """The control plane's parts on one event loop; ``start``/``stop`` from within it."""

    def __init__(
        self,
        source: str,
        listen: str,
        admin: str | None = None,
        *,
        debounce_ms: int = 50,
        disconnected_ttl_s: float = 300.0,
        state: str | None = None,
        tls_dir: str | None = None,
        insecure: bool = False,
        admin_token_file: str | None = None,
        secret_env_prefixes: tuple[str, ...] = (),
    ) -> None:
        if not tls_dir and not insecure:
            raise SystemExit(
                "skyroute control: pass --tls-dir DIR (see `skyroute certs create`), or "
                "--insecure for a plaintext control plane"
            )
        self.tls = ServerTls(Path(tls_dir)) if tls_dir else None
        token_file = admin_token_file or (str(self.tls.token_file) if self.tls else None)
        self.admin_token = read_token(Path(token_file)) if token_file else None
        self.source = source
        self.listen = listen
        self.store = SnapshotStore(source)
        self.registry = RouterRegistry(disconnected_ttl_s=disconnected_ttl_s)
        self.outcomes = OutcomeAggregator()
        self.service = DistributionService(self.store, self.registry, self.outcomes)
        # The learning loop: fleet sketches in, priors out (store.prepare), drift alerts.
        self.learner = Learner(self.store)
        self.service.learner = self.learner
        self.watcher = SourceWatcher(
            source, self.store, debounce_ms=debounce_ms, env_prefixes=secret_env_prefixes
        )
        # Rollouts, as on a cluster but with state in memory only (a restart starts
        # from the folder as it is: the folder's version serves, nothing in flight).
        self.rollouts = RolloutController()
        self.outcomes.add_listener(self.rollouts.windows.record)
        self.learner.feedback_listeners.append(self.rollouts.windows.feedback)
        self.watcher.shape = self._shape
        self.state = StateFile(Path(state)) if state else None
        # What the learner learned, next to the rollout state: ``FILE.learned``.
        self.learned = LearnedStateFile(Path(state + ".learned")) if state else None
        # The spend ledger, next to it too: ``FILE.spend`` (saved when it changed).
        self.spend = SpendFile(Path(state + ".spend")) if state else None
        self._learned_saved = 0.0
        self._latest: tuple[snapshot_pb2.Snapshot, dict[PolicyRef, RoutingPolicy]] | None = None
        self.admin = (
            AdminServer(
                admin,
                self.store,
                self.service.status,
                self.outcomes,
                learning=self.learner.as_dict,
                rollouts=self.rollouts,
                rollout_action=self._rollout_action,
                health=self._health,
                spend=self._spend,
                recent=self.learner.recent,
                token=self.admin_token,
                ssl_context=self.tls.ssl_context() if self.tls else None,
            )
            if admin
            else None
        )
        self.port = 0
        self._server: DistributionServer | None = None
        self._stop = asyncio.Event()
        # The watcher, the learning loop and the rollout ticker: restarted if they raise.
        self.tasks = Supervisor(self._stop)
        self.service.failing_tasks = self.tasks.failing
        self.service.source_broken_since = lambda: self.store.broken_since_unix_ms

    def _spend(self, tenant: str, since_ms: int, by: str) -> dict[str, object]:
        return spend_query(
            self.service.ledger, self.store.snapshot, tenant, since_ms, int(time.time() * 1000), by
        )

    def _health(self) -> tuple[bool, dict[str, object]]:
        tasks: dict[str, object] = {n: h.as_dict() for n, h in sorted(self.tasks.health.items())}
        return any(h.failing for h in self.tasks.health.values()), tasks

    def _shape(self, snapshot: snapshot_pb2.Snapshot, objects: Objects) -> snapshot_pb2.Snapshot:
        policies = {
            (p.obj.metadata.namespace, p.obj.metadata.name): p.obj
            for p in objects.policies
            if isinstance(p.obj, RoutingPolicy)
        }
        self._latest = (snapshot, policies)
        served = self.rollouts.apply(snapshot, policies)
        self._save()
        return served

    def _save(self) -> None:
        if self.state is not None:
            self.state.save(self.rollouts)

    def _save_learned(self, every_s: float = 5.0) -> None:
        now = asyncio.get_running_loop().time()
        if self.learned is not None and now - self._learned_saved >= every_s:
            self.learned.save(self.learner)
            self._learned_saved = now

    def _republish(self) -> None:
        if self._latest is not None:
            self.store.publish(self.rollouts.served(*self._latest), compiled=False)

    async def _rollout_action(self, namespace: str, name: str, action: str) -> tuple[bool, str]:
        done, message = self.rollouts.action((namespace, name), action, "admin API")
        event(
            log,
            "rollout_action",
            policy=f"{namespace}/{name}",
            action=action,
            acted=done,
            result=message,
        )
        if done:
            self._republish()
            self._save()
        return done, message

    async def _rollout_loop(self, health: TaskHealth, tick_s: float = 0.5) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=tick_s)
            try:
                if self.rollouts.tick():
                    self._republish()
                self._save()
                self._save_learned()
                if self.spend is not None:
                    self.spend.save(self.service.ledger)
            except Exception as exc:  # a bug must not stop the control plane serving
                health(exc)
                log.exception("rollout tick failed")
            else:
                health(None)
            self.rollouts.events.clear()  # logged as they happen; no API server to post to
            self.rollouts.unsaved.clear()

    @property
    def address(self) -> str:
        host = self.listen.rpartition(":")[0] or "127.0.0.1"
        return f"{host}:{self.port}"

    async def start(self) -> None:
        if not Path(self.source).is_dir():
            raise SystemExit(f"skyroute control: source folder not found: {self.source}")
        if self.state is not None:
            load(self.rollouts, self.state.path)
        if self.learned is not None:
            self.learner.restored = self.learned.load(self.learner).as_dict()
        if self.spend is not None:
            self.spend.load(self.service.ledger)
        self.watcher.reload()
        if self.tls is None:
            event(
                log,
                "insecure",
                logging.WARNING,
                warning="plaintext gRPC and admin ports: "
                "any peer can subscribe, report and read; use --tls-dir",
            )
        server = DistributionServer(self.service, self.store)
        try:
            creds = self.tls.grpc_credentials() if self.tls else None
            self.port = server.listen(self.listen, creds)
        except RuntimeError as exc:
            raise SystemExit(f"skyroute control: cannot listen on {self.listen}: {exc}") from None
        if self.port == 0:
            raise SystemExit(f"skyroute control: cannot listen on {self.listen}")
        await server.start()
        self._server = server
        if self.admin is not None:
            try:
                await self.admin.start()
            except OSError as exc:
                await server.stop(None)
                raise SystemExit(f"skyroute control: cannot serve admin HTTP: {exc}") from None
        self.tasks.spawn("source", lambda health: self.watcher.run(self._stop, health))
        self.tasks.spawn("learning", lambda health: self.learner.run(self._stop, health=health))
        self.tasks.spawn("rollouts", self._rollout_loop)
        event(
            log,
            "listening",
            grpc=self.address,
            admin=f"{self.admin.host}:{self.admin.port}" if self.admin else "-",
            source=self.source,
            version=self.store.version or "-",
        )

    async def stop(self, grace: float = 1.0) -> None:
        self._stop.set()
        await self.tasks.join()
        if self.learned is not None:
            try:
                self.learned.save(self.learner)
            except OSError as exc:
                event(log, "learned_state_unsaved", logging.WARNING, error=str(exc))
        if self.spend is not None:
            try:
                self.spend.save(self.service.ledger, force=True)
            except OSError as exc:
                event(log, "spend_ledger_unsaved", logging.WARNING, error=str(exc))
        if self.admin is not None:
            await self.admin.stop()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        event(log, "stopped", grpc=self.address)

    async def wait(self) -> None:
        """Until ``stop`` is called (or SIGINT/SIGTERM, via ``serve``)."""
        await self._stop.wait()


async def serve(plane: ControlPlane) -> None:
    await plane.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, plane._stop.set)
    try:
        await plane.wait()
    finally:
        await plane.stop()


def main(
    source: str,
    listen: str,
    admin: str | None,
    state: str | None = None,
    *,
    tls_dir: str | None = None,
    insecure: bool = False,
    admin_token_file: str | None = None,
    secret_env_prefixes: tuple[str, ...] = (),
) -> None:
    """Run the control plane until SIGINT/SIGTERM; logs go to stderr as JSON lines (see logs.py)."""
    telemetry.configure()
    try:
        plane = ControlPlane(
            source,
            listen,
            admin,
            state=state,
            tls_dir=tls_dir,
            insecure=insecure,
            admin_token_file=admin_token_file,
            secret_env_prefixes=secret_env_prefixes,
        )
        asyncio.run(serve(plane))
    finally:
        telemetry.shutdown()
