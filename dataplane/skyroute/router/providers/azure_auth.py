"""How the router proves who it is to Azure OpenAI: an api-key, or Microsoft Entra ID tokens.

Two methods, chosen by the model's ``auth`` (:class:`~.types.Target`):

- ``api-key`` (the default): the pool's key in an ``api-key`` header, fixed
  per target;
- ``entra``: ``Authorization: Bearer TOKEN``, an access token for
  :data:`SCOPE` from azure-identity's ``DefaultAzureCredential``, in its
  order: the environment (``AZURE_TENANT_ID`` + ``AZURE_CLIENT_ID`` with
  ``AZURE_CLIENT_SECRET`` or a certificate), **workload identity** (what the
  AKS webhook gives a pod: ``AZURE_FEDERATED_TOKEN_FILE`` + ``AZURE_CLIENT_ID``
  + ``AZURE_TENANT_ID`` + ``AZURE_AUTHORITY_HOST``, the projected token read
  again at every refresh), managed identity, then developer sign-ins (Azure
  CLI and the like). ``AZURE_TOKEN_CREDENTIALS`` narrows the chain (``prod``,
  or one name such as ``WorkloadIdentityCredential``), so a pod whose
  identity fails is not left probing the rest of it.

Getting a token is blocking I/O (a token file, the Entra ID endpoint, the
instance metadata service), so it runs in a worker thread, and the token is
kept by :class:`~.token_cache.TokenCache`: used until
:data:`REFRESH_MARGIN_S` before its expiry (azure-identity's own offset),
refreshed in the background from then on, waited for only once it is past
expiry; a chain that yields nothing is an AUTH failure (the router tries
another model), remembered for ``token_cache.RETRY_S``. One credential and
one token serve every ``auth: entra`` model of the process (the scope is the
same for every Azure OpenAI resource).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

from azure.core.credentials import SupportsTokenInfo
from azure.core.exceptions import AzureError

from skyroute.router.providers.common import Signer
from skyroute.router.providers.token_cache import TokenCache, token_signer
from skyroute.router.providers.types import Target

SCOPE = "https://cognitiveservices.azure.com/.default"
REFRESH_MARGIN_S = 300.0  # azure-identity's DEFAULT_REFRESH_OFFSET


def default_credential() -> SupportsTokenInfo:
    """azure-identity's DefaultAzureCredential (built in the worker thread: it reads the env)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


class EntraTokenSource(TokenCache):
    """``Authorization: Bearer`` headers with an Entra ID token, via the shared TokenCache."""

    __slots__ = ("_credential", "_make")

    def __init__(self, make: Callable[[], SupportsTokenInfo] = default_credential) -> None:
        self._make = make
        self._credential: SupportsTokenInfo | None = None
        super().__init__(
            self._mint_token,
            what="Microsoft Entra ID credentials",
            errors=(AzureError, OSError, ValueError),
            refresh_margin_s=REFRESH_MARGIN_S,
        )

    def _mint_token(self) -> tuple[dict[str, str], float | None]:
        """In a worker thread: build the credential if needed, get a token and its lifetime."""
        credential = self._credential or self._make()
        self._credential = credential
        info = credential.get_token_info(SCOPE)
        if not info.token:
            raise ValueError("the credential gave no access token")
        return {"Authorization": f"Bearer {info.token}"}, info.expires_on - time.time()


@functools.cache
def shared_source() -> EntraTokenSource:
    """The process's one credential (every ``auth: entra`` model shares its token)."""
    return EntraTokenSource()


@dataclass(frozen=True, slots=True)
class AzureAuth:
    """The registry's auth scheme for ``azure-openai`` (see the module docstring)."""

    source: Callable[[], EntraTokenSource] = shared_source

    def headers(self, target: Target) -> dict[str, str]:
        if target.auth == "entra" or not target.api_key:
            return {}
        return {"api-key": target.api_key}

    def signer(self, target: Target) -> Signer | None:
        return token_signer(self.source) if target.auth == "entra" else None
