"""Google's token endpoints on loopback, for google-auth's real credential chain in tests.

:class:`GoogleTokens` serves, on a free loopback port in a thread (the callers
are google-auth's blocking transport, in the router's worker threads or in
another process), what Application Default Credentials talk to:

- ``POST /token``: the OAuth token endpoint of a service-account key file (the
  JWT-bearer grant; the assertion's RS256 signature is verified with the key
  file's public key, its issuer and scope checked), and Google's STS token
  exchange of an ``external_account`` configuration (workload identity
  federation: the subject token is checked against the one expected);
- the metadata server (``GCE_METADATA_HOST`` / ``GCE_METADATA_IP``, as GKE
  Workload Identity serves it): the ``Metadata-Flavor: Google`` ping, the
  default service account, its token and the project id.

Every token issued is ``token`` (the simulator's key), valid for
``expires_in`` seconds, and each issue is recorded in ``issued`` (grant kind,
claims), so a test can count refreshes.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SA_EMAIL = "router@acme-prod.iam.gserviceaccount.com"
#: The audience google-auth's service-account assertions name, whatever the key file's token_uri.
OAUTH_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


class GoogleTokens:
    """Token endpoint, STS and metadata server on 127.0.0.1:<free port> (a context manager)."""

    def __init__(self, token: str, expires_in: int = 3600, subject_token: str = "") -> None:
        self.token = token
        self.expires_in = expires_in
        self.subject_token = subject_token
        self.issued: list[tuple[str, dict[str, Any]]] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GoogleTokens:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def service_account_file(self, path: Path) -> Path:
        """A service-account key file whose ``token_uri`` is this server's ``/token``."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        info: dict[str, Any] = {
            "type": "service_account",
            "project_id": "acme-prod",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": SA_EMAIL,
            "client_id": "1",
            "token_uri": self.url + "/token",
        }
        path.write_text(json.dumps(info))
        return path

    def external_account_file(self, path: Path, subject_token_file: Path) -> Path:
        """An ``external_account`` configuration: a file's token exchanged at this STS."""
        info = {
            "type": "external_account",
            # A project number in the audience: google.auth.default() then looks the project
            # up at cloudresourcemanager.googleapis.com, beyond loopback, unless the router's
            # chain skips that lookup (it does: a Vertex AI model names its project).
            "audience": "//iam.googleapis.com/projects/123456789/locations/global/"
            "workloadIdentityPools/k8s/providers/cluster",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": self.url + "/token",
            "credential_source": {"file": str(subject_token_file)},
        }
        path.write_text(json.dumps(info))
        return path

    # -- answers ---------------------------------------------------------------------

    def answer_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        if grant == JWT_BEARER:
            try:
                claims = jwt.decode(
                    form.get("assertion", ""),
                    self._key.public_key(),
                    algorithms=["RS256"],
                    audience=OAUTH_AUDIENCE,
                )
            except jwt.PyJWTError as exc:
                return 400, {"error": "invalid_grant", "error_description": str(exc)}
            if claims.get("iss") != SA_EMAIL or SCOPE not in str(claims.get("scope")).split():
                return 400, {"error": "invalid_scope"}
            self.issued.append(("service_account", claims))
        elif grant == TOKEN_EXCHANGE:
            if form.get("subject_token") != self.subject_token:
                return 400, {"error": "invalid_grant", "error_description": "bad subject token"}
            self.issued.append(("external_account", form))
            return 200, {
                "access_token": self.token,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": self.expires_in,
            }
        else:
            return 400, {"error": "unsupported_grant_type"}
        return 200, {
            "access_token": self.token,
            "expires_in": self.expires_in,
            "token_type": "Bearer",
        }

    def answer_metadata(self, path: str) -> tuple[int, Any]:
        base = "/computeMetadata/v1/"
        account = base + "instance/service-accounts/default/"
        if path in ("/", base.rstrip("/"), base):
            return 200, ""
        if path == account + "token":
            self.issued.append(("metadata", {}))
            return 200, {
                "access_token": self.token,
                "expires_in": self.expires_in,
                "token_type": "Bearer",
            }
        if path == account:
            return 200, {"email": SA_EMAIL, "scopes": [SCOPE], "aliases": ["default"]}
        if path == account + "email":
            return 200, SA_EMAIL
        if path == base + "project/project-id":
            return 200, "acme-prod"
        if path == base + "universe/universe-domain":
            return 200, "googleapis.com"
        return 404, ""


def _handler(tokens: GoogleTokens) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: Any) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Metadata-Flavor", "Google")
            ctype = "text/plain" if isinstance(body, str) else "application/json"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            form = dict(urllib.parse.parse_qsl(raw))
            self._send(*tokens.answer_token(form))

        def do_GET(self) -> None:
            if self.headers.get("Metadata-Flavor") != "Google":
                self._send(403, "Missing Metadata-Flavor:Google header.")
                return
            self._send(*tokens.answer_metadata(urllib.parse.urlsplit(self.path).path))

    return Handler
