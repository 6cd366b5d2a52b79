"""Entra ID against the simulator: azure-identity gets tokens, openai.AzureOpenAI sends them.

The official clients on both sides: ``azure.identity`` (``DefaultAzureCredential``
with a workload identity from the environment, ``WorkloadIdentityCredential``)
asks the simulator's token endpoint over TLS, and ``openai.AzureOpenAI`` with
``azure_ad_token_provider`` sends the token as ``Authorization: Bearer`` to its
Azure OpenAI surface, which accepts only tokens the endpoint issued, for
Azure's audience, unexpired.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jwt
import openai
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    DefaultAzureCredential,
    WorkloadIdentityCredential,
    get_bearer_token_provider,
)

from skyroute.simulator.harness import SimulatorThread
from skyroute.simulator.scenario import ScenarioError, parse_scenario

from entra_identity import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    TlsFiles,
    entra_scenario,
    workload_env,
    write_tls,
)

SCOPE = "https://cognitiveservices.azure.com/.default"
VERSION = "2024-10-21"
SCENARIO = {
    "seed": 3,
    "time_scale": 100.0,
    "api_key": "azure-key",
    "defaults": {"error_rate": 0.0, "ttft_ms": {"p50": 100, "p95": 200}},
    "entra": entra_scenario(),
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return write_tls(tmp_path_factory.mktemp("entra-tls"))


@pytest.fixture(scope="module")
def sim(tls: TlsFiles) -> Iterator[SimulatorThread]:
    with SimulatorThread(SCENARIO, tls=(str(tls.cert), str(tls.key))) as s:
        yield s


@pytest.fixture
def workload(
    sim: SimulatorThread, tls: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in workload_env(tmp_path, sim.tls_url, tls).items():
        monkeypatch.setenv(name, value)


def azure(sim: SimulatorThread, **auth: object) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=sim.url + "/azure", api_version=VERSION, max_retries=0, timeout=5, **auth
    )


def entra_stats(sim: SimulatorThread) -> dict[str, int]:
    stats: dict[str, int] = sim.stats()["entra"]
    return stats


def raw_token(sim: SimulatorThread, tls: TlsFiles, **form: str) -> tuple[int, dict[str, object]]:
    """A token request as azure-identity words it, with ``form`` overriding fields."""
    fields = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": SCOPE,
        **form,
    }
    url = f"{sim.tls_url}/entra/{TENANT}/oauth2/v2.0/token"
    req = urllib.request.Request(url, urllib.parse.urlencode(fields).encode())
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_workload_identity_token_reaches_azure_openai(sim: SimulatorThread, workload: None) -> None:
    """DefaultAzureCredential finds the workload identity; one token serves both requests."""
    before = entra_stats(sim)
    credential = DefaultAzureCredential()
    provider = get_bearer_token_provider(credential, SCOPE)
    with azure(sim, azure_ad_token_provider=provider) as c:
        r = c.chat.completions.create(
            model="gpt-4o-eu", messages=[{"role": "user", "content": "what is the refund policy?"}]
        )
        chunks = list(
            c.chat.completions.create(
                model="gpt-4o-eu",
                messages=[{"role": "user", "content": "what is the refund policy?"}],
                stream=True,
            )
        )
    assert (r.choices[0].message.content or "").startswith("[gpt-4o-eu] ")
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == (
        r.choices[0].message.content
    )
    after = entra_stats(sim)
    assert after["tokens_issued"] == before["tokens_issued"] + 1  # azure-identity cached it
    assert after["bearer_ok"] == before["bearer_ok"] + 2
    token = credential.get_token(SCOPE)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["aud"] == "https://cognitiveservices.azure.com" and claims["tid"] == TENANT
    assert claims["appid"] == CLIENT_ID
    assert 3500 < token.expires_on - time.time() <= 3600


@pytest.mark.parametrize(
    ("change", "aadsts"),
    [
        ({"client_id": "00000000-0000-4000-8000-000000000000"}, "AADSTS700016"),
        ({"token": "another-service-account-token"}, "AADSTS700211"),
        ({"tenant_id": "11111111-2222-4333-8444-555555555555"}, "AADSTS90002"),
    ],
)
def test_token_endpoint_refusals_are_entras(
    sim: SimulatorThread, workload: None, tmp_path: Path, change: dict[str, str], aadsts: str
) -> None:
    before = entra_stats(sim)["refused"]
    token_file = tmp_path / "other-token"
    token_file.write_text(change.get("token", "x"))
    credential = WorkloadIdentityCredential(
        tenant_id=change.get("tenant_id", TENANT),
        client_id=change.get("client_id", CLIENT_ID),
        token_file_path=str(token_file) if "token" in change else None,
    )
    with pytest.raises(ClientAuthenticationError) as err:
        credential.get_token(SCOPE)
    assert aadsts in str(err.value)
    assert entra_stats(sim)["refused"] == before + 1


def test_raw_token_requests(sim: SimulatorThread, tls: TlsFiles) -> None:
    """The token endpoint as raw requests: a client secret (ClientSecretCredential's grant:
    through MSAL, which discovers its authority at login.microsoftonline.com, so not here)."""
    status, body = raw_token(sim, tls)
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3600
    status, body = raw_token(sim, tls, scope="https://management.azure.com/.default")
    assert status == 400 and body["error"] == "invalid_scope"
    status, body = raw_token(sim, tls, grant_type="password")
    assert status == 400 and body["error"] == "unsupported_grant_type"
    status, body = raw_token(sim, tls, client_secret="wrong")
    assert status == 401 and body["error_codes"] == [7000215]
    status, body = raw_token(sim, tls, client_secret="x" * 20000)
    assert status == 400 and body["error"] == "invalid_request"


def test_only_tokens_the_endpoint_issued_are_accepted(sim: SimulatorThread, tls: TlsFiles) -> None:
    status, body = raw_token(sim, tls)
    assert status == 200
    good = str(body["access_token"])
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(claims, b"not-the-simulators-key-0123456789", algorithm="HS256")
    other_aud = jwt.encode({**claims, "aud": "https://management.azure.com"}, b"k" * 32)
    with azure(sim, azure_ad_token=good) as c:
        assert c.chat.completions.create(model="d", messages=[{"role": "user", "content": "x"}])
    for bad, why in ((forged, "InvalidSignatureError"), (other_aud, "token invalid"), ("abc", "")):
        with azure(sim, azure_ad_token=bad) as c, pytest.raises(openai.AuthenticationError) as err:
            c.chat.completions.create(model="d", messages=[{"role": "user", "content": "x"}])
        assert err.value.code == "401"
        assert "Access token is missing, invalid, audience is incorrect" in str(err.value)
        assert why in str(err.value)


def test_an_expired_token_is_refused(sim: SimulatorThread, tls: TlsFiles) -> None:
    sim.set_scenario({**SCENARIO, "entra": entra_scenario(token_ttl_s=1)})
    try:
        status, body = raw_token(sim, tls)
        assert status == 200 and body["expires_in"] == 1
        time.sleep(2.1)
        expired = str(body["access_token"])
        with (
            azure(sim, azure_ad_token=expired) as c,
            pytest.raises(openai.AuthenticationError) as err,
        ):
            c.chat.completions.create(model="d", messages=[{"role": "user", "content": "x"}])
        assert "token expired" in str(err.value)
    finally:
        sim.set_scenario(SCENARIO)


def test_api_key_still_works_and_a_bearer_is_never_taken_as_a_key(sim: SimulatorThread) -> None:
    with azure(sim, api_key="azure-key") as c:
        assert c.chat.completions.create(model="d", messages=[{"role": "user", "content": "x"}])
    with azure(sim, azure_ad_token="azure-key") as c, pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="d", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize(
    ("entra", "needle"),
    [
        ({"client_id": "c"}, "entra: tenant_id and client_id are required"),
        ({"tenant_id": "t", "client_id": "c", "colour": 1}, "entra"),
        ({"tenant_id": "t", "client_id": 5}, "entra.client_id: expected a non-empty string"),
        ({"tenant_id": "t", "client_id": "c", "token_ttl_s": 0}, "entra.token_ttl_s"),
    ],
)
def test_bad_entra_sections_name_the_field(entra: dict[str, object], needle: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario({"entra": entra}, "s")
    assert needle in str(err.value)
