"""The control plane's certificates: a private CA and what it signs, made with ``cryptography``.

One place for X.509: the admission webhook's serving certificate
(``kube/certs.py``) and the control link's CA, server and client
certificates (``distribution/tls.py``) are all made here. Keys are ECDSA
P-256, certificates SHA-256 signed. A client certificate names its holder
in the subject's common name (a router's name, ``admin``) and its role in
the organizational unit (``router``, ``admin``, ``operator``): that pair is
the identity the distribution server binds node ids and permissions to.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY_DAYS = 3650
ROLES = ("router", "admin", "operator")


def _name(common: str, unit: str = "") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if unit:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    return x509.Name(attrs)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _window(days: int) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return now, now + dt.timedelta(days=days)


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA: its certificate and key, able to issue leaf certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common: str, days: int = VALIDITY_DAYS) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _window(days)
        usage = x509.KeyUsage(
            digital_signature=True,
            key_cert_sign=True,
            crl_sign=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            encipher_only=False,
            decipher_only=False,
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(_name(common))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem_data: bytes) -> Authority:
        key = serialization.load_pem_private_key(key_pem_data, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an ECDSA key")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    def issue(
        self,
        common: str,
        *,
        hostnames: list[str] | None = None,
        role: str = "",
        days: int = VALIDITY_DAYS,
    ) -> tuple[bytes, bytes]:
        """(cert_pem, key_pem): a server certificate for ``hostnames``, else a client one."""
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _window(days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common, role))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if hostnames:
            sans: list[x509.GeneralName] = []
            for host in hostnames:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    sans.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            usage = ExtendedKeyUsageOID.SERVER_AUTH
        else:
            usage = ExtendedKeyUsageOID.CLIENT_AUTH
        cert = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(
            self.key, hashes.SHA256()
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def subject_of(cert_pem: bytes) -> tuple[str, str]:
    """(common name, organizational unit) of a PEM certificate ("" when absent)."""
    cert = x509.load_pem_x509_certificate(cert_pem)

    def first(oid: x509.ObjectIdentifier) -> str:
        found = cert.subject.get_attributes_for_oid(oid)
        value = found[0].value if found else ""
        return value if isinstance(value, str) else value.decode()

    return first(NameOID.COMMON_NAME), first(NameOID.ORGANIZATIONAL_UNIT_NAME)
