"""Who is talking to the control plane: mutual TLS on the link, a token on admin writes.

``skyroute certs create DIR`` lays out a private CA and what it signs::

    DIR/ca.crt  ca.key              the CA (ca.key never leaves DIR)
    DIR/control.crt  control.key    the control plane's serving certificate
    DIR/clients/NAME.crt  NAME.key  one client certificate per router (role router)
                                    and one named admin (role admin), for the CLI
    DIR/admin.token                 the bearer token admin writes must carry

``skyroute control --tls-dir DIR`` serves the gRPC link with that CA and
*requires* a client certificate it signed (``require_client_auth``); the
admin port serves HTTPS with the same serving certificate. A router runs
with ``--control-ca DIR/ca.crt --identity DIR/clients/NAME`` (the ``.crt``
and ``.key`` beside that prefix).

The identity of a peer is its certificate's (common name, organizational
unit), read from the verified chain gRPC hands the handler, never from a
field the peer wrote. :func:`binds` says which node ids a router identity
may claim: its own name, or its name followed by ``-`` or ``/`` and a
suffix (one certificate per Deployment, pods with suffixed ids).

Rotation: the serving certificate and the CA bundle are read again when
their files change (``dynamic_ssl_server_credentials`` asks before each new
handshake), so a new certificate is used for new connections and streams
already open are never dropped.
"""

from __future__ import annotations

import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from skyroute.control.pki import Authority, subject_of

CA, CA_KEY = "ca.crt", "ca.key"
SERVER, SERVER_KEY = "control.crt", "control.key"
TOKEN = "admin.token"
CLIENTS = "clients"


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified peer: ``name`` (certificate CN, or ServiceAccount) and ``role`` (its OU).

    ``nodes`` is the prefix of the node ids it may claim: None for its name (a
    certificate), a pod name for a pod-bound ServiceAccount token, ``""`` for any
    node id (a token bound to no pod; such a node is still held by that identity).
    """

    name: str
    role: str
    nodes: str | None = None

    def binds(self, node_id: str) -> bool:
        """Whether this identity may speak for ``node_id``."""
        if not self.name:  # insecure mode: nobody is anybody
            return True
        prefix = self.name if self.nodes is None else self.nodes
        if not prefix:
            return True
        return node_id == prefix or node_id.startswith((prefix + "-", prefix + "/"))


INSECURE = Identity("", "insecure")


def _write(path: Path, data: bytes, private: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.rename(path)  # atomic: a reader sees the old file or the new one


def create(
    folder: Path,
    *,
    hosts: list[str],
    routers: list[str],
    admins: list[str] | None = None,
) -> None:
    """Make (or extend) a TLS dir: the CA if missing, the server cert, one cert per client."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / CLIENTS).mkdir(exist_ok=True, mode=0o700)
    if (folder / CA).exists() and (folder / CA_KEY).exists():
        ca = Authority.load((folder / CA).read_bytes(), (folder / CA_KEY).read_bytes())
    else:
        ca = Authority.create("skyroute-control-ca")
        _write(folder / CA_KEY, ca.key_pem, private=True)
        _write(folder / CA, ca.cert_pem, private=False)
    cert, key = ca.issue(hosts[0], hostnames=hosts)
    _write(folder / SERVER_KEY, key, private=True)
    _write(folder / SERVER, cert, private=False)
    for name, role in [*((r, "router") for r in routers), *((a, "admin") for a in admins or [])]:
        cert, key = ca.issue(name, role=role)
        _write(folder / CLIENTS / f"{name}.key", key, private=True)
        _write(folder / CLIENTS / f"{name}.crt", cert, private=False)
    if not (folder / TOKEN).exists():
        _write(folder / TOKEN, secrets.token_urlsafe(32).encode() + b"\n", private=True)


class ServingCert:
    """A serving certificate and key on disk (and the CA clients must chain to, if any).

    ``grpc_credentials`` and ``ssl_context`` read the files again before a handshake
    when they changed (a mounted Secret rotates in place: cert-manager's renewal),
    keeping the current ones mid-rotation; connections already open are kept.
    """

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._stamp: tuple[float, ...] = ()

    def _files(self) -> tuple[Path, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())

    def _config(self) -> grpc.ServerCertificateConfiguration:
        ca = self.client_ca.read_bytes() if self.client_ca else None
        pair = (self.key.read_bytes(), self.cert.read_bytes())
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: a new configuration only if files changed."""
        try:
            stamp = tuple(p.stat().st_mtime_ns for p in self._files())
            if stamp == self._stamp:
                return None
            config = self._config()
        except (OSError, ValueError):  # mid-rotation: keep the current certificate
            return None
        self._stamp = stamp
        return config

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Client certificates are required exactly when there is a client CA."""
        self._stamp = tuple(p.stat().st_mtime_ns for p in self._files())
        return grpc.dynamic_ssl_server_credentials(
            self._config(), self._fetch, require_client_authentication=self.client_ca is not None
        )

    def _stamps(self) -> tuple[int, int]:
        return self.cert.stat().st_mtime_ns, self.key.stat().st_mtime_ns

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def ssl_context(self) -> ssl.SSLContext:
        """The admin port's HTTPS context (the same serving certificate), re-read like
        gRPC's: a handshake after the files changed gets them (SNI callback), the
        current ones stay while a rotation is half written."""
        outer = self._ssl_context()
        state: dict[str, object] = {"stamp": self._stamps(), "ctx": outer}

        def pick(sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
            try:
                stamp = self._stamps()
                if stamp != state["stamp"]:
                    state["ctx"], state["stamp"] = self._ssl_context(), stamp
            except (OSError, ssl.SSLError):  # mid-rotation: keep the current certificate
                pass
            ctx = state["ctx"]
            if ctx is not outer and isinstance(ctx, ssl.SSLContext):
                sock.context = ctx

        outer.sni_callback = pick  # type: ignore[assignment]
        return outer


class ServerTls(ServingCert):
    """The control plane's side of a TLS dir: gRPC credentials, an SSL context, the token."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for name in (CA, SERVER, SERVER_KEY):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} missing (run `skyroute certs create`)")
        super().__init__(folder / SERVER, folder / SERVER_KEY, folder / CA)

    @property
    def token_file(self) -> Path:
        return self.folder / TOKEN


def identity_of(context: grpc.aio.ServicerContext) -> Identity | None:
    """The verified client certificate's identity, or None when the peer presented none."""
    auth = context.auth_context()
    pem = auth.get("x509_pem_cert")
    if not pem:
        return None
    name, role = subject_of(pem[0])
    return Identity(name, role) if name else None


def channel_credentials(ca: Path, identity: Path) -> grpc.ChannelCredentials:
    """A client's credentials: trust ``ca``, present ``identity``.crt/.key (the CLI's side)."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=Path(f"{identity}.key").read_bytes(),
        certificate_chain=Path(f"{identity}.crt").read_bytes(),
    )
