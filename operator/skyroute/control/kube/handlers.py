"""What kopf runs: watch-event handlers, validating webhooks, login, settings.

Only raw event handlers (``@kopf.on.event``) are used, not kopf's
create/update/delete handlers, for three reasons. Compilation is of the
whole accepted set, so a per-object state machine would add nothing; event
handlers need no finalizer, so deleting an object never waits on the
operator (nothing can get stuck while it is down: see deploy/README.md); and
they keep no per-object progress, so kopf writes nothing into the objects.
Should change handlers be added later, their progress goes to annotations
under ``kopf.skyroute.io`` (set below), and the CRDs' status keeps unknown
fields anyway.

A pool change reaching every policy that uses it needs no index: the whole
accepted set recompiles, and each policy's version hashes the pools it
references, so exactly the dependent policies get new versions (and
``NewVersion`` events). The webhooks run the operator's validation through
``admission.review``; the server is configured explicitly (kopf will not
guess one) and kopf does not manage the webhook configuration: deploy/ and
the tests own it, so the operator needs no cluster-wide write permission on
admission configuration.

Handlers are ``async``: kopf runs sync handlers in threads, and the world
must only be touched from the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import kopf

from skyroute.control.kube.admission import Verdict
from skyroute.control.kube.api import PLURALS
from skyroute.control.policy.model import GROUP, VERSION


class App(Protocol):
    """What the handlers call into (``operator.Operator``)."""

    def observed(self, body: Mapping[str, Any]) -> None: ...

    def deleted(self, body: Mapping[str, Any]) -> None: ...

    def review(self, body: Mapping[str, Any]) -> Verdict: ...


def webhook_id(plural: str) -> str:
    """The handler id, which is also the webhook URL path (``/<id>``)."""
    return f"validate-{plural}"


def build_registry(app: App, webhooks: bool) -> kopf.OperatorRegistry:
    """Watch handlers always; webhook handlers only with a server (kopf insists)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    async def on_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        if type == "DELETED":
            app.deleted(body)
        else:
            app.observed(body)

    async def on_validate(body: kopf.Body, warnings: list[str], **_: Any) -> None:
        verdict = app.review(body)
        warnings.extend(verdict.warnings)
        if not verdict.allowed:
            raise kopf.AdmissionError(verdict.message(), code=422)

    for plural in PLURALS.values():
        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"watch-{plural}")(on_event)
        if webhooks:
            kopf.on.validate(
                GROUP,
                VERSION,
                plural,
                registry=registry,
                id=webhook_id(plural),
                operations=["CREATE", "UPDATE"],
            )(on_validate)
    return registry


def build_settings(webhook: kopf.WebhookServer | None) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Our own events (writer.py) say what matters; kopf's would echo every log line.
    settings.posting.enabled = False
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="kopf.skyroute.io"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.skyroute.io", key="last-handled-configuration"
    )
    # HA is a Lease (lease.py), not kopf peering: no KopfPeering CRD, no paused replicas.
    settings.peering.standalone = True
    # The resources are fixed and the operator waits for the CRDs itself: no CRD watch,
    # so no cluster-wide permission on customresourcedefinitions.
    settings.scanning.disabled = True
    settings.watching.reconnect_backoff = 0.5
    # Event handlers return at once; do not hold shutdown for idle per-object workers.
    settings.queueing.exit_timeout = 0.5
    if webhook is not None:
        settings.admission.server = webhook
        settings.admission.managed = None
    return settings


def quiet_kopf(level: int = logging.WARNING) -> None:
    """kopf logs every watch and handler at INFO; keep warnings and errors."""
    logging.getLogger("kopf").setLevel(level)
