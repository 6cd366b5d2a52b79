"""How the router proves who it is to Vertex AI: OAuth access tokens from google-auth.

The Vertex AI families (``auth: google``) send ``Authorization: Bearer
TOKEN`` with an access token (scope ``cloud-platform``) from google-auth's
Application Default Credentials, in its order: the file named by
``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account key, or an
``external_account`` configuration: workload identity federation, e.g. a
Kubernetes service-account token exchanged at Google's STS), gcloud's own
ADC file, then the metadata server (GCE, and GKE Workload Identity's
per-pod metadata server). A quota project the credentials name goes as
``x-goog-user-project``.

Resolving and refreshing do blocking I/O (files, a token endpoint, the
metadata server), so they never run on the event loop: :class:`TokenSource`
resolves the chain and mints a token in a worker thread, cached and
refreshed by :class:`~.token_cache.TokenCache` (the rule every cloud token
shares: refreshed in the background within :data:`REFRESH_MARGIN_S` of
expiry, google-auth's own threshold; a failure is AUTH, remembered for
``token_cache.RETRY_S``). Each token request is bounded by
:data:`REQUEST_TIMEOUT_S` (google-auth's own default is two minutes).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import google.auth
import google.auth.transport
import google.auth.transport.requests
from google.auth.credentials import Credentials
from google.auth.exceptions import GoogleAuthError

from skyroute.router.providers.common import Signer
from skyroute.router.providers.token_cache import TokenCache, token_signer
from skyroute.router.providers.types import Target

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
REFRESH_MARGIN_S = 225.0  # refresh this long before expiry (google-auth: 3 min 45 s)
REQUEST_TIMEOUT_S = 10.0

Resolve = Callable[[], Credentials]


class _Request(google.auth.transport.requests.Request):
    """google-auth's requests transport with every call bounded by REQUEST_TIMEOUT_S."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        timeout = kwargs.get("timeout")
        kwargs["timeout"] = min(timeout or REQUEST_TIMEOUT_S, REQUEST_TIMEOUT_S)
        return super().__call__(*args, **kwargs)  # type: ignore[no-untyped-call]


class _NotLookedUp(google.auth.transport.Response):
    """The answer to a project lookup the chain does not make (google-auth then has None)."""

    @property
    def status(self) -> int:
        return 404

    @property
    def headers(self) -> dict[str, str]:
        return {}

    @property
    def data(self) -> bytes:
        return b"{}"


class _ChainRequest(_Request):
    """The transport google.auth.default() resolves the chain with: no project lookup.

    For an external account whose audience names a project number, google-auth asks Cloud
    Resource Manager for the project id while resolving; a router never needs it (a Vertex
    AI model names its project), and where only Vertex AI is reachable the lookup would
    fail the whole chain. It is answered "not found" here, without a call.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        url = str(kwargs.get("url", args[0] if args else ""))
        if url.split("://", 1)[-1].startswith("cloudresourcemanager."):
            return _NotLookedUp()
        return super().__call__(*args, **kwargs)


def default_credentials() -> Credentials:
    """google-auth's Application Default Credentials (blocking: call it from a thread)."""
    creds, _ = google.auth.default(scopes=list(SCOPES), request=_ChainRequest())
    return creds


class TokenSource(TokenCache):
    """Access-token headers from google-auth, via the shared :class:`TokenCache`."""

    __slots__ = ("_creds", "_resolve")

    def __init__(self, resolve: Resolve = default_credentials) -> None:
        self._resolve = resolve
        self._creds: Credentials | None = None
        super().__init__(
            self._mint_token,
            what="Google credentials",
            errors=(GoogleAuthError, OSError, ValueError),
            refresh_margin_s=REFRESH_MARGIN_S,
        )

    def _mint_token(self) -> tuple[dict[str, str], float | None]:
        """In a worker thread: resolve the chain if needed, mint a token, say how long it lasts."""
        resolved = self._creds is None
        creds = self._creds or self._resolve()
        self._creds = creds
        # Resolving may have minted a token already (an external account does, on its way).
        if not (resolved and creds.valid):
            creds.refresh(_Request())  # type: ignore[no-untyped-call]
        token = creds.token
        if not token:
            raise ValueError("the credentials gave no access token")
        headers = {"Authorization": f"Bearer {token}"}
        quota = getattr(creds, "quota_project_id", None)
        if isinstance(quota, str) and quota:
            headers["x-goog-user-project"] = quota
        expiry = creds.expiry  # naive UTC, as google-auth keeps it
        if expiry is None:
            return headers, None
        left = expiry - datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        return headers, left.total_seconds()


_SHARED: list[TokenSource] = []


def shared_source() -> TokenSource:
    """The process's one chain (all Vertex AI targets share its token)."""
    if not _SHARED:
        _SHARED.append(TokenSource())
    return _SHARED[0]


@dataclass(frozen=True, slots=True)
class GoogleAuth:
    """The registry's auth scheme for the Vertex AI families (see the module docstring)."""

    source: Callable[[], TokenSource] = shared_source

    def headers(self, target: Target) -> dict[str, str]:
        return {}

    def signer(self, target: Target) -> Signer | None:
        return token_signer(self.source)
