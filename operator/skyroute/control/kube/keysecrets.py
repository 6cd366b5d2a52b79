"""API keys kept as Secrets (``skyroute keys create --namespace NS``), merged into Tenants.

A key Secret is ``skyroute-key-<id>``, labelled ``skyroute.io/tenant=<name>``,
holding the key's public id, its digest and an optional expiry: never the key
itself. Its keys join the spec.keys of the Tenant of that name *in the Secret's
own namespace*: whoever may create Secrets in one namespace cannot mint keys for
a Tenant of another. Revoking deletes the Secret, so the key leaves the next
snapshot.

The operator reads these Secrets only in the namespaces it is given
(``--key-namespaces``; RBAC cannot grant Secrets by label, so the grant is a
namespace's Secrets, given only where Tenants keep their keys), and only by
label selector: list once, then watch from that list's resourceVersion, in a
daemon thread per namespace (the official client blocks), handing every event
to the event loop. A malformed Secret (no id, a bad digest, an id used by
another key) is skipped, logged by name with the reason and counted; it never
blocks the Tenant or the snapshot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from skyroute.control.logs import event
from skyroute.control.policy.model import ApiKeySpec

log = logging.getLogger("skyroute.control.kube.keysecrets")

TENANT_LABEL = "skyroute.io/tenant"
WATCH_SECONDS = 60
Body = dict[str, Any]
Ref = tuple[str, str]  # (namespace, tenant name)


@dataclass(frozen=True, slots=True)
class KeySecret:
    namespace: str
    name: str
    tenant: str
    key: ApiKeySpec


def parse(body: Mapping[str, Any]) -> KeySecret | str:
    """The key of one Secret, or why it is skipped (never quoting the data)."""
    meta = body.get("metadata") or {}
    tenant = str((meta.get("labels") or {}).get(TENANT_LABEL, ""))
    if not tenant:
        return f"no {TENANT_LABEL} label"
    data: dict[str, str] = {}
    for k in ("id", "digest", "expiresAt"):
        raw = (body.get("data") or {}).get(k)
        if raw is None:
            continue
        try:
            data[k] = base64.b64decode(str(raw), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return f"data.{k} is not base64 text"
    try:
        key = ApiKeySpec.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "data" for e in exc.errors()})
        return f"invalid data ({', '.join(f'data.{f}' for f in fields)})"
    return KeySecret(str(meta.get("namespace") or ""), str(meta.get("name", "")), tenant, key)


@dataclass(slots=True)
class KeySecrets:
    """The key Secrets seen, by namespace and name; ``keys`` answers per Tenant."""

    by_name: dict[Ref, KeySecret] = field(default_factory=dict)
    skipped: dict[Ref, str] = field(default_factory=dict)

    def upsert(self, body: Mapping[str, Any]) -> bool:
        """Record one Secret; True if what it contributes changed."""
        meta = body.get("metadata") or {}
        ref = (str(meta.get("namespace") or ""), str(meta.get("name", "")))
        found = parse(body)
        if isinstance(found, str):
            if self.skipped.get(ref) != found:
                event(
                    log,
                    "key_secret_skipped",
                    logging.WARNING,
                    secret=f"{ref[0]}/{ref[1]}",
                    reason=found,
                )
            self.skipped[ref] = found
            return self.by_name.pop(ref, None) is not None
        self.skipped.pop(ref, None)
        if self.by_name.get(ref) == found:
            return False
        self.by_name[ref] = found
        return True

    def remove(self, namespace: str, name: str) -> bool:
        self.skipped.pop((namespace, name), None)
        return self.by_name.pop((namespace, name), None) is not None

    def replace(self, namespace: str, bodies: Iterable[Mapping[str, Any]]) -> bool:
        """A fresh list of one namespace: everything else there is gone."""
        before = {r: s for r, s in self.by_name.items() if r[0] == namespace}
        for ref in [r for r in self.by_name if r[0] == namespace]:
            del self.by_name[ref]
        for ref in [r for r in self.skipped if r[0] == namespace]:
            del self.skipped[ref]
        for body in bodies:
            self.upsert(body)
        after = {r: s for r, s in self.by_name.items() if r[0] == namespace}
        return before != after

    def keys(self, tenant: Ref) -> list[ApiKeySpec]:
        """The keys of Tenant ``tenant`` from Secrets, in Secret-name order."""
        return [
            s.key
            for ref, s in sorted(self.by_name.items())
            if (s.namespace, s.tenant) == tenant and ref[0] == tenant[0]
        ]


Deliver = Callable[[str, str, Any], None]  # (namespace, "LIST"|"ADDED"|..., body or bodies)


class KeySecretWatch:
    """List then watch labelled Secrets in each namespace; events go to ``deliver``."""

    def __init__(self, core: Any, namespaces: Iterable[str]) -> None:
        self.core = core
        self.namespaces = tuple(namespaces)
        self.stopped = threading.Event()
        self._versions: dict[str, str] = {}

    def list_secrets(self, namespace: str) -> list[Body]:
        """Blocking: every key Secret of ``namespace`` (and the version to watch from)."""
        result = self.core.list_namespaced_secret(
            namespace, label_selector=TENANT_LABEL, _request_timeout=10
        )
        self._versions[namespace] = str(result.metadata.resource_version or "")
        sanitize = self.core.api_client.sanitize_for_serialization
        return [sanitize(item) for item in result.items]

    async def load(self) -> dict[str, list[Body]]:
        return {ns: await asyncio.to_thread(self.list_secrets, ns) for ns in self.namespaces}

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        for ns in self.namespaces:
            threading.Thread(
                target=self._run, args=(loop, deliver, ns), name=f"keys-{ns}", daemon=True
            ).start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self, loop: asyncio.AbstractEventLoop, deliver: Deliver, ns: str) -> None:
        while not self.stopped.is_set():
            try:
                if not self._versions.get(ns):
                    bodies = self.list_secrets(ns)
                    loop.call_soon_threadsafe(deliver, ns, "LIST", bodies)
                w = watch.Watch()  # type: ignore[no-untyped-call]
                for ev in w.stream(  # type: ignore[no-untyped-call]
                    self.core.list_namespaced_secret,
                    ns,
                    label_selector=TENANT_LABEL,
                    resource_version=self._versions[ns],
                    timeout_seconds=WATCH_SECONDS,
                    _request_timeout=WATCH_SECONDS + 10,
                ):
                    if self.stopped.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
                        return
                    raw = ev.get("raw_object") or {}
                    if ev.get("type") == "ERROR":
                        self._versions[ns] = ""  # 410 Gone: list again
                        break
                    version = (raw.get("metadata") or {}).get("resourceVersion")
                    if version:
                        self._versions[ns] = str(version)
                    loop.call_soon_threadsafe(deliver, ns, str(ev.get("type")), raw)
            except ApiException as exc:
                self._versions[ns] = ""
                event(
                    log, "key_secrets_watch_failed", logging.WARNING, namespace=ns, error=exc.reason
                )
                self.stopped.wait(2.0)
            except Exception as exc:  # connection drops: list again after a pause
                self._versions[ns] = ""
                event(
                    log, "key_secrets_watch_failed", logging.WARNING, namespace=ns, error=repr(exc)
                )
                self.stopped.wait(2.0)
