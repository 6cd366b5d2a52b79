"""A real operator on the test API server, with routers and the provider simulator.

Everything is a real process on 127.0.0.1: ``skyroute operator`` (kopf, the
gRPC distribution server and the admission webhook, with a certificate made
here), ``skyroute router`` processes connected to it, and ``skyroute
providers`` standing in for the LLM APIs. Each stack lives in its own
namespace, with an operator watching only that namespace and a
ValidatingWebhookConfiguration selecting only that namespace, so stacks and
other suites sharing the session's API server never see each other.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from skyroute.control.kube.certs import make_certificates

from harness import Proc, free_port, http_get, wait_until
from kcluster import REPO, Cluster

CRDS = REPO / "crds"
ACME = REPO / "examples" / "acmeshop"
EXAMPLE_SIM = "http://127.0.0.1:8790"


def ensure_crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(CRDS))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/routingpolicies.skyroute.io",
        "crd/modelpools.skyroute.io",
        "crd/tenants.skyroute.io",
    )


def acmeshop_yaml(sim: str) -> str:
    """The example pools and policies, pointed at this stack's simulator."""
    text = (ACME / "pools.yaml").read_text() + "\n---\n" + (ACME / "policy.yaml").read_text()
    return text.replace(EXAMPLE_SIM, sim)


def up(proc: Proc, url: str, timeout: float, other: Proc | None = None) -> None:
    """Until ``url`` answers 200; fails at once, with its output, if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited:\n{proc.output()[-4000:]}")
        try:
            if http_get(url, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(
        f"{proc.name} not up at {url} after {timeout}s:\n{proc.output()[-3000:]}"
        + (f"\n{other.name}:\n{other.output()[-3000:]}" if other else "")
    )


class Stack:
    """Namespace + simulator + operator (+ webhook) + routers; ``close`` undoes it all."""

    def __init__(
        self,
        cluster: Cluster,
        tmp: Path,
        webhook: bool = True,
        prefix: str = "op",
        link_args: list[str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.tmp = tmp
        self.ns = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.procs: list[Proc] = []
        self.routers: list[tuple[Proc, str]] = []
        self.router_admins: list[str] = []  # each router's admin listener (/debug/status)
        # The routers' link: plaintext here (test_operator_link_auth.py covers TLS + tokens).
        self.link_args = list(link_args) if link_args is not None else ["--insecure"]
        ensure_crds(cluster)
        cluster.kubectl("create", "namespace", self.ns)
        self.sim_port = free_port()
        self.sim = f"http://127.0.0.1:{self.sim_port}"
        self.simulator = self._start(
            "providers", ["providers", "--listen", f"127.0.0.1:{self.sim_port}"]
        )
        self.grpc = f"127.0.0.1:{free_port()}"
        self.admin = f"127.0.0.1:{free_port()}"
        self.webhook_port = free_port() if webhook else 0
        self.webhook_config = f"skyroute-{self.ns}"
        if webhook:
            ca, cert, key = make_certificates(["127.0.0.1"])
            (tmp / "tls.crt").write_bytes(cert)
            (tmp / "tls.key").write_bytes(key)
            self.ca = ca
        self.operator = self.start_operator()
        if webhook:
            self.register_webhook()
        up(self.simulator, self.sim + "/healthz", 30)

    # --- processes ---------------------------------------------------------------------

    def _start(self, name: str, args: list[str]) -> Proc:
        proc = Proc(name, args)
        self.procs.append(proc)
        return proc

    def operator_args(
        self,
        identity: str = "op-a",
        grpc: str | None = None,
        admin: str | None = None,
        webhook: bool = True,
    ) -> list[str]:
        args = [
            "operator",
            "--namespace",
            self.ns,
            "--listen",
            grpc or self.grpc,
            "--admin",
            admin or self.admin,
            "--lease-namespace",
            self.ns,
            "--lease-duration",
            "3",
            "--status-settle",
            "5.0",
            "--status-interval",
            "0.2",
            "--id",
            identity,
            "--key-namespaces",
            self.ns,
            *self.link_args,
        ]
        if self.webhook_port and webhook:
            args += [
                "--webhook",
                f"127.0.0.1:{self.webhook_port}",
                "--webhook-cert",
                str(self.tmp / "tls.crt"),
                "--webhook-key",
                str(self.tmp / "tls.key"),
            ]
        return args

    def start_operator(self, identity: str = "op-a", wait: bool = True) -> Proc:
        proc = self._start(f"operator-{identity}", self.operator_args(identity))
        if wait:
            up(proc, f"http://{self.admin}/healthz", 30)
        return proc

    def restart_operator(self) -> Proc:
        self.operator.stop()
        self.operator = self.start_operator()
        return self.operator

    def start_router(self, node_id: str) -> str:
        """A router connected to the operator; returns its HTTP base URL once it serves."""
        grpc_addr, http_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        admin_addr = f"127.0.0.1:{free_port()}"
        proc = self._start(
            f"router-{node_id}",
            [
                "router",
                "--insecure",
                "--control",
                self.grpc,
                "--grpc",
                grpc_addr,
                "--http",
                http_addr,
                "--admin-listen",
                admin_addr,
                "--id",
                node_id,
                # Open until a Tenant is applied, keys after (routers are closed by default).
                "--open-without-tenants",
            ],
        )
        url = f"http://{http_addr}"
        self.routers.append((proc, url))
        self.router_admins.append(f"http://{admin_addr}")
        up(proc, url + "/readyz", 20, self.operator)
        return url

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.webhook_port:
            self.cluster.kubectl(
                "delete",
                "validatingwebhookconfiguration",
                self.webhook_config,
                "--ignore-not-found",
                check=False,
            )
        # No namespace controller runs here, so the namespace would only sit Terminating.
        self.cluster.kubectl(
            "delete",
            "routingpolicies,modelpools,tenants",
            "--all",
            "-n",
            self.ns,
            "--wait=false",
            check=False,
        )

    # --- webhook -----------------------------------------------------------------------

    def register_webhook(self) -> None:
        bundle = base64.b64encode(self.ca).decode()
        hooks = []
        for plural in ("routingpolicies", "modelpools", "tenants"):
            hooks.append(
                {
                    "name": f"{plural}.skyroute.io",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{self.webhook_port}/validate-{plural}",
                        "caBundle": bundle,
                    },
                    "rules": [
                        {
                            "apiGroups": ["skyroute.io"],
                            "apiVersions": ["v1alpha1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": [plural],
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.ns}},
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Ignore",
                    "timeoutSeconds": 5,
                }
            )
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.webhook_config},
            "webhooks": hooks,
        }
        self.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(config))

    # --- objects -----------------------------------------------------------------------

    def apply(self, text: str, check: bool = True) -> Any:
        return self.cluster.kubectl("apply", "-n", self.ns, "-f", "-", stdin=text, check=check)

    def apply_acmeshop(self) -> None:
        self.apply(acmeshop_yaml(self.sim))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        out = self.cluster.kubectl("get", kind, name, "-n", self.ns, "-o", "json").stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def example(self, kind: str, name: str) -> dict[str, Any]:
        for doc in yaml.safe_load_all(acmeshop_yaml(self.sim)):
            if doc and doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc  # type: ignore[no-any-return]
        raise KeyError((kind, name))

    def condition(self, kind: str, name: str, kind_of: str) -> dict[str, Any]:
        for cond in self.get(kind, name).get("status", {}).get("conditions", []):
            if cond["type"] == kind_of:
                return cond  # type: ignore[no-any-return]
        return {}

    def wait_condition(
        self,
        kind: str,
        name: str,
        kind_of: str,
        status: str = "True",
        timeout: float = 15.0,
        reason: str | None = None,
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def check() -> bool:
            nonlocal found
            found = self.condition(kind, name, kind_of)
            return found.get("status") == status and reason in (None, found.get("reason"))

        wait_until(
            check,
            timeout=timeout,
            interval=0.2,
            what=f"{kind}/{name} {kind_of}={status} (last {found})\n"
            f"{self.operator.output()[-3000:]}",
        )
        return found

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.cluster.kubectl(
            "get",
            "events",
            "-n",
            self.ns,
            "-o",
            "json",
            "--field-selector",
            f"involvedObject.name={name}",
        ).stdout
        return json.loads(out)["items"]  # type: ignore[no-any-return]

    # --- what routers and the operator say -------------------------------------------------

    def operator_status(self) -> dict[str, Any]:
        code, body = http_get(f"http://{self.admin}/debug/status")
        assert code == 200, body
        return json.loads(body)  # type: ignore[no-any-return]

    def router_version(self, url: str) -> str:
        code, body = http_get(url + "/readyz")
        return body.decode().split()[-1] if code == 200 else ""

    def pushes(self, proc: Proc | None = None) -> int:
        return len((proc or self.operator).events("push"))

    def holder(self) -> str:
        """The identity holding the operator's Lease."""
        return self.cluster.kubectl(
            "get",
            "lease",
            "skyroute-operator",
            "-n",
            self.ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ).stdout

    def replica(self, identity: str) -> tuple[Proc, str]:
        """One more operator replica on the same Lease (own ports); (process, admin address)."""
        grpc, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        proc = self._start(
            f"operator-{identity}",
            self.operator_args(identity, grpc=grpc, admin=admin, webhook=False),
        )
        up(proc, f"http://{admin}/healthz", 30)
        return proc, admin

    def wait_routers_on(self, version: str, timeout: float = 10.0) -> float:
        t0 = time.monotonic()
        wait_until(
            lambda: all(self.router_version(u) == version for _, u in self.routers),
            timeout=timeout,
            interval=0.02,
            what=f"routers on {version}",
        )
        return time.monotonic() - t0


def chat(url: str, model: str, text: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One OpenAI-style chat completion through a router: status, headers, JSON body."""
    import urllib.error
    import urllib.request

    body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode()
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        data=body,
        method="POST",
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"{}")


@contextlib.contextmanager
def acmeshop_stack(cluster: Cluster, tmp: Path, prefix: str) -> Iterator[Stack]:
    """A stack serving the AcmeShop example with one router synced to it."""
    s = Stack(cluster, tmp, prefix=prefix)
    try:
        s.apply_acmeshop()
        s.wait_condition("routingpolicies", "acmeshop", "Ready")
        s.start_router(f"{prefix}-r1")
        s.wait_condition("routingpolicies", "acmeshop", "Synced")
        yield s
    finally:
        s.close()


def lease_stack(cluster: Cluster, tmp: Path, prefix: str) -> Iterator[Stack]:
    """AcmeShop Ready on one operator (op-a, no webhook, no router): for Lease tests."""
    s = Stack(cluster, tmp, webhook=False, prefix=prefix)
    try:
        s.apply_acmeshop()
        s.wait_condition("routingpolicies", "acmeshop", "Ready")
        yield s
    finally:
        s.close()


def serving(stack: Stack) -> tuple[str, str, str]:
    """What serves acmeshop: the operator's snapshot, the router's, the policy status'."""
    return (
        stack.operator_status()["version"],
        stack.router_version(stack.routers[0][1]),
        stack.get("routingpolicies", "acmeshop")["status"]["version"],
    )
