"""How the router reaches the Kubernetes API server (for ServiceAccount token checks).

In a pod: the mounted ServiceAccount token and CA and ``KUBERNETES_SERVICE_HOST``.
Off-cluster (tests, a developer's shell): a kubeconfig's current context, with
certificates embedded (``*-data``) or as files, and a client certificate or a token.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(slots=True)
class KubeAccess:
    server: str
    ssl_context: ssl.SSLContext
    token_file: Path | None = None
    token: str | None = None
    _cached: tuple[float, str] | None = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        tok = self.token
        if self.token_file is not None:
            # Projected tokens rotate: re-read the file at most once a minute.
            import time

            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > 60:
                self._cached = (now, self.token_file.read_text().strip())
            tok = self._cached[1]
        return {"Authorization": f"Bearer {tok}"} if tok else {}


def in_cluster() -> KubeAccess | None:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (SA_DIR / "token").exists():
        return None
    ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
    return KubeAccess(f"https://{host}:{port}", ctx, token_file=SA_DIR / "token")


def _material(entry: dict[str, Any], name: str, tmp: Path) -> str | None:
    """Path of ``name`` (a file) or of ``name-data`` written to a private temp file."""
    if entry.get(name):
        return str(entry[name])
    data = entry.get(f"{name}-data")
    if not data:
        return None
    path = tmp / name
    path.write_bytes(base64.b64decode(data))
    path.chmod(0o600)
    return str(path)


def from_kubeconfig(path: Path) -> KubeAccess:
    cfg = yaml.safe_load(path.read_text())
    ctx_name = cfg["current-context"]
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    with tempfile.TemporaryDirectory(prefix="skyroute-kube-") as d:
        tmp = Path(d)
        ca = _material(cluster, "certificate-authority", tmp)
        sslc = ssl.create_default_context(cafile=ca)
        cert = _material(user, "client-certificate", tmp)
        key = _material(user, "client-key", tmp)
        if cert and key:
            sslc.load_cert_chain(cert, key)
    return KubeAccess(str(cluster["server"]), sslc, token=user.get("token"))
