"""How the router proves who it is to Amazon Bedrock: SigV4 from the AWS chain, or an API key.

Two methods, chosen by the model's ``auth`` (:class:`~.types.Target`):

- ``aws``: every request is signed with SigV4 (``botocore.auth.SigV4Auth``,
  service ``bedrock``, the target's region) with credentials from botocore's
  standard chain, in its order: environment variables, web identity (IRSA:
  ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``), the shared config and
  credentials files (a profile, ``AWS_PROFILE``), the container provider
  (EKS Pod Identity and ECS: ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` with its
  token file), then the instance metadata service;
- ``api-key``: a Bedrock API key as ``Authorization: Bearer KEY``, fixed per
  target (no signature).

Resolving and refreshing credentials does blocking I/O (reading files,
calling STS or a metadata endpoint), so it never runs on the event loop:
:class:`CredentialSource` resolves the chain in a worker thread once, keeps
the frozen keys, and goes back to a thread only when botocore says the
temporary credentials are due for refresh (its advisory window, 15 minutes
before expiry); concurrent requests then share that one refresh. Signing
itself is an HMAC over the request, done inline. A chain that finds nothing
is an AUTH failure (so the router tries another model) and is remembered for
:data:`RETRY_EMPTY_S`, so a pod without credentials does not probe the chain
on every request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError
from yarl import URL

from skyroute.router.providers.common import Signer
from skyroute.router.providers.types import AUTH, ProviderError, Target

FAMILY = "bedrock"
SERVICE = "bedrock"
DEFAULT_REGION = "us-east-1"
RETRY_EMPTY_S = 30.0

Resolve = Callable[[], Credentials | None]


def default_chain() -> Credentials | None:
    """botocore's standard credential chain (blocking: call it from a thread)."""
    found: Credentials | None = botocore.session.get_session().get_credentials()
    return found


class CredentialSource:
    """Frozen AWS credentials, resolved and refreshed off the event loop (one refresh at a time)."""

    __slots__ = ("_creds", "_empty_until", "_frozen", "_inflight", "_resolve")

    def __init__(self, resolve: Resolve = default_chain) -> None:
        self._resolve = resolve
        self._creds: Credentials | None = None
        self._frozen: ReadOnlyCredentials | None = None
        self._empty_until = 0.0
        self._inflight: asyncio.Task[ReadOnlyCredentials | None] | None = None

    def _fresh(self) -> ReadOnlyCredentials | None:
        """The kept credentials when no I/O is needed to use them, else None."""
        creds, frozen = self._creds, self._frozen
        if creds is None or frozen is None:
            return None
        if isinstance(creds, RefreshableCredentials) and creds.refresh_needed():
            return None
        return frozen

    async def get(self) -> ReadOnlyCredentials:
        frozen = self._fresh()
        if frozen is not None:
            return frozen
        if self._creds is None and time.monotonic() < self._empty_until:
            raise _no_credentials()
        task = self._inflight
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._inflight = asyncio.ensure_future(asyncio.to_thread(self._load))
        found = await asyncio.shield(task)
        if found is None:
            raise _no_credentials()
        return found

    def _load(self) -> ReadOnlyCredentials | None:
        """In a worker thread: resolve the chain if needed, then freeze (refreshing if due)."""
        try:
            creds = self._creds or self._resolve()
            frozen = creds.get_frozen_credentials() if creds is not None else None
        except (BotoCoreError, OSError, ValueError) as exc:
            # A refresh that failed keeps the old keys while they are still valid.
            creds = self._creds
            if (
                self._frozen is not None
                and isinstance(creds, RefreshableCredentials)
                and not creds.refresh_needed(0)  # not expired yet
            ):
                return self._frozen
            raise ProviderError(
                AUTH, f"{FAMILY}: AWS credentials failed: {type(exc).__name__}: {exc}"[:300]
            ) from None
        if creds is None or frozen is None or not frozen.access_key:
            self._empty_until = time.monotonic() + RETRY_EMPTY_S
            return None
        self._creds, self._frozen = creds, frozen
        return frozen


def _no_credentials() -> ProviderError:
    return ProviderError(
        AUTH,
        f"{FAMILY}: no AWS credentials in the standard chain (environment, web identity, "
        "profile, container, instance metadata)",
    )


_SHARED: list[CredentialSource] = []


def shared_source() -> CredentialSource:
    """The process's one chain (all Bedrock targets with ``auth: aws`` share its keys)."""
    if not _SHARED:
        _SHARED.append(CredentialSource())
    return _SHARED[0]


def sign(
    creds: ReadOnlyCredentials, region: str, url: str, headers: dict[str, str], body: bytes
) -> dict[str, str]:
    """``headers`` plus SigV4's X-Amz-Date, X-Amz-Security-Token (if any) and Authorization.

    The URL signed is the one aiohttp sends: yarl normalises percent-escapes (``%3A`` in a
    model id is sent as ``:``), and the signature covers the path as sent.
    """
    sent = str(URL(url))
    request = AWSRequest(method="POST", url=sent, data=body, headers=dict(headers))
    SigV4Auth(creds, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


@dataclass(frozen=True, slots=True)
class BedrockAuth:
    """The registry's auth scheme for the ``bedrock`` family (see the module docstring)."""

    source: Callable[[], CredentialSource] = shared_source

    def headers(self, target: Target) -> dict[str, str]:
        if target.auth == "aws" or not target.api_key:
            return {}
        return {"Authorization": "Bearer " + target.api_key}

    def signer(self, target: Target) -> Signer | None:
        if target.auth != "aws":
            return None
        source = self.source()
        region = region_of(target)

        async def signed(url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
            return sign(await source.get(), region, url, headers, body)

        return signed


def region_of(target: Target) -> str:
    """The target's region, else the one in a ``bedrock-runtime.REGION.amazonaws.com`` host."""
    if target.region:
        return target.region
    host = target.endpoint.split("://", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    if len(parts) >= 4 and parts[0].startswith("bedrock-runtime") and parts[2] == "amazonaws":
        return parts[1]
    return DEFAULT_REGION
