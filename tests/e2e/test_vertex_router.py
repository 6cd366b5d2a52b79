"""Router with Google Vertex AI pools, end to end: the official openai SDK as the router's client.

Real processes over loopback: the simulator (its Vertex AI paths, which
answer only the access token issued), the control plane compiling ModelPools
with ``provider: vertex-gemini`` / ``vertex-anthropic``, ``auth: google``, a
``project`` and a ``region``, and one router whose credentials come from
google-auth's Application Default Credentials: ``GOOGLE_APPLICATION_CREDENTIALS``
names a service-account key file whose ``token_uri`` is a token endpoint this
test serves on loopback (it verifies the JWT assertion the router signs with
the key). Answers come from both publishers unary and streamed, tool calls
included; a Vertex AI quota error (Google's 429) falls back to the other
publisher; a 400 is the client's, not retried elsewhere; one token serves it all.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from gcp_auth import GoogleTokens
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from harness import Proc, Stack, http_get

TOKEN = "ya29.e2e-vertex-token"
PROJECT = "acme-prod"
GEMINI = "gemini-2.5-flash"
CLAUDE = "claude-sonnet-4-5@20250929"
POOLS = f"""\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: claude}}
spec:
  models:
    - name: claude-vertex
      provider: vertex-anthropic
      endpoint: "{{SIM}}/vertex"
      upstreamModel: "{CLAUDE}"
      auth: google
      project: {PROJECT}
      region: us-east5
      supportsTools: true
      pricing: {{inputPerMTok: 3.0, outputPerMTok: 15.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: gemini}}
spec:
  models:
    - name: gemini-vertex
      provider: vertex-gemini
      endpoint: "{{SIM}}/vertex"
      upstreamModel: {GEMINI}
      auth: google
      project: {PROJECT}
      region: europe-west4
      pricing: {{inputPerMTok: 0.3, outputPerMTok: 2.5}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: quota}}
spec:
  models:
    - name: claude-over-quota
      provider: vertex-anthropic
      endpoint: "{{SIM}}/vertex"
      upstreamModel: over-quota-model
      auth: google
      project: {PROJECT}
      region: global
      pricing: {{inputPerMTok: 3.0, outputPerMTok: 15.0}}
    - name: gemini-vertex-fallback
      provider: vertex-gemini
      endpoint: "{{SIM}}/vertex"
      upstreamModel: {GEMINI}
      auth: google
      project: {PROJECT}
      pricing: {{inputPerMTok: 0.3, outputPerMTok: 2.5}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: invalid}}
spec:
  models:
    - name: gemini-strict
      provider: vertex-gemini
      endpoint: "{{SIM}}/vertex"
      upstreamModel: strict-model
      auth: google
      project: {PROJECT}
      pricing: {{inputPerMTok: 0.3, outputPerMTok: 2.5}}
    - name: claude-unused
      provider: vertex-anthropic
      endpoint: "{{SIM}}/vertex"
      upstreamModel: unused-model
      auth: google
      project: {PROJECT}
      pricing: {{inputPerMTok: 3.0, outputPerMTok: 15.0}}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: vertex}
spec:
  default: true
  intents:
    - {name: gemini.ask, keywords: [translate]}
    - {name: busy.ask, keywords: [parcel]}
    - {name: strict.ask, keywords: [malformed]}
  rules:
    - {name: gemini, match: {intents: [gemini.ask]}, pool: gemini}
    - {name: busy, match: {intents: [busy.ask]}, pool: quota}
    - {name: strict, match: {intents: [strict.ask]}, pool: invalid}
  defaultPool: claude
  selection: {mode: ordered}
"""
SCENARIO = f"""\
seed: 5
api_key: {TOKEN}
defaults:
  ttft_ms: {{p50: 2, p95: 4}}
  tokens_per_s: 20000
  error_rate: 0
models:
  over-quota-model: {{error_rate: 1, errors: {{rate_limited: 1}}, retry_after_s: 0.01}}
  strict-model: {{error_rate: 1, errors: {{bad_request: 1}}}}
"""
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
NO_CACHE = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
def tokens() -> Iterator[GoogleTokens]:
    with GoogleTokens(TOKEN) as t:
        yield t


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tokens: GoogleTokens) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("vertex")
    env = {
        # The router's ADC: this key file (its token_uri is the loopback endpoint above).
        "GOOGLE_APPLICATION_CREDENTIALS": str(tokens.service_account_file(tmp / "sa.json")),
        # Nothing else of google-auth's chain: no gcloud configuration, no metadata server.
        "CLOUDSDK_CONFIG": tempfile.mkdtemp(prefix="skyroute-no-gcloud-", dir=tmp),
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
    }
    procs: list[Proc] = []
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the processes inherit it: the router's ADC reads it
    try:
        yield Stack(procs, tmp, {"pools.yaml": POOLS, "policy.yaml": POLICY}, SCENARIO)
    finally:
        for p in reversed(procs):
            p.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    ) as c:
        yield c


def sim_paths(stack: Stack) -> list[str]:
    return [r["path"] for r in json.loads(http_get(stack.sim + "/_sim/requests")[1])["requests"]]


def ask(client: openai.OpenAI, text: str, **kw: object) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": text}],
        extra_headers=NO_CACHE,
        **kw,  # type: ignore[call-overload]
    )


@pytest.mark.parametrize(
    ("text", "model", "upstream", "path"),
    [
        (
            "what is the refund policy?",
            "claude-vertex",
            CLAUDE,
            f"/vertex/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/{CLAUDE}",
        ),
        (
            "translate this to French",
            "gemini-vertex",
            GEMINI,
            f"/vertex/v1/projects/{PROJECT}/locations/europe-west4/publishers/google/models/"
            + GEMINI,
        ),
    ],
    ids=["anthropic", "gemini"],
)
def test_both_publishers_answer_unary_and_streamed(
    stack: Stack, client: openai.OpenAI, text: str, model: str, upstream: str, path: str
) -> None:
    msgs = [{"role": "user", "content": text}]
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=msgs,  # type: ignore[arg-type]
        extra_headers=NO_CACHE,
    )
    r = raw.parse()
    assert raw.headers["x-skyroute-model"] == model
    # The simulator names the model it was asked for (the path carried upstreamModel), and
    # it answered at all only because the bearer was the token the key file's grant issued.
    assert (r.choices[0].message.content or "").startswith(f"[{upstream}] ")
    assert r.usage is not None and r.usage.completion_tokens >= 1
    chunks = list(
        client.chat.completions.create(
            model="auto",
            messages=msgs,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=NO_CACHE,
        )
    )
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == r.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    # The router streams from upstream for both (a unary answer is assembled from it).
    method = ":streamRawPredict" if "anthropic" in path else ":streamGenerateContent"
    assert sim_paths(stack)[-2:] == [path + method] * 2


@pytest.mark.parametrize(
    "text", ["delay shipment S1 by 2 days", "translate and delay S1 by 2 days"]
)
def test_tool_calls_unary_streamed_and_answered(client: openai.OpenAI, text: str) -> None:
    msgs = [{"role": "user", "content": text}]
    r = ask(client, text, tools=TOOLS)
    (call,) = r.choices[0].message.tool_calls or []
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "update_shipment"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments)["days"] == 1  # type: ignore[union-attr]
    chunks = list(
        client.chat.completions.create(
            model="auto",
            messages=msgs,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            stream=True,
            extra_headers=NO_CACHE,
        )
    )
    pieces = [
        tc.function.arguments or ""
        for ch in chunks
        if ch.choices
        for tc in ch.choices[0].delta.tool_calls or ()
        if tc.function is not None
    ]
    assert json.loads("".join(pieces))["days"] == 1
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "tool_calls"
    # The tool result goes back as the publisher's own (tool_result by id, functionResponse
    # by name), and the simulator checks it answers the call.
    follow = client.chat.completions.create(
        model="auto",
        messages=[
            *msgs,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"ok": true}'},
        ],  # type: ignore[list-item]
        tools=TOOLS,  # type: ignore[arg-type]
        extra_headers=NO_CACHE,
    )
    assert (follow.choices[0].message.content or "").startswith("[")


def test_a_quota_error_falls_back_to_the_other_publisher(
    stack: Stack, client: openai.OpenAI
) -> None:
    for stream in (False, True):
        time.sleep(0.05)  # past the Retry-After (10 ms) the last 429 set: tried again
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": "where is my parcel?"}],
            stream=stream,
            extra_headers=NO_CACHE,
        )
        assert raw.headers["x-skyroute-model"] == "gemini-vertex-fallback"
        trail = raw.headers["x-skyroute-attempts"]
        assert trail.startswith("claude-over-quota;rate_limited;429;"), trail
    assert stack.sim_stats()["models"]["over-quota-model"]["errors"]["rate_limited"] >= 2
    quota = [p for p in sim_paths(stack) if "over-quota-model" in p]
    # region: global is addressed as Vertex AI's global location.
    assert quota and all(f"/projects/{PROJECT}/locations/global/" in p for p in quota)


def test_a_bad_request_is_the_clients_400(stack: Stack, client: openai.OpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as err:
            ask(client, "a malformed request", stream=stream)
        trail = err.value.response.headers["x-skyroute-attempts"]
        assert trail.startswith("gemini-strict;client_error;400;") and "," not in trail
    assert "unused-model" not in stack.sim_stats()["models"]


def test_one_token_served_every_request(client: openai.OpenAI, tokens: GoogleTokens) -> None:
    assert (ask(client, "hello").choices[0].message.content or "").startswith(f"[{CLAUDE}] ")
    # Minted once by the router (in a worker thread) from the key file's signed assertion,
    # and cached: an hour-long token is nowhere near its refresh margin during this module.
    assert [kind for kind, _ in tokens.issued] == ["service_account"]


def test_the_token_endpoint_refuses_an_assertion_signed_with_another_key(
    tmp_path: Path, tokens: GoogleTokens
) -> None:
    with GoogleTokens(TOKEN) as other:  # its own key; the file then names this endpoint
        key = other.service_account_file(tmp_path / "other.json")
    info = json.loads(key.read_text())
    info["token_uri"] = tokens.url + "/token"
    key.write_text(json.dumps(info))
    creds = service_account.Credentials.from_service_account_file(
        str(key), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    with pytest.raises(RefreshError, match="invalid_grant"):
        creds.refresh(Request())  # type: ignore[no-untyped-call]
