"""The pieces of ServiceAccount-token auth on the link that need no cluster (issue 15).

What a bearer header may be, how a token-bound identity binds node ids, which
ServiceAccounts a flag names, a router's token file (re-read per stream, bounded),
and the flag combinations the router and the operator refuse. The whole path
against the real API server is tests/k8s/test_operator_link_auth.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import grpc
import pytest

from skyroute.cli.main import main
from skyroute.control.distribution.tls import Identity
from skyroute.control.distribution.tokens import MAX_TOKEN_CHARS, TokenRefused, bearer
from skyroute.control.kube.linkauth import POD_NAME_EXTRA, User, _expiry, parse_accounts
from skyroute.control.pki import Authority
from skyroute.router.sync import MAX_TOKEN_BYTES, LinkTls


def test_bearer_reads_the_authorization_metadata_only() -> None:
    assert bearer(None) == "" and bearer([("x-other", "Bearer a")]) == ""
    assert bearer([("Authorization", "Bearer  tok ")]) == "tok"
    assert bearer([("authorization", b"bearer tok")]) == "tok"
    for odd in ("Basic dXNlcg==", "Bearer ", "tok"):
        with pytest.raises(TokenRefused) as caught:
            bearer([("authorization", odd)])
        assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(TokenRefused, match="over"):
        bearer([("authorization", "Bearer " + "a" * (MAX_TOKEN_CHARS + 1))])
    denied = TokenRefused("wrong_role", "no", denied=True)
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED and denied.reason == "wrong_role"


def test_a_pod_bound_identity_binds_its_pods_node_ids_only() -> None:
    pod = Identity("skyroute-system/skyroute-router/router-a", "router", nodes="router-a")
    assert pod.binds("router-a") and pod.binds("router-a-w0") and pod.binds("router-a/x")
    assert not pod.binds("router-ab") and not pod.binds("router-b-1")
    unbound = Identity("ns/sa", "router", nodes="")
    assert unbound.binds("anything")
    cert = Identity("edge", "router")  # a certificate: its name is the prefix
    assert cert.binds("edge-1") and not cert.binds("core-1")


def test_users_accounts_and_token_expiry() -> None:
    user = User(
        "system:serviceaccount:skyroute-system:skyroute-router",
        extra={POD_NAME_EXTRA: ["router-a"]},
    )
    assert user.service_account == ("skyroute-system", "skyroute-router")
    assert user.pod == "router-a"
    for name in ("alice", "system:serviceaccount:ns", "system:serviceaccount::x"):
        assert User(name).service_account is None
    assert User("x").pod == ""
    claims = base64.urlsafe_b64encode(json.dumps({"exp": 1234}).encode()).decode().rstrip("=")
    assert _expiry(f"eyJhbGciOiJub25lIn0.{claims}.sig") == 1234.0
    assert _expiry("not-a-jwt") is None and _expiry("a.!!!.c") is None
    assert parse_accounts(["skyroute-router", "apps/edge"], "skyroute-system") == frozenset(
        {("skyroute-system", "skyroute-router"), ("apps", "edge")}
    )
    for bad in ("a/b/c", "ns/", ""):
        with pytest.raises(ValueError, match="NAMESPACE/NAME"):
            parse_accounts([bad], "d")


def test_a_routers_token_file_is_read_for_every_stream(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(Authority.create("test-ca").cert_pem)
    token = tmp_path / "token"
    token.write_text("first\n")
    tls = LinkTls.with_token(str(ca), str(token), "router-a")
    assert tls.cert is None and tls.name == "router-a"
    assert tls.metadata() == (("authorization", "Bearer first"),)
    token.write_text("rotated")  # the kubelet's rotation: the next stream sends it
    assert tls.metadata() == (("authorization", "Bearer rotated"),)
    for bad in ("", "x" * (MAX_TOKEN_BYTES + 1)):
        token.write_text(bad)
        with pytest.raises(OSError, match="no token"):
            tls.metadata()
    with pytest.raises(OSError):
        LinkTls.with_token(str(ca), str(tmp_path / "missing"), "r")


def test_router_flags_for_the_token_link(tmp_path: Path) -> None:
    def refused(*args: str) -> str:
        with pytest.raises(SystemExit) as caught:
            main(["router", "--control", "127.0.0.1:1", *args])
        return str(caught.value.code)

    assert "--control-token" in refused()
    assert "exclude each other" in refused("--insecure", "--control-token", "t")
    assert "one of --identity or --control-token" in refused("--control-token", "t")
    assert "one of --identity or --control-token" in refused(
        "--control-ca", "ca", "--identity", "r", "--control-token", "t"
    )
    assert "cannot read TLS files" in refused(
        "--control-ca", str(tmp_path / "ca"), "--control-token", str(tmp_path / "t")
    )
