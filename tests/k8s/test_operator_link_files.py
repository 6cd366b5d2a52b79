"""The routers' link with a certificate from elsewhere (the chart's link.tls.mode secret).

What the chart renders in those modes, run for real: the operator serves the
link with ``--link-cert/--link-key/--link-ca`` read from files laid out as a
cert-manager Secret (``tls.crt``, ``tls.key``, ``ca.crt``) signed by a CA that
is not its own, publishes that ``ca.crt`` in the ConfigMap
``skyroute-control-ca`` routers mount, and a real router trusting that CA
and presenting its projected-token stand-in gets snapshots. The operator runs
as deploy/'s ServiceAccount (test_deploy_rbac.py), as in test_operator_link_auth.py.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from test_deploy_rbac import NS, installed, sa_kubeconfig  # noqa: F401
from test_operator_link_auth import router_pod, tls_router, token

from skyroute.control.pki import Authority

from harness import Proc, free_port, http_get, wait_until
from kcluster import Cluster
from opstack import acmeshop_yaml


def test_a_link_certificate_from_a_secret_is_published_and_served(
    installed: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    cluster = installed
    ca = Authority.create("corp-issuer")
    cert, key = ca.issue("127.0.0.1", hostnames=["127.0.0.1"])
    tls = tmp_path / "link-tls"  # the Secret's keys, as its volume mounts them
    tls.mkdir()
    (tls / "tls.crt").write_bytes(cert)
    (tls / "tls.key").write_bytes(key)
    (tls / "ca.crt").write_bytes(ca.cert_pem)
    ns = f"linkfiles-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=acmeshop_yaml("http://127.0.0.1:9"))
    router_pod(cluster, "router-files")
    cluster.kubectl(
        "delete", "configmap", "skyroute-control-ca", "-n", NS, "--ignore-not-found", check=False
    )
    grpc_addr = f"127.0.0.1:{free_port()}"
    operator = Proc(
        "operator-link-files",
        [
            "operator",
            "--namespace",
            ns,
            "--listen",
            grpc_addr,
            "--admin",
            f"127.0.0.1:{free_port()}",
            "--lease",
            "",
            "--link-cert",
            str(tls / "tls.crt"),
            "--link-key",
            str(tls / "tls.key"),
            "--link-ca",
            str(tls / "ca.crt"),
            "--link-ca-configmap",
            "skyroute-control-ca",
            "--health-listen",
            f"127.0.0.1:{free_port()}",
        ],
        env={
            "KUBECONFIG": str(sa_kubeconfig(cluster, tmp_path / "sa-kubeconfig")),
            "POD_NAMESPACE": NS,
        },
    )
    router: Proc | None = None
    try:
        published: list[str] = []

        def ca_published() -> bool:
            assert operator.alive(), operator.output()[-3000:]
            got = cluster.kubectl(
                "get", "configmap", "skyroute-control-ca", "-n", NS, "-o", "json", check=False
            )
            if got.returncode == 0:
                published.append(json.loads(got.stdout)["data"]["ca.crt"])
            return bool(published)

        wait_until(ca_published, timeout=30, interval=0.2, what="the link CA ConfigMap")
        assert published[-1] == ca.cert_pem.decode()  # the given CA, not one of its own
        mounted = tmp_path / "control-ca.crt"  # what the router pod mounts from the ConfigMap
        mounted.write_text(published[-1])
        (tmp_path / "token").write_text(token(cluster, pod="router-files"))
        router, http_addr = tls_router(
            "router-link-files", grpc_addr, mounted, tmp_path / "token", "router-files"
        )
        wait_until(
            lambda: http_get(f"http://{http_addr}/readyz")[0] == 200,
            timeout=30,
            interval=0.2,
            what=f"router ready\n{router.output()[-2000:]}\n{operator.output()[-2000:]}",
        )
        # Ready means a snapshot came over TLS the router checked against the given CA only.
    finally:
        if router is not None:
            router.stop()
        operator.stop()
        # The CA published here is not deploy/'s: leave none behind for the next operator.
        cluster.kubectl(
            "delete",
            "configmap",
            "skyroute-control-ca",
            "-n",
            NS,
            "--ignore-not-found",
            check=False,
        )
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "pod", "router-files", "-n", NS, "--wait=false", check=False)
