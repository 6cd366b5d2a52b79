"""ServiceAccount tokens at the router door, against the real kube-apiserver.

Tokens come from the TokenRequest API (``kubectl create token``); the
router's verifier reads the API server's OIDC discovery and JWKS (and, in
``tokenreview`` mode, asks the API server per token). An expired token is
made with the cluster's own signing key (TokenRequest's minimum lifetime is
ten minutes), with the key id the API server uses.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import uuid

import jwt
import pytest
import yaml

from skyroute.router.ingress.guards.errors import GuardError
from skyroute.router.ingress.guards.kube_access import KubeAccess, from_kubeconfig
from skyroute.router.ingress.guards.sa_tokens import ServiceAccount, ServiceAccountVerifier

from kcluster import REPO, Cluster


def _token(cluster: Cluster, sa: str, audience: str = "skyroute") -> str:
    return cluster.kubectl(
        "create", "token", sa, "-n", "default", "--audience", audience, "--duration", "10m"
    ).stdout.strip()


@pytest.fixture(scope="module")
def caller(k8s_cluster: Cluster) -> str:
    name = f"caller-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl("create", "serviceaccount", name, "-n", "default")
    return name


def _verify(cluster: Cluster, token: str, mode: str = "jwks") -> ServiceAccount:
    async def go() -> ServiceAccount:
        v = ServiceAccountVerifier(from_kubeconfig(cluster.kubeconfig), mode=mode)
        return await v.verify(token)

    return asyncio.run(go())


def _refused(cluster: Cluster, token: str, mode: str = "jwks") -> GuardError:
    with pytest.raises(GuardError) as exc:
        _verify(cluster, token, mode)
    assert exc.value.status == 401 and exc.value.code == "invalid_api_key"
    return exc.value


@pytest.mark.parametrize("mode", ["jwks", "tokenreview"])
def test_token_request_tokens_verify(k8s_cluster: Cluster, caller: str, mode: str) -> None:
    sa = _verify(k8s_cluster, _token(k8s_cluster, caller), mode)
    assert (sa.namespace, sa.name) == ("default", caller)


@pytest.mark.parametrize("mode", ["jwks", "tokenreview"])
def test_wrong_audience_is_refused(k8s_cluster: Cluster, caller: str, mode: str) -> None:
    _refused(k8s_cluster, _token(k8s_cluster, caller, audience="someone-else"), mode)


def test_local_verification_caches_keys_and_tokens(k8s_cluster: Cluster, caller: str) -> None:
    async def go() -> tuple[int, int]:
        v = ServiceAccountVerifier(from_kubeconfig(k8s_cluster.kubeconfig))
        tok = _token(k8s_cluster, caller)
        for _ in range(20):
            await v.verify(tok)
        return len(v._keys), v.reviews

    keys, reviews = asyncio.run(go())
    assert keys >= 1 and reviews == 0


def test_expired_and_forged_tokens_are_refused(k8s_cluster: Cluster, caller: str) -> None:
    real = _token(k8s_cluster, caller)
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    signing_key = (k8s_cluster.kubeconfig.parent / "pki" / "sa.key").read_bytes()
    now = int(time.time())
    expired = jwt.encode(
        {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600},
        signing_key,
        algorithm="RS256",
        headers={"kid": header["kid"]},
    )
    assert "expired" in _refused(k8s_cluster, expired).message
    _refused(k8s_cluster, expired, "tokenreview")
    # Same claims, signed by a key the API server never had.
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": header["kid"]})
    _refused(k8s_cluster, forged)
    _refused(k8s_cluster, forged, "tokenreview")
    _refused(k8s_cluster, real[:-4] + "AAAA")


def test_the_router_service_account_can_verify_with_deploys_rbac(
    k8s_cluster: Cluster, caller: str
) -> None:
    """With only deploy/components/router-sa-tokens' RBAC, the router's own token verifies.

    The router runs as ``skyroute-system/skyroute-router`` with the API server's
    credentials replaced by a token of that ServiceAccount (what the projected
    volume holds in a pod): without the component's bindings TokenReview is
    forbidden, with them both modes verify a caller's token.
    """
    ns = "skyroute-system"
    k8s_cluster.kubectl("create", "namespace", ns, check=False)
    k8s_cluster.kubectl("create", "serviceaccount", "skyroute-router", "-n", ns, check=False)
    own = k8s_cluster.kubectl(
        "create", "token", "skyroute-router", "-n", ns, "--duration", "10m"
    ).stdout.strip()
    admin = from_kubeconfig(k8s_cluster.kubeconfig)
    # The CA alone (no admin client certificate): the router's bearer token is the identity.
    cfg = yaml.safe_load(k8s_cluster.kubeconfig.read_text())
    ca = cfg["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(ca["certificate-authority-data"]).decode()
        if "certificate-authority-data" in ca
        else None,
        cafile=ca.get("certificate-authority"),
    )
    as_router = KubeAccess(admin.server, ctx, token=own)
    caller_token = _token(k8s_cluster, caller)

    def verify(mode: str) -> ServiceAccount:
        async def go() -> ServiceAccount:
            return await ServiceAccountVerifier(as_router, mode=mode).verify(caller_token)

        return asyncio.run(go())

    rbac = REPO / "deploy" / "components" / "router-sa-tokens" / "rbac.yaml"
    k8s_cluster.kubectl("delete", "-f", str(rbac), "--ignore-not-found", check=False)
    with pytest.raises(GuardError):
        verify("tokenreview")
    k8s_cluster.kubectl("apply", "-f", str(rbac))
    try:
        for mode in ("tokenreview", "jwks"):
            sa = verify(mode)
            assert (sa.namespace, sa.name) == ("default", caller)
    finally:
        k8s_cluster.kubectl("delete", "-f", str(rbac), "--ignore-not-found", check=False)
