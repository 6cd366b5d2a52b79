"""Microsoft Entra ID, as azure-identity's credentials and Azure OpenAI see it.

Two halves of one thing, so that a router's ``auth: entra`` is checked end to
end on loopback:

- the token endpoint, ``POST /entra/{tenant}/oauth2/v2.0/token`` (form
  encoded), at the path azure-identity builds from ``AZURE_AUTHORITY_HOST``
  (``https://HOST:PORT/entra``; azure-identity takes only an https authority,
  so it is served on the simulator's TLS listener, ``--tls-listen``). It
  grants ``client_credentials`` with a client assertion (what
  ``WorkloadIdentityCredential`` sends: the federated Kubernetes token read
  from ``AZURE_FEDERATED_TOKEN_FILE``) or a client secret
  (``ClientSecretCredential``), checked against the scenario's ``entra``
  section (tenant, client id, federated token or secret), for the one scope
  Azure OpenAI takes, ``https://cognitiveservices.azure.com/.default``.
  Refusals are Entra's bodies (``{"error", "error_description": "AADSTS...",
  "error_codes"}``);
- the check of the Azure OpenAI surface: a bearer token must be one this
  endpoint issued (HS256 under a key made at start, so nothing else can mint
  one), for audience ``https://cognitiveservices.azure.com``, issuer
  ``https://sts.windows.net/{tenant}/``, and not expired; anything else is
  Azure's 401.

Counts (``/_sim/stats`` ``entra``: tokens issued, requests refused, bearer
tokens accepted and rejected) let a test see that a router caches its token
and refreshes it.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import orjson

from skyroute.simulator.wire import Rendered

SCOPE = "https://cognitiveservices.azure.com/.default"
AUDIENCE = "https://cognitiveservices.azure.com"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_JSON = {"Content-Type": "application/json; charset=utf-8"}
_MAX_FIELD = 16384  # a form field longer than this is refused, never compared


@dataclass(frozen=True, slots=True)
class EntraConfig:
    """The scenario's ``entra`` section: the one app registration the endpoint knows."""

    tenant_id: str
    client_id: str
    federated_token: str | None  # the client assertion a workload identity presents
    client_secret: str | None
    token_ttl_s: float  # wall-clock seconds (time_scale does not apply)


@dataclass(slots=True)
class EntraStats:
    tokens_issued: int = 0
    refused: int = 0
    bearer_ok: int = 0
    bearer_rejected: int = 0

    def as_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def issuer(tenant: str) -> str:
    return f"https://sts.windows.net/{tenant}/"


class Entra:
    """Issues and verifies access tokens for the configuration it is given per call."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self.stats = EntraStats()

    def token(self, tenant: str, form: Mapping[str, str], cfg: EntraConfig | None) -> Rendered:
        """The token endpoint's answer to one request."""
        if any(len(v) > _MAX_FIELD for v in form.values()):
            return self._refuse(
                400, "invalid_request", 900144, "AADSTS900144: a field is too long."
            )
        if cfg is None or tenant != cfg.tenant_id:
            return self._refuse(
                400,
                "invalid_request",
                90002,
                f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the "
                "correct tenant ID and are signing into the correct cloud.",
            )
        if form.get("grant_type") != "client_credentials":
            return self._refuse(
                400,
                "unsupported_grant_type",
                70003,
                "AADSTS70003: The app requested an unsupported grant type "
                f"'{form.get('grant_type', '')}'.",
            )
        client_id = form.get("client_id", "")
        if client_id != cfg.client_id:
            return self._refuse(
                400,
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{tenant}'.",
            )
        if form.get("scope") != SCOPE:
            return self._refuse(
                400,
                "invalid_scope",
                70011,
                f"AADSTS70011: The provided value for the input parameter 'scope' is not valid. "
                f"The scope '{form.get('scope', '')}' is not configured for this tenant.",
            )
        refused = self._client_credential(form, cfg)
        if refused is not None:
            return refused
        now = int(time.time())
        ttl = max(1, int(cfg.token_ttl_s))
        claims = {
            "aud": AUDIENCE,
            "iss": issuer(tenant),
            "tid": tenant,
            "appid": client_id,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_hex(8),
        }
        self.stats.tokens_issued += 1
        body = {
            "token_type": "Bearer",
            "expires_in": ttl,
            "ext_expires_in": ttl,
            "access_token": jwt.encode(claims, self._key, algorithm="HS256"),
        }
        return Rendered(200, dict(_JSON), orjson.dumps(body))

    def _client_credential(self, form: Mapping[str, str], cfg: EntraConfig) -> Rendered | None:
        assertion = form.get("client_assertion")
        if assertion is not None:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return self._refuse(
                    400,
                    "invalid_request",
                    50027,
                    "AADSTS50027: JWT token is invalid or malformed (client_assertion_type).",
                )
            if cfg.federated_token is None or not secrets.compare_digest(
                assertion, cfg.federated_token
            ):
                return self._refuse(
                    401,
                    "invalid_client",
                    700211,
                    "AADSTS700211: No matching federated identity record found for presented "
                    "assertion issuer.",
                )
            return None
        secret = form.get("client_secret")
        if secret is not None:
            if cfg.client_secret is None or not secrets.compare_digest(secret, cfg.client_secret):
                return self._refuse(
                    401, "invalid_client", 7000215, "AADSTS7000215: Invalid client secret provided."
                )
            return None
        return self._refuse(
            400,
            "invalid_client",
            7000218,
            "AADSTS7000218: The request body must contain the following parameter: "
            "'client_assertion' or 'client_secret'.",
        )

    def _refuse(self, status: int, error: str, code: int, description: str) -> Rendered:
        self.stats.refused += 1
        body = {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }
        return Rendered(status, dict(_JSON), orjson.dumps(body))

    def verify(self, token: str, cfg: EntraConfig | None) -> str | None:
        """None if ``token`` is a live access token this endpoint issued, else why not."""
        why = self._why_not(token, cfg)
        if why is None:
            self.stats.bearer_ok += 1
        else:
            self.stats.bearer_rejected += 1
        return why

    def _why_not(self, token: str, cfg: EntraConfig | None) -> str | None:
        if cfg is None:
            return "no Entra ID tenant is configured (scenario entra)"
        if len(token) > _MAX_FIELD:
            return "token too long"
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=issuer(cfg.tenant_id),
                options={"require": ["exp", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            return "token expired"
        except jwt.InvalidTokenError as exc:
            return f"token invalid: {type(exc).__name__}"
        if claims.get("appid") != cfg.client_id:
            return "token issued to another application"
        return None
