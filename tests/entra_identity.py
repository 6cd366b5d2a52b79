"""A Kubernetes workload identity for Microsoft Entra ID, on loopback.

What an AKS pod with workload identity has, made for a test: a federated
token file (``AZURE_FEDERATED_TOKEN_FILE``, the projected ServiceAccount token
the webhook mounts), ``AZURE_CLIENT_ID`` / ``AZURE_TENANT_ID``, and
``AZURE_AUTHORITY_HOST`` pointing at the simulator's Entra ID token endpoint
(``simulator/entra.py``). azure-identity takes only https authorities, so the
simulator serves it on a TLS listener with a certificate from a throwaway CA,
which requests (azure-identity's transport) trusts through
``REQUESTS_CA_BUNDLE``. ``AZURE_TOKEN_CREDENTIALS`` keeps
``DefaultAzureCredential`` to the workload identity, so a refusal never makes
it probe the instance metadata address, which is not loopback.

Usage::

    files = write_tls(tmp)                      # ca.crt, sim.crt, sim.key
    scenario = {..., "entra": entra_scenario()}  # the app registration the simulator knows
    env = workload_env(tmp, sim_tls_url, files)  # for the process that calls azure-identity
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyroute.control.pki import Authority

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "6f2a4d1e-0b7c-4c55-9d3e-1a2b3c4d5e6f"
# Stands for the projected ServiceAccount token (audience api://AzureADTokenExchange).
FEDERATED_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJhcGk6Ly9BenVyZUFEVG9rZW5FeGNoYW5nZSJ9.sig"
CLIENT_SECRET = "entra-test-secret"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def write_tls(folder: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A CA and a serving certificate for ``host`` (PEM files in ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = Authority.create("skyroute-test-entra-ca")
    cert, key = ca.issue(host, hostnames=[host])
    files = TlsFiles(folder / "ca.crt", folder / "sim.crt", folder / "sim.key")
    files.ca.write_bytes(ca.cert_pem)
    files.cert.write_bytes(cert)
    files.key.write_bytes(key)
    return files


def entra_scenario(token_ttl_s: float = 3600) -> dict[str, Any]:
    """The simulator scenario's ``entra`` section for this identity."""
    return {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "federated_token": FEDERATED_TOKEN,
        "client_secret": CLIENT_SECRET,
        "token_ttl_s": token_ttl_s,
    }


def workload_env(folder: Path, tls_url: str, tls: TlsFiles) -> dict[str, str]:
    """The variables the workload identity webhook sets (and the CA to trust), for a process."""
    token_file = folder / "azure-identity-token"
    token_file.write_text(FEDERATED_TOKEN)
    return {
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_CLIENT_ID": CLIENT_ID,
        "AZURE_TENANT_ID": TENANT,
        "AZURE_AUTHORITY_HOST": tls_url + "/entra",
        "AZURE_TOKEN_CREDENTIALS": "WorkloadIdentityCredential",
        "REQUESTS_CA_BUNDLE": str(tls.ca),
        "NO_PROXY": "127.0.0.1,localhost",
    }
