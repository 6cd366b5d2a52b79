"""Google Vertex AI: publisher-model URLs, OAuth tokens from google-auth, both publishers' answers.

The codecs are the Gemini and Anthropic families' (their translation cases
run in tests/providers/test_translation.py and test_adapters_live.py). These
check what Vertex AI adds: URLs per location (regional, ``global``, the
``us``/``eu`` multi-regions) and project, Anthropic's body without ``model``
and with ``anthropic_version``, access tokens minted off the event loop,
cached until near expiry and refreshed in the background, google-auth's real
chain on loopback (a service-account key file whose token endpoint is served
here, an external account exchanged at a loopback STS, the metadata server
as GKE Workload Identity serves it), and Vertex AI's errors in both shapes,
against the simulator, which accepts only the token issued.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from gcp_auth import SA_EMAIL, GoogleTokens
from google.auth import credentials as google_credentials
from google.auth.exceptions import DefaultCredentialsError, RefreshError

from skyroute.router import providers
from skyroute.router.providers import registry, transport
from skyroute.router.providers.common import Prepared
from skyroute.router.providers.google_auth import GoogleAuth, TokenSource
from skyroute.router.providers.types import (
    AUTH,
    CLIENT_ERROR,
    CONTEXT_LENGTH,
    RATE_LIMITED,
    SERVER_ERROR,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEnd,
    StreamEvent,
    Target,
    TextDelta,
    ToolCallEvent,
)
from skyroute.router.providers.vertex_adapter import ENDPOINT
from skyroute.router.table import SnapshotError, build_table
from skyroute.simulator.harness import SimulatorThread
from skyroute.v1 import snapshot_pb2 as pb

TOKEN = "ya29.skyroute-test-token"
PROJECT = "acme-prod"
GEMINI = "gemini-2.5-flash"
CLAUDE = "claude-sonnet-4-5@20250929"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "update_shipment",
            "parameters": {
                "type": "object",
                "properties": {"shipment_id": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["shipment_id", "days"],
            },
        },
    }
]
SCENARIO = {
    "seed": 3,
    "time_scale": 1000,
    "api_key": TOKEN,
    "defaults": {"error_rate": 0},
    "models": {
        "err-rate_limited": {"error_rate": 1, "errors": {"rate_limited": 1}, "retry_after_s": 2},
        "err-overloaded": {"error_rate": 1, "errors": {"overloaded": 1}},
        "err-auth": {"error_rate": 1, "errors": {"auth": 1}},
        "tiny-context": {"context_window": 5},
    },
}


class Minting(google_credentials.Credentials):
    """google-auth credentials whose refresh mints ``token`` (or fails), counted, by thread."""

    def __init__(self, lifetime_s: float = 3600, token: str | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.lifetime_s = lifetime_s
        self.fixed = token
        self.calls = 0
        self.threads: set[int] = set()
        self.fail = False
        self.gate: threading.Event | None = None  # a refresh waits for it when set

    def refresh(self, request: Any) -> None:
        self.calls += 1
        self.threads.add(threading.get_ident())
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise RefreshError("the token endpoint is unreachable")
        self.token = self.fixed or f"tok{self.calls}"
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        self.expiry = now + datetime.timedelta(seconds=self.lifetime_s)


def target(family: str, url: str, model: str, **kw: Any) -> Target:
    return Target(family, url, model, auth="google", project=kw.pop("project", PROJECT), **kw)


def prepared(t: Target, source: TokenSource) -> Prepared:
    return replace(registry.FAMILIES[t.provider], auth=GoogleAuth(lambda: source)).prepare(t)


def ask(text: str, **kw: Any) -> ChatRequest:
    return ChatRequest(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}], **kw
    )


async def complete(t: Target, prep: Prepared, req: ChatRequest) -> ChatResult:
    async with aiohttp.ClientSession() as s:
        return await transport.complete(s, registry.FAMILIES[t.provider].adapter, prep, req, 5)


async def stream(t: Target, prep: Prepared, req: ChatRequest) -> list[StreamEvent]:
    adapter = registry.FAMILIES[t.provider].adapter
    async with aiohttp.ClientSession() as s:
        return [ev async for ev in transport.stream(s, adapter, prep, req, 3, 5)]


# -- URLs ------------------------------------------------------------------------------


def test_urls_per_location_publisher_and_project() -> None:
    def urls(family: str, model: str, endpoint: str = ENDPOINT, **kw: Any) -> tuple[str, str]:
        _, prep = providers.prepared(target(family, endpoint, model, **kw))
        return prep.url, prep.stream_url

    path = f"/v1/projects/{PROJECT}/locations/europe-west4/publishers/google/models/{GEMINI}"
    assert urls("vertex-gemini", GEMINI, region="europe-west4") == (
        f"https://europe-west4-aiplatform.googleapis.com{path}:generateContent",
        f"https://europe-west4-aiplatform.googleapis.com{path}:streamGenerateContent?alt=sse",
    )
    path = f"/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/{CLAUDE}"
    assert urls("vertex-anthropic", CLAUDE, region="us-east5") == (
        f"https://us-east5-aiplatform.googleapis.com{path}:rawPredict",
        f"https://us-east5-aiplatform.googleapis.com{path}:streamRawPredict",
    )
    # global and the multi-regions have hosts of their own, as the official clients use.
    glob, _ = urls("vertex-anthropic", CLAUDE, region="global")
    assert glob.startswith(
        f"https://aiplatform.googleapis.com/v1/projects/{PROJECT}/locations/global/"
    )
    eu, _ = urls("vertex-gemini", GEMINI, region="eu")
    assert eu.startswith(
        f"https://aiplatform.eu.rep.googleapis.com/v1/projects/{PROJECT}/locations/eu/"
    )
    # No region: the one in a regional host, else us-central1.
    host, _ = urls("vertex-gemini", GEMINI, "https://asia-south1-aiplatform.googleapis.com")
    assert "/locations/asia-south1/" in host and host.startswith("https://asia-south1-")
    default, _ = urls("vertex-gemini", GEMINI)
    assert default.startswith("https://us-central1-aiplatform.googleapis.com/v1/")
    # Any other endpoint (a proxy, the simulator) is used as given, versioned unless it is.
    sim, _ = urls("vertex-gemini", GEMINI, "http://127.0.0.1:1/vertex", region="us-east1")
    assert sim.startswith(f"http://127.0.0.1:1/vertex/v1/projects/{PROJECT}/locations/us-east1/")
    beta, _ = urls("vertex-gemini", GEMINI, "http://127.0.0.1:1/vertex/v1beta1/")
    assert beta.startswith("http://127.0.0.1:1/vertex/v1beta1/projects/")
    with pytest.raises(ProviderError) as err:
        urls("vertex-gemini", GEMINI, project=None)
    assert err.value.error_class == CLIENT_ERROR and "project" in err.value.message
    assert registry.provider_name("vertex-anthropic", "us-east5-aiplatform.googleapis.com") == (
        "gcp.vertex_ai"
    )


def _snapshot(cand: pb.Candidate) -> pb.Snapshot:
    return pb.Snapshot(
        version="v1",
        default_policy="p",
        policies=[pb.Policy(name="p", version="v", default_pool="pool")],
        pools=[pb.Pool(name="pool", candidates=[cand])],
    )


def test_the_table_fills_the_location_per_endpoint_and_needs_a_project() -> None:
    cand = pb.Candidate(
        model="flash",
        provider="vertex-gemini",
        upstream_model=GEMINI,
        auth="google",
        region="us-central1",
        project=PROJECT,
        context_window=8192,
        endpoints=[
            pb.CandidateEndpoint(region="europe-west4"),
            pb.CandidateEndpoint(region="global"),
        ],
    )
    (model,) = build_table(_snapshot(cand)).policies["p"].pools["pool"]
    assert model.endpoints is not None
    got = [providers.prepared(c.target)[1].url for c in model.endpoints.rotations[0]]
    assert sorted(got) == sorted(
        [
            f"https://europe-west4-aiplatform.googleapis.com/v1/projects/{PROJECT}/locations/"
            f"europe-west4/publishers/google/models/{GEMINI}:generateContent",
            f"https://aiplatform.googleapis.com/v1/projects/{PROJECT}/locations/global/"
            f"publishers/google/models/{GEMINI}:generateContent",
        ]
    )
    cand.ClearField("project")
    with pytest.raises(SnapshotError, match="provider vertex-gemini needs a project"):
        build_table(_snapshot(cand))
    cand.project, cand.auth = PROJECT, "api-key"
    with pytest.raises(
        SnapshotError, match=r"auth 'api-key' is not one of vertex-gemini's \['google'\]"
    ):
        build_table(_snapshot(cand))


def test_anthropic_on_vertex_has_the_model_in_the_path_and_the_version_in_the_body() -> None:
    adapter = registry.FAMILIES["vertex-anthropic"].adapter
    req = ask("hi", max_tokens=50, stop=["END"], anthropic={"top_k": 5})
    for streamed in (False, True):
        body = orjson.loads(adapter.encode(req, CLAUDE, streamed))
        assert "model" not in body and body["anthropic_version"] == "vertex-2023-10-16"
        assert body["system"] == "Be brief." and body["max_tokens"] == 50
        assert body["stop_sequences"] == ["END"] and body["top_k"] == 5
        assert body.get("stream", False) is streamed
    _, prep = providers.prepared(target("vertex-anthropic", ENDPOINT, CLAUDE))
    assert "anthropic-version" not in prep.headers and "x-api-key" not in prep.headers
    # Same codecs, same parameters: what the public API's family cannot honour, neither can.
    fmt = {"response_format": {"type": "json_object"}}
    assert registry.cannot_honour("vertex-anthropic", fmt) == ("response_format",)
    assert registry.cannot_honour("vertex-gemini", fmt) == ()
    for name in ("anthropic", "gemini"):
        assert registry.FAMILIES["vertex-" + name].options is registry.FAMILIES[name].options
    gemini = registry.FAMILIES["vertex-gemini"].adapter
    assert orjson.loads(gemini.encode(req, GEMINI, False)) == orjson.loads(
        registry.FAMILIES["gemini"].adapter.encode(req, GEMINI, False)
    )


# -- tokens ----------------------------------------------------------------------------------


def test_tokens_are_minted_once_in_a_thread_and_cached() -> None:
    creds = Minting()
    source = TokenSource(lambda: creds)

    async def go() -> list[dict[str, str]]:
        first = await asyncio.gather(*(source.headers() for _ in range(5)))  # one refresh shared
        return [*first, *[await source.headers() for _ in range(3)]]

    got = asyncio.run(go())
    assert got == [{"Authorization": "Bearer tok1"}] * 8
    assert creds.calls == 1 and threading.get_ident() not in creds.threads


def test_a_token_near_expiry_is_used_while_one_refresh_runs_in_the_background() -> None:
    creds = Minting(lifetime_s=120)  # inside the refresh margin from the start
    source = TokenSource(lambda: creds)

    async def go() -> list[str]:
        seen = [(await source.headers())["Authorization"]]  # the first waits: nothing to use
        creds.gate = threading.Event()  # the next refresh hangs until released
        await asyncio.sleep(1.1)  # a short-lived token is refreshed at most every second
        for _ in range(3):  # none of these waits for it, and only one refresh starts
            seen.append((await asyncio.wait_for(source.headers(), 1))["Authorization"])
        for _ in range(200):
            await asyncio.sleep(0.01)  # the refresh thread starts, then hangs on the gate
            if creds.calls == 2:
                break
        seen.append((await asyncio.wait_for(source.headers(), 1))["Authorization"])
        assert creds.calls == 2
        creds.gate.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if (await source.headers())["Authorization"] == "Bearer tok2":
                break
        seen.append((await source.headers())["Authorization"])
        return seen

    assert asyncio.run(go()) == ["Bearer tok1"] * 5 + ["Bearer tok2"]


def test_an_expired_token_waits_and_a_failed_refresh_keeps_a_valid_one() -> None:
    creds = Minting(lifetime_s=5)  # below the expiry margin: never sent as it is
    source = TokenSource(lambda: creds)

    async def go() -> tuple[str, str]:
        a = (await source.headers())["Authorization"]
        b = (await source.headers())["Authorization"]
        return a, b

    assert asyncio.run(go()) == ("Bearer tok1", "Bearer tok2")  # each waited for its own

    creds = Minting(lifetime_s=120)
    source = TokenSource(lambda: creds)

    async def failing() -> list[str]:
        seen = [(await source.headers())["Authorization"]]
        creds.fail = True
        await asyncio.sleep(1.1)  # a short-lived token is refreshed at most every second
        for _ in range(3):
            seen.append((await source.headers())["Authorization"])
            await asyncio.sleep(0.05)
        return seen

    assert asyncio.run(failing()) == ["Bearer tok1"] * 4
    assert creds.calls == 2  # the failed refresh is retried at most every RETRY_S

    expired = Minting(lifetime_s=1)
    expired.fail = True
    with pytest.raises(ProviderError) as err:
        asyncio.run(TokenSource(lambda: expired).headers())
    assert err.value.error_class == AUTH and "token endpoint is unreachable" in err.value.message


def test_no_credentials_is_auth_and_the_chain_is_not_probed_per_request() -> None:
    calls: list[int] = []

    def nothing() -> google_credentials.Credentials:
        calls.append(1)
        raise DefaultCredentialsError("Your default credentials were not found.")

    source = TokenSource(nothing)
    for _ in range(3):
        with pytest.raises(ProviderError) as err:
            asyncio.run(source.headers())
        assert err.value.error_class == AUTH and err.value.retryable
        assert "default credentials were not found" in err.value.message
    assert calls == [1]


# -- google-auth's own chain, on loopback ---------------------------------------------------


def test_a_service_account_key_file_serves_both_publishers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with GoogleTokens(TOKEN) as tokens, SimulatorThread(SCENARIO) as sim:
        key = tokens.service_account_file(tmp_path / "sa.json")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        monkeypatch.setenv("GOOGLE_CLOUD_QUOTA_PROJECT", "acme-billing")  # x-goog-user-project
        source = TokenSource()  # google.auth.default(): the key file
        base = sim.url + "/vertex"
        gem = target("vertex-gemini", base, GEMINI, region="europe-west4")
        cla = target("vertex-anthropic", base, CLAUDE, region="us-east5")

        async def go() -> list[Any]:
            pg, pc = prepared(gem, source), prepared(cla, source)
            return await asyncio.gather(
                complete(gem, pg, ask("hello")),
                stream(gem, pg, ask("hello")),
                complete(cla, pc, ask("hello")),
                stream(cla, pc, ask("delay S1 by 2 days", tools=TOOLS)),
                source.headers(),
            )

        g_one, g_events, c_one, c_events, headers = asyncio.run(go())
    assert g_one.content.startswith(f"[{GEMINI}] ")
    assert "".join(e.text for e in g_events if isinstance(e, TextDelta)).startswith(f"[{GEMINI}] ")
    assert c_one.content.startswith(f"[{CLAUDE}] ")
    (call,) = [e.call for e in c_events if isinstance(e, ToolCallEvent)]
    assert orjson.loads(call["function"]["arguments"])["days"] == 1
    assert isinstance(c_events[-1], StreamEnd) and c_events[-1].finish_reason == "tool_calls"
    assert headers == {"Authorization": f"Bearer {TOKEN}", "x-goog-user-project": "acme-billing"}
    # One token for all of it: the JWT assertion was signed with the key file's key.
    ((kind, claims),) = tokens.issued
    assert kind == "service_account" and claims["iss"] == SA_EMAIL


def test_a_key_files_token_near_expiry_is_refreshed_in_the_background(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A 226 s token is inside the 225 s refresh margin after 1 s (the refresh floor).
    with GoogleTokens(TOKEN, expires_in=226) as tokens:
        monkeypatch.setenv(
            "GOOGLE_APPLICATION_CREDENTIALS", str(tokens.service_account_file(tmp_path / "k"))
        )
        source = TokenSource()

        async def go() -> list[dict[str, str]]:
            seen = [await source.headers(), await source.headers()]
            await asyncio.sleep(1.1)
            seen.append(await source.headers())  # served at once; one refresh starts
            for _ in range(200):
                await asyncio.sleep(0.01)
                if len(tokens.issued) == 2:
                    break
            seen.append(await source.headers())
            return seen

        seen = asyncio.run(go())
    assert seen == [{"Authorization": f"Bearer {TOKEN}"}] * 4
    # Two grants, each a fresh assertion signed with the key: the first, then the refresh.
    assert [kind for kind, _ in tokens.issued] == ["service_account"] * 2
    first, second = (claims for _, claims in tokens.issued)
    assert second["iat"] >= first["iat"]


def test_workload_identity_federation_exchanges_the_subject_token_at_sts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    subject = tmp_path / "token"
    subject.write_text("projected-service-account-jwt")
    with GoogleTokens(TOKEN, subject_token="projected-service-account-jwt") as tokens:
        config = tokens.external_account_file(tmp_path / "wif.json", subject)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(config))
        headers = asyncio.run(TokenSource().headers())
    assert headers == {"Authorization": f"Bearer {TOKEN}"}
    ((kind, form),) = tokens.issued
    assert kind == "external_account" and form["subject_token"] == "projected-service-account-jwt"


def test_the_metadata_server_as_gke_workload_identity_serves_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with GoogleTokens(TOKEN, expires_in=3000) as tokens, SimulatorThread(SCENARIO) as sim:
        monkeypatch.setenv("GCE_METADATA_HOST", tokens.host)
        monkeypatch.setenv("GCE_METADATA_IP", tokens.host)
        source = TokenSource()
        t = target("vertex-gemini", sim.url + "/vertex", GEMINI, region="us-central1")

        async def go() -> list[ChatResult]:
            prep = prepared(t, source)
            return [await complete(t, prep, ask("hello")) for _ in range(3)]

        results = asyncio.run(go())
    assert all(r.content.startswith(f"[{GEMINI}] ") for r in results)
    assert [kind for kind, _ in tokens.issued] == ["metadata"]


# -- Vertex AI's errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "model", "error_class", "status"),
    [
        ("vertex-anthropic", "err-rate_limited", RATE_LIMITED, 429),  # Google's shape
        ("vertex-anthropic", "err-auth", AUTH, 401),
        ("vertex-anthropic", "err-overloaded", SERVER_ERROR, 529),  # Anthropic's shape
        ("vertex-gemini", "err-rate_limited", RATE_LIMITED, 429),
        ("vertex-gemini", "err-auth", AUTH, 401),
        ("vertex-gemini", "tiny-context", CONTEXT_LENGTH, 400),
    ],
)
def test_errors_are_classified_unary_and_streamed(
    family: str, model: str, error_class: str, status: int
) -> None:
    source = TokenSource(lambda: Minting(token=TOKEN))
    with SimulatorThread(SCENARIO) as sim:
        t = target(family, sim.url + "/vertex", model, region="us-east5")
        prep = prepared(t, source)
        for call in (complete, stream):
            with pytest.raises(ProviderError) as err:
                asyncio.run(call(t, prep, ask("a question long enough to overflow a tiny window")))
            assert (err.value.error_class, err.value.status) == (error_class, status)
            if error_class == RATE_LIMITED:  # the scenario's 2 s, on its 1000x clock
                assert err.value.retry_after_s == pytest.approx(0.002)


def test_a_wrong_token_is_auth() -> None:
    source = TokenSource(lambda: Minting(token="ya29.not-this-one"))
    with SimulatorThread(SCENARIO) as sim:
        for family, model in (("vertex-gemini", GEMINI), ("vertex-anthropic", CLAUDE)):
            t = target(family, sim.url + "/vertex", model)
            with pytest.raises(ProviderError) as err:
                asyncio.run(complete(t, prepared(t, source), ask("hello")))
            assert err.value.error_class == AUTH and "UNAUTHENTICATED" in err.value.message
