"""TLS for the admission webhook: given files, or a self-managed shared Secret.

The API server only calls webhooks over HTTPS and must trust the serving
certificate through the ``caBundle`` of the ValidatingWebhookConfiguration.
Two ways are supported:

* ``--webhook-cert/--webhook-key`` (and optionally ``--webhook-ca``): files
  from elsewhere (cert-manager, a platform PKI, a test's openssl). kopf
  reloads them when they change on disk (mounted Secrets rotate in place).
* ``--webhook-tls-secret NAME``: the operator makes a private CA and a
  serving certificate for the webhook Service's DNS names and stores them in
  a ``kubernetes.io/tls`` Secret in its namespace. Every replica uses that
  one Secret (the first to start creates it; a replica that loses the
  create race reads the winner's), so all replicas present certificates
  from the same CA and the one ``caBundle`` fits them all. With
  ``--webhook-config NAME`` the operator writes that CA into the named
  ValidatingWebhookConfiguration's entries, so ``kubectl apply -k`` needs no
  cert-manager and no manual step. RBAC is narrow: get on that one Secret
  and that one configuration by name (create cannot be narrowed by name).

The CA key lives only in the Secret (Kubernetes' usual trust boundary for
a namespace's own credentials) and in a 0600 file in a private temp dir.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from skyroute.control.kube.api import KubeApi
from skyroute.control.pki import Authority


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: bytes


def make_certificates(hostnames: list[str]) -> tuple[bytes, bytes, bytes]:
    """(ca_pem, cert_pem, key_pem): a fresh CA and a serving certificate for ``hostnames``."""
    ca = Authority.create("skyroute-webhook-ca")
    cert, key = ca.issue(hostnames[0], hostnames=hostnames)
    return ca.cert_pem, cert, key


def write_files(cert: bytes, key: bytes, ca: bytes) -> TlsFiles:
    """Into a fresh private directory (0700, files 0600)."""
    folder = Path(tempfile.mkdtemp(prefix="skyroute-webhook-tls-"))
    paths = []
    for name, data in (("tls.crt", cert), ("tls.key", key)):
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        paths.append(path)
    return TlsFiles(cert=paths[0], key=paths[1], ca=ca)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def shared_secret(api: KubeApi, namespace: str, name: str, hostnames: list[str]) -> TlsFiles:
    """The webhook's certificate from Secret ``name``, creating it first if needed."""
    secret = await api.get_secret(namespace, name)
    if secret is None:
        ca, cert, key = make_certificates(hostnames)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "app.kubernetes.io/name": "skyroute",
                    "app.kubernetes.io/component": "operator",
                },
            },
            "data": {"tls.crt": _b64(cert), "tls.key": _b64(key), "ca.crt": _b64(ca)},
        }
        if await api.create_secret(namespace, body):
            return write_files(cert, key, ca)
        secret = await api.get_secret(namespace, name)
        if secret is None:
            raise RuntimeError(f"Secret {namespace}/{name} was created and is gone again")
    data = secret.get("data") or {}
    try:
        cert, key = base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])
        ca = base64.b64decode(data.get("ca.crt") or data["tls.crt"])
    except (KeyError, ValueError) as exc:
        raise RuntimeError(
            f"Secret {namespace}/{name} has no usable tls.crt/tls.key ({exc!r}); delete it and "
            "the operator will make a new one"
        ) from None
    return write_files(cert, key, ca)


async def inject_ca(api: KubeApi, config_name: str, ca: bytes) -> bool:
    """Put ``ca`` into every webhook of the named configuration; True if it changed."""
    for _ in range(5):
        found = await api.get_webhook_config(config_name)
        if found is None:
            raise RuntimeError(
                f"ValidatingWebhookConfiguration {config_name} not found (apply deploy/ first)"
            )
        bundle = _b64(ca)
        hooks = found.get("webhooks") or []
        if all((h.get("clientConfig") or {}).get("caBundle") == bundle for h in hooks):
            return False
        for hook in hooks:
            hook.setdefault("clientConfig", {})["caBundle"] = bundle
        if await api.replace_webhook_config(config_name, found):
            return True
    raise RuntimeError(f"ValidatingWebhookConfiguration {config_name} keeps changing; gave up")
