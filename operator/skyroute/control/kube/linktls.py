"""TLS for the routers' link to the operator: given files, or a self-managed shared Secret.

The same two ways as the webhook (``certs.py``):

* ``--link-cert/--link-key`` (and ``--link-ca``, the bundle other replicas
  trust when they forward outcomes): files from elsewhere, e.g. cert-manager;
  read again when they change on disk, for new connections.
* ``--link-tls-secret NAME`` with ``--link-hostname`` (the operator
  Service's DNS names): the operator makes a private CA and a serving
  certificate and keeps them in that ``kubernetes.io/tls`` Secret, shared by
  every replica, and with ``--link-ca-configmap NAME`` publishes the CA's
  certificate (never its key) in a ConfigMap under ``ca.crt``, which router
  pods mount as their ``--control-ca``.

Routers keep no client certificate: they present ServiceAccount tokens over
this TLS (``linkauth.py``), so the token never travels in plaintext.
"""

from __future__ import annotations

from pathlib import Path

from skyroute.control.kube import certs
from skyroute.control.kube.api import KubeApi

CA_KEY = "ca.crt"
LABELS = {"app.kubernetes.io/name": "skyroute", "app.kubernetes.io/component": "operator"}


async def link_files(
    api: KubeApi,
    namespace: str,
    *,
    cert: str | None,
    key: str | None,
    ca: str | None,
    secret: str | None,
    hostnames: list[str],
    configmap: str | None,
) -> certs.TlsFiles | None:
    """The link's serving files (None: no TLS asked for); publishes the CA if asked."""
    if cert or key:
        if not (cert and key):
            raise SystemExit("skyroute operator: --link-cert and --link-key go together")
        files = certs.TlsFiles(Path(cert), Path(key), Path(ca or cert).read_bytes())
    elif secret:
        if not hostnames:
            raise SystemExit("skyroute operator: --link-tls-secret needs --link-hostname")
        files = await certs.shared_secret(api, namespace, secret, hostnames)
    else:
        return None
    if configmap:
        await api.publish_config_map(
            namespace, configmap, {CA_KEY: files.ca.decode("ascii")}, LABELS
        )
    return files
