"""What Azure OpenAI's ``auth: entra`` adds per request: the bearer from the cached token.

Run: ``nice .venv/bin/python bench/azure_auth.py``. The token source is fed by a
credential that returns an hour-long token from memory (azure-identity's
``get_token_info`` shape), so after the first call every request takes the
hot path (a clock read, two comparisons, one dict merge), as with Vertex AI's
tokens (bench/vertex_auth.py: the same ``token_cache``).
"""

from __future__ import annotations

import asyncio
import time

from azure.core.credentials import AccessTokenInfo

from skyroute.router.providers.azure_auth import AzureAuth, EntraTokenSource
from skyroute.router.providers.types import Target

N_SIGN = 200_000


class _HourLong:
    def get_token_info(self, *scopes: str, options: object = None) -> AccessTokenInfo:
        return AccessTokenInfo("eyJ0" + "x" * 1500, int(time.time() + 3600))


async def main() -> None:
    source = EntraTokenSource(_HourLong)
    target = Target("azure-openai", "https://r.openai.azure.com", "d", auth="entra")
    sign = AzureAuth(lambda: source).signer(target)
    assert sign is not None
    headers = {"Content-Type": "application/json"}
    await sign("u", headers, b"")  # the first gets the token (in a thread)
    start = time.perf_counter()
    for _ in range(N_SIGN):
        await sign("u", headers, b"")
    took = (time.perf_counter() - start) / N_SIGN * 1e6
    print(f"azure-openai entra signer, cached token: {took:.2f} µs")


if __name__ == "__main__":
    asyncio.run(main())
