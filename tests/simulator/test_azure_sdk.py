"""The official ``openai.AzureOpenAI`` client against the simulator's Azure OpenAI surface."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from skyroute.simulator.harness import SimulatorThread

KEYED = {
    "seed": 7,
    "time_scale": 100.0,
    "api_key": "azure-test-key",
    "defaults": {"error_rate": 0.0, "ttft_ms": {"p50": 100, "p95": 200}},
}

VERSION = "2024-10-21"
KEY = "azure-test-key"


@pytest.fixture(scope="module")
def keyed() -> Iterator[SimulatorThread]:
    with SimulatorThread(KEYED) as s:
        yield s


def post(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    """A raw POST of a one-message chat (status, JSON body): what no SDK would send."""
    body = json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def azure(sim: SimulatorThread, version: str = VERSION, key: str = KEY) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=sim.url + "/azure",
        api_version=version,
        api_key=key,
        max_retries=0,
        timeout=5,
    )


def test_unary_names_the_deployment_and_carries_filter_results(keyed: SimulatorThread) -> None:
    with azure(keyed) as c:
        r = c.chat.completions.create(
            model="gpt-4o-eu", messages=[{"role": "user", "content": "what is the refund policy?"}]
        )
    assert r.object == "chat.completion" and r.model == "gpt-4o-eu"
    assert (r.choices[0].message.content or "").startswith("[gpt-4o-eu] ")
    assert r.choices[0].finish_reason == "stop"
    extra = r.model_extra or {}
    assert extra["prompt_filter_results"][0]["content_filter_results"]["hate"] == {
        "filtered": False,
        "severity": "safe",
    }
    assert (r.choices[0].model_extra or {})["content_filter_results"]["violence"][
        "filtered"
    ] is False
    assert r.usage is not None and r.usage.total_tokens > r.usage.prompt_tokens


def test_stream_opens_with_the_prompt_filter_chunk_and_reports_usage(
    keyed: SimulatorThread,
) -> None:
    msgs = [{"role": "user", "content": "what is the refund policy?"}]
    with azure(keyed) as c:
        unary = c.chat.completions.create(model="gpt-4o-eu", messages=msgs)  # type: ignore[arg-type]
        chunks = list(
            c.chat.completions.create(
                model="gpt-4o-eu",
                messages=msgs,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert chunks[0].choices == [] and "prompt_filter_results" in (chunks[0].model_extra or {})
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == unary.choices[0].message.content
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == (
        unary.usage.completion_tokens if unary.usage else -1
    )


def test_api_version_is_required_and_checked(keyed: SimulatorThread) -> None:
    with azure(keyed, version="1999-01-01") as c, pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(model="d", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "BadRequest"  # type: ignore[index]
    assert "1999-01-01" in err.value.body["message"]  # type: ignore[index]
    url = keyed.url + "/azure/openai/deployments/d/chat/completions"
    assert post(url, {"api-key": KEY}) == (
        404,
        {"error": {"code": "404", "message": "Resource not found"}},
    )


def test_api_key_header_is_checked(keyed: SimulatorThread) -> None:
    with azure(keyed, key="wrong") as c, pytest.raises(openai.AuthenticationError) as err:
        c.chat.completions.create(model="d", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 401 and err.value.body["code"] == "401"  # type: ignore[index]
    url = keyed.url + f"/azure/openai/deployments/d/chat/completions?api-version={VERSION}"
    status, answer = post(url, {"api-key": KEY})
    assert status == 200 and answer["model"] == "d"
    # a bearer must be an Entra ID token the simulator issued (test_azure_entra_sdk.py), not the key
    assert post(url, {"Authorization": "Bearer " + KEY})[0] == 401
    assert post(url, {})[0] == 401
    assert post(url, {"api-key": "other"})[0] == 401


def test_content_filter_error_has_azures_shape(sim: SimulatorThread) -> None:
    with azure(sim) as c, pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(
            model="err-content_filter", messages=[{"role": "user", "content": "hi"}]
        )
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "content_filter"
    assert err.value.code == "content_filter"
    inner = body["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_result"]["violence"] == {"filtered": True, "severity": "medium"}
    assert inner["content_filter_result"]["hate"]["filtered"] is False


def test_missing_deployment_is_azures_404(sim: SimulatorThread) -> None:
    with azure(sim) as c, pytest.raises(openai.NotFoundError) as err:
        c.chat.completions.create(
            model="err-not_found", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.code == "DeploymentNotFound"
    assert "deployment for this resource does not exist" in str(err.value)


def test_rate_limit_is_azures_429_with_retry_after(sim: SimulatorThread) -> None:
    with azure(sim) as c, pytest.raises(openai.RateLimitError) as err:
        c.chat.completions.create(
            model="err-rate_limited",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    assert err.value.body["code"] == "429"  # type: ignore[index]
    assert err.value.response.headers["retry-after-ms"]
