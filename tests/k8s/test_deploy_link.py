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
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import yaml
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_deploy_rbac import NS, POD, installed, pending_pod, sa_kubeconfig  # noqa: F401

from harness import Proc, free_port, http_get, wait_until
from kcluster import REPO, Cluster
from opstack import acmeshop_yaml

SERVING = health_pb2.HealthCheckResponse.SERVING


def containers(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """The dev overlay's Deployments by name: (container, pod spec)."""
    rendered = cluster.kubectl("kustomize", str(REPO / "deploy" / "overlays" / "dev")).stdout
    found = {}
    for doc in yaml.safe_load_all(rendered):
        if doc and doc["kind"] == "Deployment":
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
            folder = self.tmp / f"{self.pod}-{mount['name']}"
            folder.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
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
            out[mount["mountPath"]] = folder
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


def test_deploy_runs_the_link_on_tls_with_service_account_tokens(
    installed: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    cluster = installed
    deployments = containers(cluster)
    operator_d, router_d = deployments["skyroute-operator"], deployments["skyroute-router"]
    for d in (operator_d, router_d):
        assert not [a for a in d["container"]["args"] if "insecure" in a], d["container"]["args"]
    ns = f"deploy-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=acmeshop_yaml("http://127.0.0.1:9"))
    # The router's node id defaults to its host name plus a suffix, as a pod's would.
    router_pod = socket.gethostname().lower()
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", router_pod), router_pod
    cluster.kubectl(
        "apply", "-f", "-", stdin=json.dumps(pending_pod(router_pod, "skyroute-router", "router"))
    )
    cluster.kubectl(
        "delete", "secret", "skyroute-control-tls", "-n", NS, "--ignore-not-found", check=False
    )
    cluster.kubectl(
        "delete", "configmap", "skyroute-control-ca", "-n", NS, "--ignore-not-found", check=False
    )
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
        # The link's certificate names the Service deploy/ points routers at.
        link = op_kubelet.ports[7070]
        host, port = link.rsplit(":", 1)
        served = x509.load_pem_x509_certificate(
            ssl.get_server_certificate((host, int(port))).encode()
        )
        names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        control = next(
            a.split("=", 1)[1] for a in router_d["container"]["args"] if a.startswith("--control=")
        )
        assert control.rsplit(":", 1)[0] in names.value.get_values_for_type(x509.DNSName)

        r_kubelet = Kubelet(cluster, tmp_path, router_pod)
        r_args = r_kubelet.args(router_d, {"--control": link})
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

        def status() -> dict[str, Any]:
            context = ssl.create_default_context(cadata=ca.decode())
            admin = op_kubelet.ports[7071]
            with urllib.request.urlopen(
                f"https://{admin}/debug/status", timeout=10, context=context
            ) as r:
                return dict(json.loads(r.read()))

        def synced() -> bool:
            s = status()
            rows = [r for r in s["routers"] if r["node"]["id"].startswith(f"{router_pod}-")]
            return bool(rows) and all(r["state"] == "SYNCED" for r in rows)

        wait_until(synced, timeout=60, interval=0.3, what="the deploy/ router SYNCED")
        now = status()
        assert now["authentication"] == "token"
        rows = [r for r in now["routers"] if r["node"]["id"].startswith(f"{router_pod}-")]
        assert {r["identity"] for r in rows} == {f"{NS}/skyroute-router/{router_pod}"}, rows
        assert not now.get("rejected", {}).get("unauthenticated")
    finally:
        if router is not None:
            router.stop()
        operator.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "pod", router_pod, "-n", NS, "--wait=false", check=False)
