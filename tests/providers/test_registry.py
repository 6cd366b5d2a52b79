"""Provider families are declared once, and the declaration is what the router uses.

The contract names the families; the registry has exactly one entry per name,
the adapter dict and the snapshot check come from it, and its two extension
points are really on the request path: an auth scheme that signs each request
(given the final URL, headers and body) and a framing that cuts the response
stream, shown against the real simulator.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
import pytest

from skyroute.families import FAMILY_NAMES
from skyroute.router.providers import ADAPTERS, registry, transport
from skyroute.router.providers.common import Framing, Signer
from skyroute.router.providers.registry import FAMILIES, ProviderFamily
from skyroute.router.providers.sse import SSEDecoder
from skyroute.router.providers.types import AUTH, ChatRequest, ProviderError, Target, TextDelta
from skyroute.router.table import SnapshotError, build_table
from skyroute.simulator.harness import SimulatorThread
from skyroute.v1 import snapshot_pb2

KEY = "sig-key"


def test_one_entry_per_contract_family_in_its_order() -> None:
    assert tuple(FAMILIES) == FAMILY_NAMES == registry.NAMES
    assert set(ADAPTERS) == set(FAMILIES)
    for name, fam in FAMILIES.items():
        assert fam.name == name and fam.adapter.family == name
        assert fam.default_endpoint.startswith("https://")


def test_otel_names_come_from_the_declaration() -> None:
    assert registry.provider_name("openai", "api.openai.com") == "openai"
    assert registry.provider_name("gemini", "generativelanguage.googleapis.com") == "gcp.gemini"
    vertex = "us-central1-aiplatform.googleapis.com"
    assert registry.provider_name("gemini", vertex) == "gcp.vertex_ai"


def _snapshot(provider: str, endpoint: str) -> snapshot_pb2.Snapshot:
    snap = snapshot_pb2.Snapshot(version="v1")
    pool = snap.pools.add(name="p")
    pool.candidates.add(
        model="m", provider=provider, endpoint=endpoint, context_window=8192, supports_tools=True
    )
    snap.policies.add(name="default", default_pool="p")
    return snap


def test_the_snapshot_check_reads_the_registry() -> None:
    with pytest.raises(SnapshotError, match=r"provider 'cohere' is not one of \['anthropic'"):
        build_table(_snapshot("cohere", "http://h/v1"))
    table = build_table(_snapshot("anthropic", ""))  # no endpoint: the family's public one
    policy = table.policy("default")
    assert policy is not None
    (cand,) = policy.pools["p"]
    assert cand.target.endpoint == "https://api.anthropic.com"


@dataclass
class SigningScheme:
    """A scheme that signs each request: the key goes in only via the signer."""

    seen: list[tuple[str, bytes]] = field(default_factory=list)

    def headers(self, target: Target) -> dict[str, str]:
        return {}

    def signer(self, target: Target) -> Signer | None:
        api_key = target.api_key

        async def sign(url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
            self.seen.append((url, body))
            return {**headers, "Authorization": f"Bearer {api_key}"}

        return sign


@dataclass
class CountingFraming:
    """SSE underneath; counts the chunks it was fed, so its use is visible."""

    chunks: list[int] = field(default_factory=list)
    inner: SSEDecoder = field(default_factory=SSEDecoder)

    def feed(self, chunk: bytes) -> list[bytes]:
        self.chunks.append(len(chunk))
        return self.inner.feed(chunk)

    def close(self) -> list[bytes]:
        return self.inner.close()


def test_a_signing_scheme_and_a_framing_are_on_the_request_path() -> None:
    scheme, framings = SigningScheme(), list[CountingFraming]()

    def framing() -> Framing:
        framings.append(CountingFraming())
        return framings[-1]

    fam = ProviderFamily("openai", FAMILIES["openai"].adapter, scheme, framing, "https://x")
    req = ChatRequest([{"role": "user", "content": "hello"}])
    with SimulatorThread({"api_key": KEY, "models": {"m": {"error_rate": 0}}}) as sim:
        url = sim.url + "/openai/v1"
        prep = fam.prepare(Target("openai", url, "m", KEY))
        assert "Authorization" not in prep.headers  # nothing static: the signer adds it
        unsigned = fam.prepare(Target("openai", url, "m", "wrong"))
        adapter = fam.adapter

        async def go() -> tuple[str, str, ProviderError | None]:
            async with aiohttp.ClientSession() as s:
                answer = await transport.complete(s, adapter, prep, req, 5)
                text = ""
                async for ev in transport.stream(s, adapter, prep, req, 5, 5):
                    text += ev.text if isinstance(ev, TextDelta) else ""
                try:
                    await transport.complete(s, adapter, unsigned, req, 5)
                except ProviderError as exc:
                    return answer.content, text, exc
                return answer.content, text, None

        content, streamed, refused = asyncio.run(go())
    assert content.startswith("[m] ") and streamed == content
    assert refused is not None and refused.error_class == AUTH
    # The signer saw each request's final URL and body.
    assert [u for u, _ in scheme.seen] == [url + "/chat/completions"] * 3
    assert b'"stream":true' in scheme.seen[1][1] and b'"stream"' not in scheme.seen[0][1]
    assert len(framings) == 1 and framings[0].chunks  # the stream went through the framing
