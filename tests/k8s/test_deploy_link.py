"""deploy/ end to end with TLS: the operator and a router run with deploy/'s own arguments.

The dev overlay is applied to the real kube-apiserver (as in test_deploy_rbac.py;
no kubelet runs here). Then this test plays the kubelet for deploy/'s two
containers: it reads their ``args``, ``env`` and ``volumeMounts`` from the
rendered Deployments and runs ``skyroute operator`` and ``skyroute router`` on
this machine with exactly those arguments, changing only what a Pod has and a
process here does not:

* each ``0.0.0.0:PORT`` listener (and the router's ``--control`` Service address)
  becomes a loopback port;
* each mounted volume becomes a directory with what the kubelet would put there:
  the ConfigMap's keys (``skyroute-control-ca``, read from the cluster), a
  projected ServiceAccount token with the manifest's audience and lifetime,
  bound to a Pod object (``kubectl create token --bound-object-kind Pod``);
* the operator's KUBECONFIG is its ServiceAccount's token (in-cluster config),
  and ``--link-hostname=127.0.0.1`` is added, since the router reaches it by
  that address instead of the Service's name.

So what deploy/ ships (no ``--insecure`` anywhere) is what is tested: the
router's stream is TLS from the CA the operator publishes, its token is
checked by TokenReview, its node id is bound to its pod, and the probes the
manifests declare answer on the ports and schemes they name.

The same runs with the component ``deploy/components/link-cert-manager``, this
test playing cert-manager (no controller runs here): it issues the CA and the
Certificate's serving certificate into its Secret, then renews it under the
router's open stream, as cert-manager does before the certificate ends. Both
of the operator's ports serve the new certificate on their next handshake,
and the router's stream stays open and keeps getting pushes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_deploy_rbac import NS, POD, installed, pending_pod, sa_kubeconfig  # noqa: F401

from skyroute.control.pki import Authority
from skyroute.router.workers import resolve as resolve_workers

from harness import Proc, free_port, http_get, wait_until
from kcluster import REPO, Cluster
from opstack import acmeshop_yaml

SERVING = health_pb2.HealthCheckResponse.SERVING
# What an operator started with deploy/'s arguments makes for itself in its namespace.
CERTIFICATES = (
    ("secret", "skyroute-control-tls"),
    ("configmap", "skyroute-control-ca"),
    ("secret", "skyroute-webhook-tls"),
)


def containers(cluster: Cluster, kustomization: Path) -> dict[str, dict[str, Any]]:
    """The rendered Deployments by name: (container, pod spec), and every object."""
    rendered = cluster.kubectl("kustomize", str(kustomization)).stdout
    found: dict[str, dict[str, Any]] = {"": {"objects": []}}
    for doc in yaml.safe_load_all(rendered):
        if not doc:
            continue
        found[""]["objects"].append(doc)
        if doc["kind"] == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            found[doc["metadata"]["name"]] = {"container": spec["containers"][0], "pod": spec}
    return found


class Kubelet:
    """What a Pod's container would see, made on this machine for one process."""

    def __init__(self, cluster: Cluster, tmp: Path, pod: str) -> None:
        self.cluster, self.tmp, self.pod = cluster, tmp, pod
        self.ports: dict[int, str] = {}  # container port -> loopback address

    def listen(self, port: int) -> str:
        return self.ports.setdefault(port, f"127.0.0.1:{free_port()}")

    def mounts(self, deployment: dict[str, Any]) -> dict[str, Path]:
        """mountPath -> a local directory holding what the kubelet would mount there."""
        pod, container = deployment["pod"], deployment["container"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        out: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            # As the kubelet: the mount point is a link to a fresh directory, swapped at once.
            folder = self.tmp / f"{self.pod}-{mount['name']}-{uuid.uuid4().hex[:6]}"
            folder.mkdir(parents=True)
            if "secret" in volume:
                got = self.cluster.kubectl(
                    "get",
                    "secret",
                    volume["secret"]["secretName"],
                    "-n",
                    NS,
                    "-o",
                    "json",
                    check=not volume["secret"].get("optional", False),
                )
                data = json.loads(got.stdout)["data"] if got.returncode == 0 else {}
                for key, value in data.items():
                    (folder / key).write_bytes(base64.b64decode(value))
            elif "configMap" in volume:
                got = self.cluster.kubectl(
                    "get", "configmap", volume["configMap"]["name"], "-n", NS, "-o", "json"
                )
                for key, value in json.loads(got.stdout)["data"].items():
                    (folder / key).write_text(value)
            elif "projected" in volume:
                for source in volume["projected"]["sources"]:
                    sat = source["serviceAccountToken"]
                    token = self.cluster.kubectl(
                        "create",
                        "token",
                        pod["serviceAccountName"],
                        "-n",
                        NS,
                        "--audience",
                        sat["audience"],
                        "--duration",
                        f"{sat['expirationSeconds']}s",
                        "--bound-object-kind",
                        "Pod",
                        "--bound-object-name",
                        self.pod,
                    ).stdout.strip()
                    (folder / sat["path"]).write_text(token)
            point = self.tmp / f"{self.pod}-{mount['name']}"
            swap = self.tmp / f"{self.pod}-{mount['name']}.swap"
            swap.symlink_to(folder)
            os.replace(swap, point)
            out[mount["mountPath"]] = point
        return out

    def args(self, deployment: dict[str, Any], extra: dict[str, str]) -> list[str]:
        """The container's args: listeners on loopback, mounted paths local, ``extra``
        replacing whole values (``--control=...``)."""
        mounts = self.mounts(deployment)
        out = []
        for arg in deployment["container"]["args"]:
            flag = arg.split("=", 1)[0]
            if flag in extra:
                arg = f"{flag}={extra[flag]}"
            match = re.fullmatch(r"(--[\w-]+)=0\.0\.0\.0:(\d+)", arg)
            if match:
                arg = f"{match[1]}={self.listen(int(match[2]))}"
            for path, local in mounts.items():
                arg = arg.replace(f"={path}/", f"={local}/")
            out.append(arg)
        return out

    def probe(self, probe: dict[str, Any], container: dict[str, Any], ca: bytes) -> bool:
        """One kubelet probe (httpGet or grpc) against this process: passed?"""
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        if "grpc" in probe:
            address = self.ports[probe["grpc"]["port"]]
            with grpc.insecure_channel(address) as ch:  # kubelet gRPC probes are plaintext
                stub = health_pb2_grpc.HealthStub(ch)
                request = health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", ""))
                try:
                    return bool(stub.Check(request, timeout=2).status == SERVING)
                except grpc.RpcError:
                    return False
        get = probe["httpGet"]
        port = get["port"] if isinstance(get["port"], int) else named[get["port"]]
        scheme = get.get("scheme", "HTTP").lower()
        url = f"{scheme}://{self.ports[port]}{get['path']}"
        if scheme == "http":
            return http_get(url)[0] == 200
        context = ssl.create_default_context(cadata=ca.decode())
        context.check_hostname = False  # the kubelet does not verify either
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as r:
                return int(r.status) == 200
        except OSError:
            return False


def policies(rename: dict[str, str] | None = None) -> str:
    """AcmeShop's pools and policies, none of them the default: the operator runs
    cluster-wide, and another namespace of this session may hold a default policy."""
    docs = [d for d in yaml.safe_load_all(acmeshop_yaml("http://127.0.0.1:9")) if d]
    for d in docs:
        d["spec"].pop("default", None)
    if rename is not None:
        docs = [d for d in docs if d["metadata"]["name"] in rename and d["kind"] == "RoutingPolicy"]
        for d in docs:
            d["metadata"] = {"name": rename[d["metadata"]["name"]]}
    return "\n---\n".join(yaml.safe_dump(d) for d in docs)


@dataclass
class Running:
    cluster: Cluster
    ns: str
    operator: Proc
    op_kubelet: Kubelet
    operator_d: dict[str, Any]
    router_pod: str
    ca: bytes

    def status(self) -> dict[str, Any]:
        context = ssl.create_default_context(cadata=self.ca.decode())
        admin = self.op_kubelet.ports[7071]
        with urllib.request.urlopen(
            f"https://{admin}/debug/status", timeout=10, context=context
        ) as r:
            return dict(json.loads(r.read()))

    def rows(self) -> list[dict[str, Any]]:
        rows = self.status()["routers"]
        return [r for r in rows if r["node"]["id"].startswith(f"{self.router_pod}-")]

    def served(self, port: int) -> x509.Certificate:
        """The certificate the operator's ``port`` (7070, 7071) presents to a new handshake."""
        host, number = self.op_kubelet.ports[port].rsplit(":", 1)
        pem = ssl.get_server_certificate((host, int(number)))
        return x509.load_pem_x509_certificate(pem.encode())


def forget_certificates(cluster: Cluster) -> None:
    """Delete the certificates (and the published CA) an operator makes for itself."""
    for kind, name in CERTIFICATES:
        cluster.kubectl("delete", kind, name, "-n", NS, "--ignore-not-found", check=False)


@contextmanager
def deployed(
    cluster: Cluster, tmp_path: Path, kustomization: Path, before: Callable[[], None]
) -> Iterator[Running]:
    """The rendered operator and router as processes, the router SYNCED over TLS."""
    deployments = containers(cluster, kustomization)
    operator_d, router_d = deployments["skyroute-operator"], deployments["skyroute-router"]
    for d in (operator_d, router_d):
        assert not [a for a in d["container"]["args"] if "insecure" in a], d["container"]["args"]
    ns = f"deploy-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=policies())
    # The router's node id defaults to its host name plus a suffix, as a pod's would.
    router_pod = socket.gethostname().lower()
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", router_pod), router_pod
    cluster.kubectl(
        "apply", "-f", "-", stdin=json.dumps(pending_pod(router_pod, "skyroute-router", "router"))
    )
    forget_certificates(cluster)
    before()
    op_kubelet = Kubelet(cluster, tmp_path, POD)
    op_args = op_kubelet.args(operator_d, {})
    op_args += ["--link-hostname=127.0.0.1"]
    env = {e["name"]: e for e in operator_d["container"].get("env", [])}
    assert {"POD_NAME", "POD_NAMESPACE"} <= set(env)
    operator = Proc(
        "deploy-operator",
        op_args,
        env={
            "KUBECONFIG": str(sa_kubeconfig(cluster, tmp_path / "operator-kubeconfig")),
            "POD_NAME": POD,
            "POD_NAMESPACE": NS,
            "POD_IP": "127.0.0.1",
        },
    )
    router: Proc | None = None
    try:
        published: dict[str, str] = {}

        def ca_published() -> bool:
            assert operator.alive(), operator.output()[-3000:]
            got = cluster.kubectl(
                "get", "configmap", "skyroute-control-ca", "-n", NS, "-o", "json", check=False
            )
            if got.returncode == 0:
                published.update(json.loads(got.stdout)["data"])
            return "ca.crt" in published

        wait_until(ca_published, timeout=60, interval=0.3, what="the link CA ConfigMap")
        ca = published["ca.crt"].encode()
        op_container = operator_d["container"]
        for kind in ("livenessProbe", "readinessProbe"):
            wait_until(
                lambda kind=kind: op_kubelet.probe(op_container[kind], op_container, ca),
                timeout=60,
                interval=0.3,
                what=f"the operator's {kind}\n{operator.output()[-3000:]}",
            )
        running = Running(cluster, ns, operator, op_kubelet, operator_d, router_pod, ca)
        # The link's certificate names the Service deploy/ points routers at.
        names = running.served(7070).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        control = next(
            a.split("=", 1)[1] for a in router_d["container"]["args"] if a.startswith("--control=")
        )
        assert control.rsplit(":", 1)[0] in names.value.get_values_for_type(x509.DNSName)

        r_kubelet = Kubelet(cluster, tmp_path, router_pod)
        r_args = r_kubelet.args(router_d, {"--control": op_kubelet.ports[7070]})
        assert any(a.startswith("--control-ca=") for a in r_args)
        assert any(a.startswith("--control-token=") for a in r_args)
        router = Proc("deploy-router", r_args)
        r_container = router_d["container"]
        for kind in ("livenessProbe", "readinessProbe"):
            wait_until(
                lambda kind=kind: r_kubelet.probe(r_container[kind], r_container, ca),
                timeout=90,
                interval=0.3,
                what=f"the router's {kind}\n{router.output()[-3000:]}\n{operator.output()[-3000:]}",
            )

        # Every worker process of the router (--workers=auto: as many as this machine's
        # CPU limit, resolved here as the router resolves it), not the first one only.
        spec = next((a.split("=", 1)[1] for a in r_args if a.startswith("--workers=")), "1")
        workers = resolve_workers(spec)

        def synced() -> bool:
            rows = running.rows()
            return len(rows) == workers and all(r["state"] == "SYNCED" for r in rows)

        wait_until(synced, timeout=60, interval=0.3, what="the deploy/ router SYNCED")
        now = running.status()
        assert now["authentication"] == "token"
        assert {r["identity"] for r in running.rows()} == {f"{NS}/skyroute-router/{router_pod}"}
        assert not now.get("rejected", {}).get("unauthenticated")
        yield running
    finally:
        if router is not None:
            router.stop()
        operator.stop()
        # No namespace controller runs here: delete what this test made, or the next
        # cluster-wide operator of the session compiles it too.
        cluster.kubectl("delete", "routingpolicies,modelpools", "--all", "-n", ns, check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "pod", router_pod, "-n", NS, "--wait=false", check=False)
        # Nor the certificates this operator made for deploy/'s Service names: the next
        # operator of the session (with --webhook-hostname/--link-hostname 127.0.0.1)
        # would find them and serve names it did not ask for.
        forget_certificates(cluster)


def test_deploy_runs_the_link_on_tls_with_service_account_tokens(
    installed: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    dev = REPO / "deploy" / "overlays" / "dev"
    with deployed(installed, tmp_path, dev, lambda: None) as running:
        # The operator made the CA and the certificate itself, in the Secret deploy/ names.
        secret = json.loads(
            installed.kubectl(
                "get", "secret", "skyroute-control-tls", "-n", NS, "-o", "json"
            ).stdout
        )
        assert base64.b64decode(secret["data"]["ca.crt"]) == running.ca


def _issue(ca: Authority, names: list[str]) -> dict[str, Any]:
    """The Secret cert-manager writes for a Certificate: tls.crt, tls.key, ca.crt."""
    cert, key = ca.issue(names[0], hostnames=names, days=90)
    data = {"tls.crt": cert, "tls.key": key, "ca.crt": ca.cert_pem}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "skyroute-control-tls", "namespace": NS},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def test_with_cert_manager_the_link_certificate_renews_under_an_open_stream(
    installed: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    cluster = installed
    top = tmp_path / "cert-manager"
    top.mkdir()
    (top / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(REPO / "deploy" / "overlays" / "dev", top)],
                "components": [
                    os.path.relpath(REPO / "deploy" / "components" / "link-cert-manager", top)
                ],
            }
        )
    )
    objects = containers(cluster, top)[""]["objects"]
    (cert_spec,) = [
        o["spec"]
        for o in objects
        if o["kind"] == "Certificate" and o["spec"]["secretName"] == "skyroute-control-tls"
    ]
    base_op = containers(cluster, REPO / "deploy" / "overlays" / "dev")["skyroute-operator"]
    hostnames = [
        a.split("=", 1)[1] for a in base_op["container"]["args"] if a.startswith("--link-hostname=")
    ]
    assert cert_spec["dnsNames"] == hostnames  # the Certificate names the operator's Service
    # What is not cert-manager's passes the API server's own validation.
    ours = [o for o in objects if not o["apiVersion"].startswith("cert-manager.io/")]
    cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin="\n---\n".join(map(yaml.safe_dump, ours))
    )
    ca = Authority.create("skyroute-control-ca")
    names = [*cert_spec["dnsNames"], "127.0.0.1"]  # 127.0.0.1: this test reaches it so

    def issue() -> None:
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(_issue(ca, names)))

    with deployed(cluster, tmp_path, top, issue) as running:
        assert running.ca == ca.cert_pem  # the operator publishes cert-manager's CA
        before = running.served(7070)
        connected = {r["node"]["id"]: r["connected_unix_ms"] for r in running.rows()}
        issue()  # the renewal: a new key and certificate from the same CA
        running.op_kubelet.mounts(running.operator_d)  # the kubelet updates the volume
        renewed = x509.load_pem_x509_certificate(
            base64.b64decode(
                json.loads(
                    cluster.kubectl(
                        "get", "secret", "skyroute-control-tls", "-n", NS, "-o", "json"
                    ).stdout
                )["data"]["tls.crt"]
            )
        )
        assert renewed != before
        wait_until(
            lambda: running.served(7070) == renewed and running.served(7071) == renewed,
            timeout=20,
            interval=0.3,
            what="both ports serving the renewed certificate",
        )
        # The open stream was kept and still carries pushes.
        extra = policies({"baseline": "after-renewal"})
        cluster.kubectl("apply", "-n", running.ns, "-f", "-", stdin=extra)

        def pushed() -> bool:
            status = running.status()
            named = any(k.endswith("after-renewal") for k in status["policies"])
            return named and all(r["acked_version"] == status["version"] for r in running.rows())

        wait_until(
            pushed,
            timeout=60,
            interval=0.3,
            what=f"the push after the renewal\n{running.operator.output()[-3000:]}",
        )
        after = running.rows()
        assert {r["node"]["id"]: r["connected_unix_ms"] for r in after} == connected, after
        assert {r["state"] for r in after} == {"SYNCED"}
