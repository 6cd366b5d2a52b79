"""One request at a time per endpoint, for a server that cuts a stream when a second arrives.

llama-cpp-python's server, by default (``--interrupt_requests True``), stops a
running stream as soon as another request comes in, and still ends it with
``data: [DONE]``: the first caller gets a short answer, or none. A model whose
server does that declares ``serves-one-at-a-time``, and the router then sends
each of its endpoints one request at a time (per router process): an attempt
waits its turn within its first-token deadline, and one that does not get it
in time is a FIRST_TOKEN_TIMEOUT, from which the router fails over as from any
slow upstream. The turn is held until the attempt's stream is closed.

Locks belong to an event loop, so they are kept per loop (weakly: a loop that
ends takes its locks with it).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable

from skyroute.router.providers.types import FIRST_TOKEN_TIMEOUT, ProviderError, StreamEvent

_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _lock(endpoint: str) -> asyncio.Lock:
    per_loop = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    lock = per_loop.get(endpoint)
    if lock is None:
        lock = per_loop[endpoint] = asyncio.Lock()
    return lock


async def one_at_a_time(
    endpoint: str,
    family: str,
    first_token_timeout_s: float,
    timeout_s: float,
    open_stream: Callable[[float, float], AsyncIterator[StreamEvent]],
) -> AsyncIterator[StreamEvent]:
    """``open_stream(first, total)``'s events, once ``endpoint`` is free (see the module doc).

    The wait for the turn comes out of both deadlines handed on.
    """
    lock = _lock(endpoint)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async with asyncio.timeout(first_token_timeout_s):
            await lock.acquire()
    except TimeoutError:
        raise ProviderError(
            FIRST_TOKEN_TIMEOUT,
            f"{family}: its server serves one request at a time and stayed busy for "
            f"{first_token_timeout_s:g}s",
        ) from None
    try:
        waited = loop.time() - start
        events = open_stream(max(first_token_timeout_s - waited, 0.0), max(timeout_s - waited, 0.0))
        try:
            async for event in events:
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
    finally:
        lock.release()
