"""Amazon Bedrock: Converse translation, SigV4 from the AWS chain, the event stream, AWS errors.

The codec's cases shared with every family (text, tools across families, every
error kind, cuts and stalls) run in tests/providers/test_adapters_live.py
against the simulator's Bedrock surface with a Bedrock API key. These check
what Bedrock adds: SigV4 signatures that the simulator verifies with botocore
(a wrong secret is refused), credentials resolved and refreshed off the event
loop and shared by concurrent requests, the binary event-stream framing,
Bedrock's error names, stop reasons and structured output.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from botocore.credentials import Credentials, RefreshableCredentials
from multidict import CIMultiDict

from skyroute.router import providers
from skyroute.router.providers import registry, transport
from skyroute.router.providers.bedrock_adapter import BedrockAdapter
from skyroute.router.providers.bedrock_auth import BedrockAuth, CredentialSource, region_of
from skyroute.router.providers.bedrock_eventstream import EventStreamDecoder
from skyroute.router.providers.common import Prepared
from skyroute.router.providers.errors import classify_status
from skyroute.router.providers.types import (
    AUTH,
    BAD_RESPONSE,
    CLIENT_ERROR,
    CONTENT_FILTER,
    CONTEXT_LENGTH,
    NOT_FOUND,
    RATE_LIMITED,
    SERVER_ERROR,
    STREAM_CUT,
    TIMEOUT,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEnd,
    StreamEvent,
    Target,
    TextDelta,
    ToolCallEvent,
)
from skyroute.simulator import bedrock_wire
from skyroute.simulator.harness import SimulatorThread

SECRET = "sim-secret-access-key"
AKID = "AKIDSKYROUTETEST"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "update_shipment",
            "description": "Change a shipment",
            "parameters": {
                "type": "object",
                "properties": {"shipment_id": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["shipment_id", "days"],
            },
        },
    }
]
ADAPTER = BedrockAdapter()


class Chain:
    """A credential chain that counts its calls and the threads it ran on."""

    def __init__(self, creds: Credentials | None) -> None:
        self.creds = creds
        self.calls = 0
        self.threads: set[int] = set()

    def __call__(self) -> Credentials | None:
        self.calls += 1
        self.threads.add(threading.get_ident())
        return self.creds


@contextlib.asynccontextmanager
async def loopback(app: web.Application) -> AsyncIterator[int]:
    """``app`` served on a free loopback port for the block."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def prepared(target: Target, source: CredentialSource) -> Prepared:
    family = replace(registry.FAMILIES["bedrock"], auth=BedrockAuth(lambda: source))
    return family.prepare(target)


def aws_target(url: str, model: str = "anthropic.claude-sonnet-4-5-v1:0") -> Target:
    return Target("bedrock", url + "/bedrock", model, auth="aws", region="eu-central-1")


def ask(text: str, **kw: Any) -> ChatRequest:
    return ChatRequest(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}], **kw
    )


async def complete(prep: Prepared, req: ChatRequest) -> ChatResult:
    async with aiohttp.ClientSession() as s:
        return await transport.complete(s, ADAPTER, prep, req, 5)


async def stream(prep: Prepared, req: ChatRequest) -> list[StreamEvent]:
    async with aiohttp.ClientSession() as s:
        return [ev async for ev in transport.stream(s, ADAPTER, prep, req, 3, 5)]


# -- SigV4 against the simulator, which verifies it with botocore -------------------


def test_sigv4_signed_requests_are_verified_and_a_wrong_secret_is_refused() -> None:
    chain = Chain(Credentials(AKID, SECRET))
    source = CredentialSource(chain)
    with SimulatorThread({"api_key": SECRET, "time_scale": 1000}) as sim:
        prep = prepared(aws_target(sim.url), source)
        assert "Authorization" not in prep.headers  # only the signer adds it

        async def both() -> tuple[ChatResult, list[StreamEvent]]:
            # Concurrent first requests share one resolution of the chain.
            return await asyncio.gather(complete(prep, ask("hello")), stream(prep, ask("hello")))

        result, events = asyncio.run(both())
        assert result.content.startswith("[anthropic.claude-sonnet-4-5-v1:0] ")
        assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "stop"
        assert "".join(e.text for e in events if isinstance(e, TextDelta))
        assert chain.calls == 1 and threading.get_ident() not in chain.threads
        # Both went to the model's Converse paths (the ":" of its id as sent, and signed so).
        with urllib.request.urlopen(sim.url + "/_sim/requests") as resp:
            paths = {r["path"] for r in orjson.loads(resp.read())["requests"]}
        base = "/bedrock/model/anthropic.claude-sonnet-4-5-v1:0/"
        assert paths == {base + "converse", base + "converse-stream"}

        wrong = prepared(aws_target(sim.url), CredentialSource(Chain(Credentials(AKID, "no"))))
        with pytest.raises(ProviderError) as err:
            asyncio.run(complete(wrong, ask("hello")))
        assert err.value.error_class == AUTH and err.value.status == 403
        assert "UnrecognizedClientException" in err.value.message


def test_the_signature_covers_region_session_token_and_body() -> None:
    source = CredentialSource(Chain(Credentials(AKID, SECRET, "session-token-1")))
    prep = prepared(aws_target("http://127.0.0.1:9"), source)
    body = b'{"messages":[]}'
    sign = prep.sign
    assert sign is not None

    async def signed() -> dict[str, str]:
        return await sign(prep.url, dict(prep.headers), body)

    headers: CIMultiDict[str] = CIMultiDict(asyncio.run(signed()))
    auth = headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert "/eu-central-1/bedrock/aws4_request" in auth
    assert "x-amz-security-token" in auth and headers["X-Amz-Security-Token"] == "session-token-1"
    url = "http://127.0.0.1:9/bedrock/model/anthropic.claude-sonnet-4-5-v1:0/converse"
    headers["host"] = "127.0.0.1:9"
    assert bedrock_wire.verify_sigv4("POST", url, headers, body, SECRET)
    assert not bedrock_wire.verify_sigv4("POST", url, headers, body + b" ", SECRET)
    assert not bedrock_wire.verify_sigv4("POST", url, headers, body, SECRET + "x")
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=6)
    assert not bedrock_wire.verify_sigv4("POST", url, headers, body, SECRET, now=later)


def test_no_credentials_is_auth_and_the_empty_chain_is_not_probed_per_request() -> None:
    chain = Chain(None)
    prep = prepared(aws_target("http://127.0.0.1:9"), CredentialSource(chain))
    for _ in range(3):
        with pytest.raises(ProviderError) as err:
            asyncio.run(complete(prep, ask("x")))
        assert err.value.error_class == AUTH and err.value.retryable
        assert "no AWS credentials" in err.value.message
    assert chain.calls == 1


def test_expiring_credentials_are_refreshed_in_a_thread() -> None:
    now = datetime.datetime.now(datetime.UTC)
    refreshes: list[int] = []

    def refresh() -> dict[str, str]:
        expiry = now + datetime.timedelta(hours=1 if refreshes else 0, minutes=5)
        refreshes.append(threading.get_ident())
        return {
            "access_key": f"{AKID}{len(refreshes)}",
            "secret_key": SECRET,
            "token": "t",
            "expiry_time": expiry.isoformat(),
        }

    creds = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    source = CredentialSource(Chain(creds))

    async def keys() -> list[str]:
        return [(await source.get()).access_key for _ in range(3)]

    # 5 minutes left is inside botocore's refresh window: the first get refreshes, off the loop;
    # the refreshed keys (an hour left) then serve without another refresh.
    assert asyncio.run(keys()) == [f"{AKID}2"] * 3
    _, *refreshed = refreshes
    assert len(refreshed) == 1 and refreshed[0] != threading.get_ident()


def test_a_bedrock_api_key_is_a_bearer_token_and_no_signature() -> None:
    _, prep = providers.prepared(Target("bedrock", "https://x", "m", "brk-key"))
    assert prep.headers["Authorization"] == "Bearer brk-key" and prep.sign is None
    _, prep = providers.prepared(Target("bedrock", "https://x", "m", "brk-key", auth="aws"))
    assert "Authorization" not in prep.headers and prep.sign is not None


def test_endpoint_and_region() -> None:
    family = registry.FAMILIES["bedrock"]
    target = Target("bedrock", family.default_endpoint, "amazon.nova-pro-v1:0", region="ap-south-1")
    _, prep = providers.prepared(target)
    assert prep.url == (
        "https://bedrock-runtime.ap-south-1.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse"
    )
    assert prep.stream_url.endswith("/converse-stream")
    assert region_of(Target("bedrock", "https://bedrock-runtime.us-west-2.amazonaws.com", "m")) == (
        "us-west-2"
    )
    assert region_of(Target("bedrock", "http://127.0.0.1:1", "m")) == "us-east-1"
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude"
    _, prep = providers.prepared(Target("bedrock", "https://h", arn))
    assert "/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Ainference-profile%2Feu." in (
        prep.url
    )
    assert registry.provider_name("bedrock", "bedrock-runtime.eu-west-1.amazonaws.com") == (
        "aws.bedrock"
    )


# -- Converse translation -------------------------------------------------------------


def test_request_translation() -> None:
    req = ChatRequest(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "look"}, _image("image/png")]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call:with/odd#chars",
                        "type": "function",
                        "function": {"name": "update_shipment", "arguments": '{"days": 2}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call:with/odd#chars", "content": "done"},
            {"role": "user", "content": "thanks"},
        ],
        tools=TOOLS,
        tool_choice="required",
        max_tokens=50,
        temperature=0.2,
        stop=["END"],
        options={"top_p": 0.9, "user": "u1"},
    )
    body = orjson.loads(ADAPTER.encode(req, "m", False))
    assert body["system"] == [{"text": "Be brief."}]
    assert body["inferenceConfig"] == {
        "maxTokens": 50,
        "temperature": 0.2,
        "stopSequences": ["END"],
        "topP": 0.9,
    }
    user, assistant, results = body["messages"]
    assert user["content"][1] == {"image": {"format": "png", "source": {"bytes": "aGk="}}}
    (use,) = [b["toolUse"] for b in assistant["content"]]
    assert use["input"] == {"days": 2} and use["name"] == "update_shipment"
    # The tool result and the next user text share one user turn, with the same fitted id.
    assert results["role"] == "user"
    assert results["content"] == [
        {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "done"}]}},
        {"text": "thanks"},
    ]
    spec = body["toolConfig"]["tools"][0]["toolSpec"]
    assert spec["inputSchema"]["json"]["required"] == ["shipment_id", "days"]
    assert body["toolConfig"]["toolChoice"] == {"any": {}}


def _image(media: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,aGk="}}


def test_tool_choice_and_refusals() -> None:
    def body(**kw: Any) -> dict[str, Any]:
        return dict(orjson.loads(ADAPTER.encode(ask("x", **kw), "m", False)))

    named = {"type": "function", "function": {"name": "update_shipment"}}
    assert body(tools=TOOLS, tool_choice=named)["toolConfig"]["toolChoice"] == {
        "tool": {"name": "update_shipment"}
    }
    assert "toolChoice" not in body(tools=TOOLS, tool_choice="auto")["toolConfig"]
    assert "toolConfig" not in body(tools=TOOLS, tool_choice="none")
    fmt = {"type": "json_object"}
    both = body(options={"reasoning_effort": "high", "response_format": fmt})["outputConfig"]
    assert both["effort"] == "high" and both["textFormat"]["type"] == "json_schema"
    assert body(options={"reasoning_effort": "minimal"})["outputConfig"] == {"effort": "low"}
    assert "outputConfig" not in body(options={"reasoning_effort": "none"})
    with pytest.raises(ProviderError) as err:
        body(options={"seed": 3})
    assert err.value.error_class == CLIENT_ERROR and "seed" in err.value.message
    with pytest.raises(ProviderError) as err:
        ADAPTER.encode(
            ChatRequest(
                [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://i"}}],
                    }
                ]
            ),
            "m",
            False,
        )
    assert err.value.error_class == CLIENT_ERROR and "data: URLs" in err.value.message


def test_structured_output_goes_as_output_config_and_comes_back_as_json() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "schema": schema}}
    body = orjson.loads(ADAPTER.encode(ask("plan", options={"response_format": fmt}), "m", False))
    text_format = body["outputConfig"]["textFormat"]
    assert text_format["type"] == "json_schema"
    assert orjson.loads(text_format["structure"]["jsonSchema"]["schema"]) == schema
    with SimulatorThread({"time_scale": 1000}) as sim:
        t = Target("bedrock", sim.url + "/bedrock", "m", "k")
        result = asyncio.run(_complete(t, ask("plan", options={"response_format": fmt})))
    answer = orjson.loads(result.content)
    assert isinstance(answer["city"], str) and isinstance(answer["days"], int)


async def _complete(t: Target, req: ChatRequest) -> ChatResult:
    async with aiohttp.ClientSession() as s:
        return await providers.complete(s, t, req, 5)


def _response(stop: str, content: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": {"inputTokens": 7, "outputTokens": 3, "cacheReadInputTokens": 5},
            "metrics": {"latencyMs": 1},
        }
    )


def test_stop_reasons() -> None:
    text = [{"text": "hi"}]
    assert ADAPTER.decode(_response("end_turn", text)).finish_reason == "stop"
    result = ADAPTER.decode(_response("max_tokens", text))
    assert (result.finish_reason, result.prompt_tokens, result.completion_tokens) == (
        "length",
        12,
        3,
    )
    use = {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}}
    result = ADAPTER.decode(_response("tool_use", [use]))
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls[0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    for stop, error_class in (
        ("guardrail_intervened", CONTENT_FILTER),
        ("malformed_tool_use", BAD_RESPONSE),
    ):
        with pytest.raises(ProviderError) as err:
            ADAPTER.decode(_response(stop, text))
        assert err.value.error_class == error_class and stop in err.value.message
    with pytest.raises(ProviderError) as err:
        ADAPTER.decode(b'{"output": {}}')
    assert err.value.error_class == BAD_RESPONSE


# -- AWS errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "message", "error_class"),
    [
        (429, "ThrottlingException", "Too many requests, please wait.", RATE_LIMITED),
        (429, "ModelNotReadyException", "Model is not ready for inference.", RATE_LIMITED),
        (503, "ServiceUnavailableException", "Bedrock is unable to process.", SERVER_ERROR),
        (500, "InternalServerException", "Internal error.", SERVER_ERROR),
        (424, "ModelErrorException", "The model failed.", SERVER_ERROR),
        (400, "ServiceQuotaExceededException", "Your quota is used up.", RATE_LIMITED),
        (408, "ModelTimeoutException", "The model took too long.", TIMEOUT),
        (400, "ValidationException", "messages.0: blank text.", CLIENT_ERROR),
        (400, "ValidationException", "Input is too long for requested model.", CONTEXT_LENGTH),
        (403, "AccessDeniedException", "You don't have access to the model.", AUTH),
        (404, "ResourceNotFoundException", "Model not found.", NOT_FOUND),
    ],
)
def test_aws_error_names(status: int, name: str, message: str, error_class: str) -> None:
    headers = {"x-amzn-errortype": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    err = classify_status("bedrock", status, orjson.dumps({"message": message}), headers, None)
    assert err.error_class == error_class and err.status == status
    assert err.message == f"bedrock HTTP {status} ({name}): {message}"


# -- the binary event stream ------------------------------------------------------------


def _frames() -> bytes:
    ev = bedrock_wire.event
    return (
        ev("messageStart", {"role": "assistant"})
        + ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}})
        + ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}})
        + ev("contentBlockStop", {"contentBlockIndex": 0})
        + ev(
            "contentBlockStart",
            {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t9", "name": "f"}}},
        )
        + ev("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a"'}}})
        + ev("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ":1}"}}})
        + ev("contentBlockStop", {"contentBlockIndex": 1})
        + ev("messageStop", {"stopReason": "tool_use"})
        + ev("metadata", {"usage": {"inputTokens": 4, "outputTokens": 9, "totalTokens": 13}})
    )


def _assemble(data: bytes, step: int) -> list[StreamEvent]:
    decoder, asm = EventStreamDecoder(), ADAPTER.assembler()
    out: list[StreamEvent] = []
    for i in range(0, len(data), step):
        for payload in decoder.feed(data[i : i + step]):
            out.extend(asm.feed(payload))
    assert asm.done
    for payload in decoder.close():
        out.extend(asm.feed(payload))
    return out + asm.at_eof()


def test_event_stream_assembles_the_same_however_it_is_cut() -> None:
    data = _frames()
    whole = _assemble(data, len(data))
    assert whole == [
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCallEvent(
            {"id": "t9", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ),
        StreamEnd("tool_calls", 4, 9),
    ]
    assert _assemble(data, 1) == whole
    assert _assemble(data, 7) == whole


def test_a_corrupt_frame_or_a_body_that_is_no_event_stream_is_a_bad_response() -> None:
    data = bytearray(_frames())
    data[30] ^= 0xFF  # inside the first message: its CRC no longer matches
    with pytest.raises(ProviderError) as err:
        EventStreamDecoder().feed(bytes(data))
    assert err.value.error_class == BAD_RESPONSE and "ChecksumMismatch" in err.value.message
    with pytest.raises(ProviderError) as err:
        EventStreamDecoder().feed(b'{"message": "a JSON error body"}')
    assert err.value.error_class == BAD_RESPONSE
    decoder = EventStreamDecoder()
    assert decoder.feed(b"oops") == []  # shorter than a prelude: only the end tells
    with pytest.raises(ProviderError) as err:
        decoder.close()
    assert err.value.error_class == BAD_RESPONSE


def test_exception_events_are_classified_and_are_cuts_after_the_first_token() -> None:
    decoder, asm = EventStreamDecoder(), ADAPTER.assembler()
    (payload,) = decoder.feed(bedrock_wire.exception("throttlingException", "Slow down."))
    with pytest.raises(ProviderError) as err:
        asm.feed(payload)
    assert err.value.error_class == RATE_LIMITED and "ThrottlingException" in err.value.message

    async def served(body: bytes) -> list[StreamEvent]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, headers=bedrock_wire.STREAM_HEADERS)

        app = web.Application()
        app.router.add_post("/model/m/converse-stream", handler)
        async with loopback(app) as port:
            _, prep = providers.prepared(Target("bedrock", f"http://127.0.0.1:{port}", "m", "k"))
            return await stream(prep, ask("x"))

    text = bedrock_wire.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "a"}})
    broken = bedrock_wire.exception("modelStreamErrorException", "The model stopped.")
    with pytest.raises(ProviderError) as err:
        asyncio.run(
            served(bedrock_wire.event("messageStart", {"role": "assistant"}) + text + broken)
        )
    assert err.value.error_class == STREAM_CUT and not err.value.retryable
    with pytest.raises(ProviderError) as err:
        asyncio.run(served(broken))
    assert err.value.error_class == SERVER_ERROR and err.value.retryable


def test_eks_pod_identity_credentials_come_through_botocores_default_chain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The container provider (EKS Pod Identity's agent, ECS) served on loopback, for real."""
    token = tmp_path / "eks-pod-identity-token"
    token.write_text("pod-identity-token")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    hits: list[str] = []
    now = datetime.datetime.now(datetime.UTC)

    async def credentials(request: web.Request) -> web.Response:
        hits.append(request.headers.get("Authorization", ""))
        # The first issue expires in 5 minutes, inside botocore's refresh window: refreshed.
        expiry = now + (
            datetime.timedelta(minutes=5) if len(hits) == 1 else datetime.timedelta(hours=1)
        )
        return web.json_response(
            {
                "AccessKeyId": f"ASIAPOD{len(hits)}",
                "SecretAccessKey": SECRET,
                "Token": f"pod-session-{len(hits)}",
                "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )

    async def go(sim_url: str) -> list[ChatResult]:
        app = web.Application()
        app.router.add_get("/v1/credentials", credentials)
        async with loopback(app) as port:
            monkeypatch.setenv(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{port}/v1/credentials"
            )
            monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token))
            prep = prepared(aws_target(sim_url), CredentialSource())  # botocore's own chain
            return [await complete(prep, ask("hello")) for _ in range(3)]

    with SimulatorThread({"api_key": SECRET, "time_scale": 1000}) as sim:
        results = asyncio.run(go(sim.url))
    assert all(r.content.startswith("[anthropic.claude-sonnet-4-5-v1:0] ") for r in results)
    # One fetch by the chain, one refresh (the 5-minute keys), then the hour-long keys serve.
    assert hits == ["pod-identity-token", "pod-identity-token"]


STS_ANSWER = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAIRSA</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>irsa-session</SessionToken>
      <Expiration>{expiry}</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>system:serviceaccount:skyroute:router</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/bedrock-router/skyroute</Arn>
      <AssumedRoleId>AROAEXAMPLE:skyroute</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""


def test_irsa_web_identity_credentials_come_through_botocores_default_chain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """IRSA: the service account's projected token exchanged at STS (served on loopback)."""
    token = tmp_path / "token"
    token.write_text("projected-service-account-jwt")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    calls: list[dict[str, str]] = []
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)

    async def sts(request: web.Request) -> web.Response:
        calls.append(dict(await request.post()))  # type: ignore[arg-type]
        body = STS_ANSWER.format(secret=SECRET, expiry=expiry.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return web.Response(text=body, content_type="text/xml")

    async def go(sim_url: str) -> ChatResult:
        app = web.Application()
        app.router.add_post("/", sts)
        async with loopback(app) as port:
            monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{port}")
            monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bedrock-router")
            monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
            monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "skyroute")
            monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
            prep = prepared(aws_target(sim_url), CredentialSource())  # botocore's own chain
            return await complete(prep, ask("hello"))

    with SimulatorThread({"api_key": SECRET, "time_scale": 1000}) as sim:
        result = asyncio.run(go(sim.url))
    assert result.content.startswith("[anthropic.claude-sonnet-4-5-v1:0] ")
    (call,) = calls
    assert call["Action"] == "AssumeRoleWithWebIdentity"
    assert call["WebIdentityToken"] == "projected-service-account-jwt"
    assert call["RoleArn"] == "arn:aws:iam::123456789012:role/bedrock-router"


def test_a_failed_refresh_keeps_valid_keys_and_fails_auth_once_they_expire() -> None:
    from botocore.exceptions import CredentialRetrievalError

    now = datetime.datetime.now(datetime.UTC)
    state = {"minutes": 12, "fail": False}

    def refresh() -> dict[str, str]:
        if state["fail"]:
            raise CredentialRetrievalError(provider="test", error_msg="STS is unreachable")
        expiry = now + datetime.timedelta(minutes=state["minutes"])
        return {
            "access_key": AKID,
            "secret_key": SECRET,
            "token": "t",
            "expiry_time": expiry.isoformat(),
        }

    creds = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    source = CredentialSource(Chain(creds))
    state["fail"] = True  # 12 minutes left: inside the advisory window, refresh fails

    async def key() -> str:
        return (await source.get()).access_key

    assert asyncio.run(key()) == AKID  # botocore keeps the old keys on an advisory failure
    state.update(minutes=-1, fail=False)
    expired = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    state["fail"] = True
    with pytest.raises(ProviderError) as err:
        asyncio.run(CredentialSource(Chain(expired)).get())
    assert err.value.error_class == AUTH and "STS is unreachable" in err.value.message


def test_endpoints_in_several_regions_are_addressed_and_signed_for_their_own_region() -> None:
    from skyroute.router.table import build_table
    from skyroute.v1 import snapshot_pb2 as pb

    cand = pb.Candidate(
        model="claude",
        provider="bedrock",
        upstream_model="anthropic.claude-sonnet-4-5-v1:0",
        auth="aws",
        region="us-east-1",
        context_window=8192,
        endpoints=[
            pb.CandidateEndpoint(region="eu-west-1"),
            pb.CandidateEndpoint(region="us-west-2"),
        ],
    )
    snap = pb.Snapshot(
        version="v1",
        default_policy="p",
        policies=[pb.Policy(name="p", version="v", default_pool="pool")],
        pools=[pb.Pool(name="pool", candidates=[cand])],
    )
    (model,) = build_table(snap).policies["p"].pools["pool"]
    assert model.endpoints is not None
    sites = [c.target for c in model.endpoints.rotations[0]]
    source = CredentialSource(Chain(Credentials(AKID, SECRET)))
    for target, region in zip(sites, ("eu-west-1", "us-west-2"), strict=True):
        prep = prepared(target, source)
        assert prep.url.startswith(f"https://bedrock-runtime.{region}.amazonaws.com/model/")
        sign = prep.sign
        assert sign is not None

        headers = asyncio.run(_signed(sign, prep.url))
        assert f"/{region}/bedrock/aws4_request" in headers["Authorization"]


async def _signed(sign: Any, url: str) -> dict[str, str]:
    return dict(await sign(url, {}, b"{}"))
