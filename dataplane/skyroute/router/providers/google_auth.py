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
resolves the chain and mints a token in a worker thread once, keeps the
header dict, and the hot path only compares a clock with two deadlines.
Within :data:`REFRESH_MARGIN_S` of expiry (google-auth's own threshold) a
request still uses the current token and starts one refresh in the
background; only a token past expiry (less :data:`EXPIRY_MARGIN_S`) makes
requests wait, all for the same refresh. A background refresh that fails
keeps the token while it lasts and is retried at most every
:data:`RETRY_S`; a chain that finds nothing, or a refresh failing with no
usable token, is an AUTH failure (the router tries another model),
remembered for :data:`RETRY_S` so a pod without credentials does not probe
the chain on every request. Each token request is bounded by
:data:`REQUEST_TIMEOUT_S` (google-auth's own default is two minutes).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import google.auth
import google.auth.transport.requests
from google.auth.credentials import Credentials
from google.auth.exceptions import GoogleAuthError

from skyroute.router.providers.common import Signer
from skyroute.router.providers.types import AUTH, ProviderError, Target

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
REFRESH_MARGIN_S = 225.0  # refresh this long before expiry (google-auth: 3 min 45 s)
EXPIRY_MARGIN_S = 10.0  # a token this close to expiry is not sent (clock skew)
RETRY_S = 30.0
REQUEST_TIMEOUT_S = 10.0

Resolve = Callable[[], Credentials]


class _Request(google.auth.transport.requests.Request):
    """google-auth's requests transport with every call bounded by REQUEST_TIMEOUT_S."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        timeout = kwargs.get("timeout")
        kwargs["timeout"] = min(timeout or REQUEST_TIMEOUT_S, REQUEST_TIMEOUT_S)
        return super().__call__(*args, **kwargs)  # type: ignore[no-untyped-call]


def default_credentials() -> Credentials:
    """google-auth's Application Default Credentials (blocking: call it from a thread).

    The project google-auth may look up on the way (the metadata server's, or for an
    external account Cloud Resource Manager's, when its audience names a project number)
    is not used: a Vertex AI model names its own.
    """
    creds, _ = google.auth.default(scopes=list(SCOPES), request=_Request())
    return creds


class TokenSource:
    """Access-token headers, minted and refreshed off the event loop (one refresh at a time)."""

    __slots__ = (
        "_creds",
        "_failed",
        "_failed_until",
        "_fresh_until",
        "_headers",
        "_inflight",
        "_resolve",
        "_valid_until",
    )

    def __init__(self, resolve: Resolve = default_credentials) -> None:
        self._resolve = resolve
        self._creds: Credentials | None = None
        self._headers: dict[str, str] | None = None
        self._fresh_until = 0.0  # monotonic: no refresh needed before
        self._valid_until = 0.0  # monotonic: the token may be sent before
        self._failed: str | None = None  # why the chain gave nothing usable, for RETRY_S
        self._failed_until = 0.0
        self._inflight: asyncio.Task[dict[str, str]] | None = None

    async def headers(self) -> dict[str, str]:
        """``Authorization`` (and ``x-goog-user-project``) for the next request."""
        now = time.monotonic()
        headers = self._headers
        if headers is not None and now < self._fresh_until:
            return headers
        if headers is not None and now < self._valid_until:
            self._refresh()  # in the background: this request uses the current token
            return headers
        if self._failed is not None and now < self._failed_until:
            raise ProviderError(AUTH, self._failed)
        return await asyncio.shield(self._refresh())

    def _refresh(self) -> asyncio.Task[dict[str, str]]:
        task = self._inflight
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._inflight = asyncio.ensure_future(self._mint())
            task.add_done_callback(_consume)
        return task

    async def _mint(self) -> dict[str, str]:
        try:
            headers, lifetime = await asyncio.to_thread(self._load)
        except (GoogleAuthError, OSError, ValueError) as exc:
            now = time.monotonic()
            why = f"Google credentials failed: {type(exc).__name__}: {exc}"[:300]
            if self._headers is not None and now < self._valid_until:
                self._fresh_until = min(now + RETRY_S, self._valid_until)
                return self._headers  # keep the token while it lasts, retry later
            self._failed, self._failed_until = why, now + RETRY_S
            raise ProviderError(AUTH, why) from None
        now = time.monotonic()
        if lifetime is None:  # a token without expiry
            self._fresh_until = self._valid_until = float("inf")
        else:
            self._valid_until = now + lifetime - EXPIRY_MARGIN_S
            # A short-lived token is refreshed at most every second (never past its validity).
            fresh = max(now + lifetime - REFRESH_MARGIN_S, now + 1.0)
            self._fresh_until = min(fresh, self._valid_until)
        self._headers, self._failed = headers, None
        return headers

    def _load(self) -> tuple[dict[str, str], float | None]:
        """In a worker thread: resolve the chain if needed, mint a token, say how long it lasts."""
        creds = self._creds or self._resolve()
        self._creds = creds
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


def _consume(task: asyncio.Task[dict[str, str]]) -> None:
    """A background refresh's failure is kept in the source, not logged as never retrieved."""
    if not task.cancelled():
        task.exception()


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
        source = self.source()

        async def authorized(url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
            return {**headers, **(await source.headers())}

        return authorized
