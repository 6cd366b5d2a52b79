"""The routers' link on a cluster: TLS, ServiceAccount tokens, TokenReview and SubjectAccessReview.

The operator runs as deploy/'s ``skyroute-operator`` ServiceAccount with exactly
deploy/'s RBAC (the dev overlay applied for real, as in test_deploy_rbac.py), its
link on TLS from the CA it keeps in the Secret ``skyroute-control-tls`` and
publishes in the ConfigMap ``skyroute-control-ca``, as deploy/ runs it. Tokens
come from the TokenRequest API (``kubectl create token``), bound to Pod objects
standing in for router pods (no kubelet runs here, they stay Pending), so the
TokenReview names the pod as it does for a projected token. An expired token is
signed with the cluster's own key (TokenRequest's minimum lifetime is ten minutes).

* a real ``skyroute router`` with its token gets snapshots;
* no token, another audience, an expired token, a ServiceAccount that is not a
  router's: refused (UNAUTHENTICATED, or PERMISSION_DENIED for a valid token of
  the wrong account), and counted;
* one router pod's token cannot open another pod's node, nor report for it;
* an admin write needs a Kubernetes token: 401 without, 403 without the RBAC
  permission ``update routingpolicies/rollout``, 200 (a canary promoted) once granted.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from test_deploy_rbac import (  # noqa: F401
    NS,
    installed,
    pending_pod,
    sa_kubeconfig,
    token_kubeconfig,
)

from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

from harness import Proc, free_port, http_get, wait_until
from kcluster import Cluster
from opstack import acmeshop_yaml

AUDIENCE = "skyroute-control"
ROUTER_SA = "skyroute-router"


@dataclass
class Link:
    cluster: Cluster
    ns: str
    grpc: str
    admin: str
    ca: bytes
    operator: Proc
    tmp: Path
    health: str

    def status(self) -> dict[str, Any]:
        code, body = https(self, "GET", "/debug/status")
        assert code == 200, body
        return body

    def rejected(self, reason: str) -> int:
        return int(self.status().get("rejected", {}).get(reason, 0))


def https(link: Link, method: str, path: str, token: str = "") -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context(cadata=link.ca.decode())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(
        f"https://{link.admin}{path}",
        method=method,
        data=b"" if method == "POST" else None,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def router_pod(cluster: Cluster, name: str) -> None:
    pod = pending_pod(name, ROUTER_SA, "router")
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))


def token(
    cluster: Cluster,
    sa: str = ROUTER_SA,
    ns: str = NS,
    audience: str | None = AUDIENCE,
    pod: str | None = None,
) -> str:
    args = ["create", "token", sa, "-n", ns, "--duration", "10m"]
    if audience:
        args += ["--audience", audience]
    if pod:
        args += ["--bound-object-kind", "Pod", "--bound-object-name", pod]
    return str(cluster.kubectl(*args).stdout.strip())


@pytest.fixture(scope="module")
def link(installed: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Link]:  # noqa: F811
    cluster = installed
    tmp = tmp_path_factory.mktemp("link")
    ns = f"link-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=acmeshop_yaml("http://127.0.0.1:9"))
    for pod in ("router-a", "router-b"):
        router_pod(cluster, pod)
    cluster.kubectl(
        "delete", "secret", "skyroute-control-tls", "-n", NS, "--ignore-not-found", check=False
    )
    grpc_addr, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    health = f"127.0.0.1:{free_port()}"
    operator = Proc(
        "operator-link",
        [
            "operator",
            "--namespace",
            ns,
            "--listen",
            grpc_addr,
            "--admin",
            admin,
            "--lease",
            "",
            "--status-settle",
            "0.2",
            "--status-interval",
            "0.2",
            "--link-tls-secret",
            "skyroute-control-tls",
            "--link-hostname",
            "127.0.0.1",
            "--link-ca-configmap",
            "skyroute-control-ca",
            "--health-listen",
            health,
        ],
        env={
            "KUBECONFIG": str(sa_kubeconfig(cluster, tmp / "sa-kubeconfig")),
            "POD_NAMESPACE": NS,
        },
    )
    try:

        def published() -> bool:
            got = cluster.kubectl(
                "get", "configmap", "skyroute-control-ca", "-n", NS, "-o", "json", check=False
            )
            if got.returncode != 0 or not operator.alive():
                assert operator.alive(), operator.output()[-3000:]
                return False
            ca = json.loads(got.stdout)["data"]["ca.crt"]
            (tmp / "ca.crt").write_text(ca)
            return True

        wait_until(published, timeout=30, interval=0.2, what="the link CA ConfigMap")
        ca = (tmp / "ca.crt").read_bytes()
        state = Link(cluster, ns, grpc_addr, admin, ca, operator, tmp, health)

        def answers() -> bool:
            assert operator.alive(), operator.output()[-3000:]
            try:
                return https(state, "GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(answers, timeout=30, interval=0.2, what="the operator's HTTPS admin port")
        yield state
    finally:
        operator.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl(
            "delete", "pod", "router-a", "router-b", "-n", NS, "--wait=false", check=False
        )


SPLIT = {
    "stickiness": "user",
    "steps": [{"weight": 5, "pauseSeconds": 86400}],
    "analysis": {"intervalSeconds": 3600},
}


def rollout_phase(link: Link) -> str:
    got = link.cluster.kubectl(
        "get",
        "routingpolicy",
        "gated",
        "-n",
        link.ns,
        "-o",
        "jsonpath={.status.rollout.phase}",
        check=False,
    )
    return str(got.stdout)


def open_stream(link: Link, node: str, bearer: str | None) -> tuple[grpc.StatusCode, str]:
    """One StreamSnapshots as ``node`` over the TLS link: (OK, version) or (code, details)."""
    creds = grpc.ssl_channel_credentials(link.ca)
    metadata = (("authorization", f"Bearer {bearer}"),) if bearer else ()
    with grpc.secure_channel(link.grpc, creds) as ch:
        stub = distribution_pb2_grpc.PolicyDistributionStub(ch)
        hello = distribution_pb2.SnapshotRequest(node=distribution_pb2.Node(id=node))
        call = stub.StreamSnapshots(iter([hello]), metadata=metadata, timeout=10)
        try:
            first = next(call)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
        call.cancel()
        return grpc.StatusCode.OK, first.version_info


def report(link: Link, node: str, bearer: str, version: str) -> int:
    creds = grpc.ssl_channel_credentials(link.ca)
    outcome = distribution_pb2.Outcome(
        request_id=uuid.uuid4().hex,
        policy="acmeshop",
        snapshot_version=version,
        pool="cost",
        model="gemini-3-flash",
        latency_ms=120.0,
        prompt_tokens=10,
        completion_tokens=5,
        attempts=1,
        unix_ms=int(time.time() * 1000),
    )
    batch = distribution_pb2.OutcomeBatch(node=distribution_pb2.Node(id=node), outcomes=[outcome])
    with grpc.secure_channel(link.grpc, creds) as ch:
        stub = distribution_pb2_grpc.PolicyDistributionStub(ch)
        summary = stub.ReportOutcomes(
            iter([batch]), metadata=(("authorization", f"Bearer {bearer}"),), timeout=10
        )
    return int(summary.received)


def tls_router(name: str, control: str, ca: Path, token_file: Path, node: str) -> tuple[Proc, str]:
    """A real router on the TLS link with a token, as a router pod runs: (process, HTTP addr)."""
    http_addr = f"127.0.0.1:{free_port()}"
    router = Proc(
        name,
        [
            "router",
            "--control",
            control,
            "--control-ca",
            str(ca),
            "--control-token",
            str(token_file),
            "--id",
            node,
            "--grpc",
            f"127.0.0.1:{free_port()}",
            "--http",
            http_addr,
            "--admin-listen",
            f"127.0.0.1:{free_port()}",
            "--open-without-tenants",
        ],
    )
    return router, http_addr


def test_a_router_with_its_token_gets_snapshots(link: Link) -> None:
    (link.tmp / "token").write_text(token(link.cluster, pod="router-a"))
    router, http_addr = tls_router(
        "router-link", link.grpc, link.tmp / "ca.crt", link.tmp / "token", "router-a"
    )
    try:
        wait_until(
            lambda: http_get(f"http://{http_addr}/readyz")[0] == 200,
            timeout=30,
            interval=0.2,
            what=f"router ready\n{router.output()[-2000:]}\n{link.operator.output()[-2000:]}",
        )
        status = link.status()
        assert status["authentication"] == "token"
        (entry,) = [r for r in status["routers"] if r["node"]["id"] == "router-a"]
        assert entry["state"] == "SYNCED" and entry["acked_version"] == status["version"]
    finally:
        router.stop()


def _expired(cluster: Cluster) -> str:
    real = token(cluster, pod="router-a")
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    now = int(time.time())
    key = (cluster.kubeconfig.parent / "pki" / "sa.key").read_bytes()
    return jwt.encode(
        {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600},
        key,
        algorithm="RS256",
        headers={"kid": header["kid"]},
    )


def test_tokens_that_do_not_prove_a_router_are_refused(link: Link) -> None:
    cluster = link.cluster
    caller = f"caller-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "serviceaccount", caller, "-n", "default")
    cluster.kubectl("create", "serviceaccount", caller, "-n", NS)
    before = link.rejected("unauthenticated")
    refused = {
        "none": open_stream(link, "router-a-x", None),
        "audience": open_stream(
            link, "router-a-x", token(cluster, audience="someone-else", pod="router-a")
        ),
        "api-audience": open_stream(link, "router-a-x", token(cluster, audience=None)),
        "expired": open_stream(link, "router-a-x", _expired(cluster)),
        "garbage": open_stream(link, "router-a-x", "not-a-token"),
    }
    for what, (code, details) in refused.items():
        assert code == grpc.StatusCode.UNAUTHENTICATED, (what, code, details)
    assert "bearer token is required" in refused["none"][1]
    assert link.rejected("unauthenticated") >= before + len(refused)
    # Valid tokens of accounts that are not the routers': authenticated, not allowed.
    for who in (token(cluster, caller, "default"), token(cluster, caller, NS)):
        code, details = open_stream(link, "router-a-x", who)
        assert code == grpc.StatusCode.PERMISSION_DENIED, details
    assert "not a router or operator" in details
    # Plaintext to the TLS port never gets as far as sending a token.
    with grpc.insecure_channel(link.grpc) as ch:
        stub = distribution_pb2_grpc.PolicyDistributionStub(ch)
        with pytest.raises(grpc.RpcError) as exc:
            next(stub.StreamSnapshots(iter([]), timeout=5))
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_one_router_pod_cannot_open_or_report_for_another(link: Link) -> None:
    a, b = token(link.cluster, pod="router-a"), token(link.cluster, pod="router-b")
    code, version = open_stream(link, "router-a-7", a)
    assert code == grpc.StatusCode.OK and version
    before = link.rejected("identity_mismatch")
    code, details = open_stream(link, "router-a-8", b)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "may not claim node 'router-a-8'" in details
    assert report(link, "router-a-7", b, version) == 0
    assert link.rejected("identity_mismatch") == before + 2  # the claim and the report
    assert report(link, "router-a-7", a, version) == 1


def cli(link: Link, bearer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``skyroute ARGS --admin ... --admin-ca ...`` with a kubeconfig whose user is ``bearer``."""
    path = token_kubeconfig(link.cluster, bearer, link.tmp / f"kubeconfig-{uuid.uuid4().hex[:6]}")
    argv = [*args, "--admin", link.admin, "--admin-ca", str(link.tmp / "ca.crt")]
    return subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(path)},
    )


def test_admin_writes_need_rbac_for_the_rollout_subresource(link: Link) -> None:
    cluster = link.cluster
    user = f"admin-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "serviceaccount", user, "-n", link.ns)
    path = f"/rollouts/{link.ns}/acmeshop/promote"
    assert https(link, "POST", path)[0] == 401
    assert https(link, "POST", path, "not-a-token")[0] == 401
    caller = token(cluster, user, link.ns, audience=None)  # the API server's own audience
    code, body = https(link, "POST", path, caller)
    assert code == 403 and "routingpolicies/rollout" in body["error"], body
    # Reads stay open (probes and dashboards); the router token is no admin either.
    assert https(link, "GET", "/debug/rollouts")[0] == 200
    assert https(link, "POST", path, token(cluster, audience=None))[0] == 403
    cluster.kubectl(
        "create",
        "role",
        "rollout-admin",
        "-n",
        link.ns,
        "--verb=update",
        "--resource=routingpolicies.skyroute.io/rollout",
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "rollout-admin",
        "-n",
        link.ns,
        "--role=rollout-admin",
        f"--serviceaccount={link.ns}:{user}",
    )
    # A canary in flight on a policy with a rollout: the write that promotes it.
    gated = f"/rollouts/{link.ns}/gated/promote"
    for pool in ("cost", "balanced"):
        doc = {
            "apiVersion": "skyroute.io/v1alpha1",
            "kind": "RoutingPolicy",
            "metadata": {"name": "gated"},
            "spec": {"defaultPool": pool, "rollout": SPLIT},
        }
        cluster.kubectl("apply", "-n", link.ns, "-f", "-", stdin=json.dumps(doc))
        phase = "Stable" if pool == "cost" else "Progressing"
        wait_until(
            lambda want=phase: rollout_phase(link) == want,
            timeout=20,
            interval=0.25,
            what=f"gated {phase}\n{link.operator.output()[-2000:]}",
        )
    # A refusal is cached for a few seconds; then the grant holds.
    found: list[Any] = []

    def granted() -> bool:
        found[:] = https(link, "POST", gated, caller)
        return found[0] not in (401, 403)

    wait_until(granted, timeout=20, interval=0.5, what=f"the grant to apply ({found})")
    assert found[0] == 200 and found[1]["acted"] is True, found
    wait_until(lambda: rollout_phase(link) == "Promoted", timeout=20, interval=0.25)
    # Another namespace's policy is not covered by the namespaced grant.
    code, _ = https(link, "POST", "/rollouts/default/gated/promote", caller)
    assert code == 403
    # The spend ledger is the one read behind authorisation: get on tenants/spend.
    spend = "/spend?tenant=acme-web"
    code, body = https(link, "GET", spend, caller)
    assert code == 403 and "tenants/spend" in body["error"], body
    name = f"spend-reader-{user}"
    cluster.kubectl(
        "create", "clusterrole", name, "--verb=get", "--resource=tenants.skyroute.io/spend"
    )
    try:
        cluster.kubectl(
            "create",
            "clusterrolebinding",
            name,
            f"--clusterrole={name}",
            f"--serviceaccount={link.ns}:{user}",
        )

        def readable() -> bool:
            found[:] = https(link, "GET", spend, caller)
            return found[0] not in (401, 403)

        wait_until(readable, timeout=20, interval=0.5, what=f"the spend grant ({found})")
        assert found[0] == 200, found
        # The CLI sends the caller's kubeconfig credentials (no --admin-token-file).
        granted_cli = cli(link, caller, "spend", "--tenant", "acme-web", "--json")
        assert granted_cli.returncode == 0, granted_cli.stderr
        assert json.loads(granted_cli.stdout)["tenant"] == "acme-web"
        other = token(cluster, audience=None)  # the router ServiceAccount: no grant
        refused_cli = cli(link, other, "spend", "--tenant", "acme-web")
        assert refused_cli.returncode == 1 and "403" in refused_cli.stderr, refused_cli.stderr
    finally:
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", name, check=False)
    # Every tenant's recent outcomes: get on tenants/outcomes; neither a rollout nor the
    # spend grant is enough.
    code, body = https(link, "GET", "/outcomes", caller)
    assert code == 403 and "tenants/outcomes" in body["error"], body
    reader = f"outcomes-reader-{user}"
    cluster.kubectl(
        "create", "clusterrole", reader, "--verb=get", "--resource=tenants.skyroute.io/outcomes"
    )
    try:
        cluster.kubectl(
            "create",
            "clusterrolebinding",
            reader,
            f"--clusterrole={reader}",
            f"--serviceaccount={link.ns}:{user}",
        )

        def exported() -> bool:
            found[:] = https(link, "GET", "/outcomes", caller)
            return found[0] not in (401, 403)

        wait_until(exported, timeout=20, interval=0.5, what=f"the outcomes grant ({found})")
        assert found[0] == 200 and "outcomes" in found[1], found
    finally:
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", reader, check=False)


def test_the_probe_port_is_plaintext_health_and_nothing_else(link: Link) -> None:
    """The kubelet's grpc: probe cannot speak TLS: --health-listen serves it health only."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(link.health) as ch:
        check = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="skyroute.v1.PolicyDistribution"), timeout=5
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        stub = distribution_pb2_grpc.PolicyDistributionStub(ch)
        with pytest.raises(grpc.RpcError) as exc:
            stub.GetStatus(distribution_pb2.StatusRequest(), timeout=5)
        assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reviews_are_cached_per_token_and_the_cache_is_bounded(link: Link) -> None:
    import asyncio

    from kubernetes import config

    from skyroute.control.distribution.tokens import TokenRefused
    from skyroute.control.kube.linkauth import Reviews

    reviews = Reviews(config.new_client_from_config(str(link.cluster.kubeconfig)), max_entries=3)
    tokens = [token(link.cluster, pod="router-a") for _ in range(5)]

    async def go() -> None:
        for _ in range(10):
            user = await reviews.user(tokens[0], [AUDIENCE])
        assert user.service_account == (NS, ROUTER_SA) and user.pod == "router-a"
        assert reviews.calls == 1
        with pytest.raises(TokenRefused):
            await reviews.user(tokens[0], ["someone-else"])  # another audience: its own entry
        for t in tokens[1:]:
            await reviews.user(t, [AUDIENCE])
        assert reviews.calls == 6 and len(reviews._cache) <= 3

    asyncio.run(go())


def test_the_operator_refuses_a_plaintext_link_unless_told(k8s_cluster: Cluster) -> None:
    import os
    import subprocess
    import sys

    def start(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "skyroute.cli.main", "operator", "--lease", "", *args],
            env={**os.environ, "KUBECONFIG": str(k8s_cluster.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    plain = start()
    assert plain.returncode != 0 and "--insecure for plaintext" in plain.stderr, plain.stderr
    both = start("--insecure", "--link-tls-secret", "x")
    assert both.returncode != 0 and "exclude each other" in both.stderr
    bad = start("--link-tls-secret", "x", "--router-service-account", "a/b/c")
    assert bad.returncode != 0 and "NAMESPACE/NAME" in bad.stderr


def test_replicas_forward_outcomes_over_tls_with_the_operators_token(link: Link) -> None:
    """A follower's forwarder: the link's CA for the certificate's name, its own token."""
    import asyncio

    from skyroute.control.kube.forward import OutcomeForwarder

    operator_token = link.tmp / "operator-token"
    operator_token.write_text(token(link.cluster, "skyroute-operator"))
    router_token = token(link.cluster, pod="router-a")
    outcome = distribution_pb2.Outcome(request_id="f1", policy="acmeshop", pool="cost")

    def forwarder(bearer: str) -> OutcomeForwarder:
        fw = OutcomeForwarder("op-b", lambda: link.grpc, lambda: True, lambda p, v: True)
        fw.credentials = grpc.ssl_channel_credentials(link.ca)
        fw.server_name = "127.0.0.1"  # the first --link-hostname: what the certificate names
        fw.metadata = lambda: (("authorization", f"Bearer {bearer}"),)
        return fw

    async def send(fw: OutcomeForwarder) -> None:
        await fw._send(link.grpc, [outcome], [])
        await fw._channel.close()  # type: ignore[union-attr]

    def refusals() -> int:
        return sum(int(v) for v in link.status().get("rejected", {}).values())

    before, wrong = refusals(), link.rejected("wrong_role")
    asyncio.run(send(forwarder(operator_token.read_text())))
    assert refusals() == before  # the operator's account may forward: nothing refused
    asyncio.run(send(forwarder(router_token)))
    assert link.rejected("wrong_role") == wrong + 1  # a router's may not
