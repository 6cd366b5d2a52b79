"""Short-lived access tokens, cached and refreshed off the event loop: one rule for every cloud.

The families that authenticate with a token from a cloud's identity library
(Vertex AI with google-auth, Azure OpenAI with azure-identity) share this
cache; only how a token is minted differs (a ``load`` callable: blocking,
so always run in a worker thread, returning the headers to send and the
token's lifetime in seconds, None for no expiry).

The hot path only compares a clock with two deadlines. Within the source's
refresh margin of expiry a request still uses the current token and starts
one refresh in the background; only a token past expiry (less
:data:`EXPIRY_MARGIN_S`) makes requests wait, all for the same refresh. A
background refresh that fails keeps the token while it lasts and is retried
at most every :data:`RETRY_S`; a chain that finds nothing, or a refresh
failing with no usable token, is an AUTH failure (the router tries another
model), remembered for :data:`RETRY_S` so a pod without credentials does not
probe the chain on every request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from skyroute.router.providers.common import Signer
from skyroute.router.providers.types import AUTH, ProviderError

EXPIRY_MARGIN_S = 10.0  # a token this close to expiry is not sent (clock skew)
RETRY_S = 30.0

# In a worker thread: (headers carrying the token, its lifetime in seconds or None).
Load = Callable[[], tuple[dict[str, str], float | None]]


class TokenCache:
    """Token headers, minted and refreshed off the event loop (one refresh at a time)."""

    __slots__ = (
        "_errors",
        "_failed",
        "_failed_until",
        "_fresh_until",
        "_headers",
        "_inflight",
        "_load",
        "_margin",
        "_valid_until",
        "_what",
    )

    def __init__(
        self,
        load: Load,
        *,
        what: str,
        errors: tuple[type[Exception], ...],
        refresh_margin_s: float,
    ) -> None:
        """``what`` names the credentials in messages; ``errors`` are the load's failures."""
        self._load = load
        self._what = what
        self._errors = errors
        self._margin = refresh_margin_s
        self._headers: dict[str, str] | None = None
        self._fresh_until = 0.0  # monotonic: no refresh needed before
        self._valid_until = 0.0  # monotonic: the token may be sent before
        self._failed: str | None = None  # why the chain gave nothing usable, for RETRY_S
        self._failed_until = 0.0
        self._inflight: asyncio.Task[dict[str, str]] | None = None

    async def headers(self) -> dict[str, str]:
        """The headers for the next request (the same dict while the token is fresh)."""
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
        except self._errors as exc:
            now = time.monotonic()
            why = f"{self._what} failed: {type(exc).__name__}: {exc}"[:300]
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
            fresh = max(now + lifetime - self._margin, now + 1.0)
            self._fresh_until = min(fresh, self._valid_until)
        self._headers, self._failed = headers, None
        return headers


def _consume(task: asyncio.Task[dict[str, str]]) -> None:
    """A background refresh's failure is kept in the cache, not logged as never retrieved."""
    if not task.cancelled():
        task.exception()


def token_signer(cache: Callable[[], TokenCache]) -> Signer:
    """A registry signer adding the cache's token headers to each request's."""
    source = cache()

    async def authorized(url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        return {**headers, **(await source.headers())}

    return authorized
