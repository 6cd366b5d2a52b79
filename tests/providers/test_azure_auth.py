"""Azure OpenAI's two auth methods: the api-key header, and Entra ID tokens from azure-identity.

The token path is checked with the real azure-identity (``DefaultAzureCredential``
finding a Kubernetes workload identity in the environment) against the
simulator's Entra ID endpoint over TLS and its Azure OpenAI surface, which
verifies every bearer; the cache's timing rules (shared with Vertex AI's
google-auth tokens, ``token_cache``) with a stand-in credential.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import jwt
import pytest
from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError

from skyroute.router import providers
from skyroute.router.providers import registry, transport
from skyroute.router.providers.azure_auth import SCOPE, AzureAuth, EntraTokenSource
from skyroute.router.providers.types import AUTH, ChatRequest, ProviderError, Target, TextDelta
from skyroute.simulator.harness import SimulatorThread

from entra_identity import CLIENT_ID, TENANT, TlsFiles, entra_scenario, workload_env, write_tls

KEY = "azure-sim-key"
SCENARIO = {
    "seed": 4,
    "time_scale": 1000,
    "api_key": KEY,
    "defaults": {"error_rate": 0},
    "entra": entra_scenario(),
}


@dataclass
class Credential:
    """Stands in for an azure-identity credential: counts calls and the threads they run in."""

    lifetime_s: float = 3600
    fail: bool = False
    calls: int = 0
    threads: set[int] = field(default_factory=set)
    scopes: list[tuple[str, ...]] = field(default_factory=list)

    def get_token_info(self, *scopes: str, options: object = None) -> AccessTokenInfo:
        self.calls += 1
        self.threads.add(threading.get_ident())
        self.scopes.append(scopes)
        if self.fail:
            raise ClientAuthenticationError("AADSTS700211: No matching federated identity record")
        return AccessTokenInfo(f"tok{self.calls}", int(time.time() + self.lifetime_s))


def entra(endpoint: str, deployment: str = "gpt-4o-eu") -> Target:
    return Target("azure-openai", endpoint, deployment, auth="entra")


def test_api_key_or_entra_decides_the_headers() -> None:
    scheme = registry.FAMILIES["azure-openai"].auth
    assert isinstance(scheme, AzureAuth)
    keyed = Target("azure-openai", "https://r.openai.azure.com", "d", "k1")
    assert scheme.headers(keyed) == {"api-key": "k1"} and scheme.signer(keyed) is None
    token = Target("azure-openai", "https://r.openai.azure.com", "d", None, auth="entra")
    assert scheme.headers(token) == {} and scheme.signer(token) is not None
    _, prep = providers.prepared(token)
    assert "api-key" not in prep.headers and prep.sign is not None


def test_tokens_come_from_a_worker_thread_once_and_are_cached() -> None:
    cred = Credential()
    source = EntraTokenSource(lambda: cred)

    async def go() -> list[dict[str, str]]:
        first = await asyncio.gather(*(source.headers() for _ in range(5)))  # one call shared
        return [*first, await source.headers()]

    assert asyncio.run(go()) == [{"Authorization": "Bearer tok1"}] * 6
    assert cred.calls == 1 and threading.get_ident() not in cred.threads
    assert cred.scopes == [(SCOPE,)] and SCOPE == "https://cognitiveservices.azure.com/.default"


def test_a_token_near_expiry_is_refreshed_in_the_background() -> None:
    cred = Credential(lifetime_s=200)  # inside azure-identity's 300 s refresh offset
    source = EntraTokenSource(lambda: cred)

    async def go() -> list[str]:
        seen = [(await source.headers())["Authorization"]]
        await asyncio.sleep(1.1)  # a short-lived token is refreshed at most every second
        seen.append((await source.headers())["Authorization"])  # not waited for: the old one
        for _ in range(200):
            await asyncio.sleep(0.01)
            if cred.calls == 2:
                break
        await asyncio.sleep(0.05)
        seen.append((await source.headers())["Authorization"])
        return seen

    assert asyncio.run(go()) == ["Bearer tok1", "Bearer tok1", "Bearer tok2"]


def test_no_identity_is_auth_and_is_not_asked_again_per_request() -> None:
    cred = Credential(fail=True)
    source = EntraTokenSource(lambda: cred)
    for _ in range(3):
        with pytest.raises(ProviderError) as err:
            asyncio.run(source.headers())
        assert err.value.error_class == AUTH and err.value.retryable
        assert "Microsoft Entra ID credentials failed" in err.value.message
        assert "AADSTS700211" in err.value.message
    assert cred.calls == 1


# -- azure-identity's own chain, on loopback ---------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return write_tls(tmp_path_factory.mktemp("azure-auth-tls"))


@pytest.fixture(scope="module")
def sim(tls: TlsFiles) -> Iterator[SimulatorThread]:
    with SimulatorThread(SCENARIO, tls=(str(tls.cert), str(tls.key))) as s:
        yield s


def test_workload_identity_tokens_reach_the_deployment(
    sim: SimulatorThread, tls: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in workload_env(tmp_path, sim.tls_url, tls).items():
        monkeypatch.setenv(name, value)
    source = EntraTokenSource()  # DefaultAzureCredential: the workload identity in the env
    scheme = AzureAuth(lambda: source)
    target = entra(sim.url + "/azure")
    adapter, base = providers.prepared(target)
    prep = dataclasses.replace(base, sign=scheme.signer(target))
    req = ChatRequest(messages=[{"role": "user", "content": "what is the refund policy?"}])
    before = sim.stats()["entra"]

    async def go() -> tuple[list[str], list[str]]:
        async with aiohttp.ClientSession() as s:
            unary = [(await transport.complete(s, adapter, prep, req, 5)).content for _ in range(3)]
            events = transport.stream(s, adapter, prep, req, 5, 5)
            streamed = [e.text async for e in events if isinstance(e, TextDelta)]
        return unary, streamed

    unary, streamed = asyncio.run(go())
    assert all(c.startswith("[gpt-4o-eu] ") for c in unary) and "".join(streamed) == unary[0]
    after = sim.stats()["entra"]
    assert after["tokens_issued"] == before["tokens_issued"] + 1  # cached across requests
    assert after["bearer_ok"] == before["bearer_ok"] + 4
    token = asyncio.run(source.headers())["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["tid"], claims["appid"]) == (TENANT, CLIENT_ID)
