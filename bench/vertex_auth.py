"""What Vertex AI adds per request: the OAuth header from the cached token, and the body.

Run: ``nice .venv/bin/python bench/vertex_auth.py``. The token source is fed by
google-auth credentials whose refresh mints an hour-long token in memory, so
after the first call every request takes the hot path (a clock read, two
comparisons, one dict merge); the encode lines compare the Anthropic codec's
body at Vertex AI (``model`` moved to the path, ``anthropic_version`` added)
with the public API's.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from google.auth import credentials as google_credentials

from skyroute.router.providers import registry
from skyroute.router.providers.google_auth import GoogleAuth, TokenSource
from skyroute.router.providers.types import ChatRequest, Target

N_SIGN = 200_000
N_ENCODE = 50_000


class _HourLong(google_credentials.Credentials):
    def refresh(self, request: Any) -> None:
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        self.token, self.expiry = "ya29.bench", now + datetime.timedelta(hours=1)


async def main() -> None:
    source = TokenSource(_HourLong)
    target = Target("vertex-anthropic", "https://x", "m", auth="google", project="p")
    sign = GoogleAuth(lambda: source).signer(target)
    assert sign is not None
    headers = {"Content-Type": "application/json"}
    await sign("u", headers, b"")  # the first mints the token (in a thread)
    start = time.perf_counter()
    for _ in range(N_SIGN):
        await sign("u", headers, b"")
    print(f"vertex signer, cached token: {(time.perf_counter() - start) / N_SIGN * 1e6:.2f} µs")
    req = ChatRequest([{"role": "user", "content": "hello"}], max_tokens=50)
    for name, model in (
        ("vertex-anthropic", "claude-sonnet-4-5@20250929"),
        ("anthropic", "claude-sonnet-4-5"),
    ):
        adapter = registry.FAMILIES[name].adapter
        start = time.perf_counter()
        for _ in range(N_ENCODE):
            adapter.encode(req, model, True)
        took = (time.perf_counter() - start) / N_ENCODE * 1e6
        print(f"{name} encode (one user turn): {took:.2f} µs")


if __name__ == "__main__":
    asyncio.run(main())
