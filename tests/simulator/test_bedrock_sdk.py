"""The official ``boto3`` ``bedrock-runtime`` client against the simulator's Bedrock surface.

``converse`` and ``converse_stream`` exactly as an AWS user calls them: boto3
signs with SigV4 (the simulator verifies the signature with the scenario's
key as the secret access key), serialises Converse's JSON and parses the AWS
binary event stream with botocore's own parser, so a framing, CRC, event-name
or error-shape mistake in the simulator fails here.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from skyroute.simulator.harness import SimulatorThread

SECRET = "bedrock-test-secret"
SCENARIO = {
    "seed": 7,
    "time_scale": 100.0,
    "api_key": SECRET,
    "defaults": {"error_rate": 0.0, "ttft_ms": {"p50": 100, "p95": 200}},
    "models": {
        "err-rate_limited": {"error_rate": 1.0, "errors": {"rate_limited": 1}},
        "err-bad_request": {"error_rate": 1.0, "errors": {"bad_request": 1}},
        "err-content_filter": {"error_rate": 1.0, "errors": {"content_filter": 1}},
    },
}
MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
TOOL = {
    "toolSpec": {
        "name": "update_shipment",
        "description": "Change a shipment",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {"shipment_id": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["shipment_id", "days"],
            }
        },
    }
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SCENARIO) as s:
        yield s


def client(sim: SimulatorThread, secret: str = SECRET, token: str | None = None) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=sim.url + "/bedrock",
        region_name="eu-west-1",
        aws_access_key_id="AKIDSIMTEST",
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=10),
    )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}


def test_converse(sim: SimulatorThread) -> None:
    out = client(sim).converse(
        modelId=MODEL,
        system=[{"text": "Be brief."}],
        messages=[user("what is your refund policy?")],
        inferenceConfig={"maxTokens": 3, "temperature": 0.2},
    )
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    (block,) = out["output"]["message"]["content"]
    assert block["text"].startswith(f"[{MODEL}] ")
    assert out["stopReason"] == "max_tokens"
    assert out["usage"]["outputTokens"] == 3
    assert out["usage"]["totalTokens"] == out["usage"]["inputTokens"] + 3


def test_converse_stream_events(sim: SimulatorThread) -> None:
    out = client(sim, token="session-token").converse_stream(
        modelId=MODEL, messages=[user("what is your refund policy?")]
    )
    events = list(out["stream"])
    names = [next(iter(e)) for e in events]
    assert names[0] == "messageStart" and names[-3:] == [
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert set(names[1:-3]) == {"contentBlockDelta"}
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:-3])
    assert text.startswith(f"[{MODEL}] ")
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"]["outputTokens"] >= 1


def test_tool_use_round_trip_streamed_then_unary(sim: SimulatorThread) -> None:
    bedrock = client(sim)
    config = {"tools": [TOOL], "toolChoice": {"tool": {"name": "update_shipment"}}}
    events = list(
        bedrock.converse_stream(
            modelId=MODEL, messages=[user("delay S1 by 2 days")], toolConfig=config
        )["stream"]
    )
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    use = start["start"]["toolUse"]
    pieces = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "contentBlockDelta" in e
    ]
    assert use["name"] == "update_shipment" and '"days":1' in "".join(pieces)
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"
    history = [
        user("delay S1 by 2 days"),
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"], "input": {}}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"json": {"ok": True}}]}}
            ],
        },
    ]
    out = bedrock.converse(modelId="m2", messages=history, toolConfig={"tools": [TOOL]})
    assert out["stopReason"] == "end_turn"
    assert out["output"]["message"]["content"][0]["text"].startswith("[m2] ")
    # Bedrock's checks: a toolResult answering nothing, and tool blocks without toolConfig.
    wrong = [
        *history[:2],
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "other", "content": [{"text": "x"}]}}],
        },
    ]
    with pytest.raises(ClientError) as err:
        bedrock.converse(modelId="m2", messages=wrong, toolConfig={"tools": [TOOL]})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "don't match any toolUse" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        bedrock.converse(modelId="m2", messages=history)
    assert "toolConfig field must be defined" in err.value.response["Error"]["Message"]


def test_errors_in_bedrock_shape(sim: SimulatorThread) -> None:
    bedrock = client(sim)
    with pytest.raises(ClientError) as err:
        bedrock.converse(modelId="err-rate_limited", messages=[user("x")])
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    with pytest.raises(ClientError) as err:
        bedrock.converse_stream(modelId="err-bad_request", messages=[user("x")])
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        bedrock.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": " "}]}])
    assert "is blank" in err.value.response["Error"]["Message"]
    out = bedrock.converse(modelId="err-content_filter", messages=[user("x")])
    assert out["stopReason"] == "guardrail_intervened"


def test_a_wrong_secret_or_no_signature_is_refused(sim: SimulatorThread) -> None:
    with pytest.raises(ClientError) as err:
        client(sim, secret="not-the-secret").converse(modelId=MODEL, messages=[user("x")])
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises((ClientError, EventStreamError)) as stream_err:
        list(
            client(sim, secret="not-the-secret").converse_stream(
                modelId=MODEL, messages=[user("x")]
            )["stream"]
        )
    assert "UnrecognizedClientException" in str(stream_err.value)


def anthropic_bedrock(sim: SimulatorThread, secret: str = SECRET) -> anthropic.AnthropicBedrock:
    return anthropic.AnthropicBedrock(
        aws_access_key="AKIDSIMTEST",
        aws_secret_key=secret,
        aws_region="us-west-2",
        base_url=sim.url + "/bedrock",
        max_retries=0,
        timeout=10,
    )


def test_anthropic_bedrock_invoke_model(sim: SimulatorThread) -> None:
    client = anthropic_bedrock(sim)
    message = client.messages.create(
        model=MODEL,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "what is your refund policy?"}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith(f"[{MODEL}] ")
    assert message.usage.output_tokens >= 1
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "what is your refund policy?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith(f"[{MODEL}] ") and final.stop_reason in ("end_turn", "max_tokens")
    tool = {
        "name": "update_shipment",
        "input_schema": TOOL["toolSpec"]["inputSchema"]["json"],  # type: ignore[index]
    }
    called = client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[tool],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "delay S1"}],
    )
    assert called.stop_reason == "tool_use" and called.content[0].type == "tool_use"


def test_anthropic_bedrock_errors(sim: SimulatorThread) -> None:
    with pytest.raises(anthropic.APIStatusError) as err:
        anthropic_bedrock(sim, secret="wrong").messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.status_code == 403
    with pytest.raises(anthropic.RateLimitError):
        anthropic_bedrock(sim).messages.create(
            model="err-rate_limited", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )


def test_invoke_model_body_checks_and_bearer_keys(sim: SimulatorThread) -> None:
    def post(body: dict[str, Any], key: str = SECRET) -> tuple[int, str, Any]:
        req = urllib.request.Request(
            sim.url + "/bedrock/model/m/invoke",
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, "", json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("x-amzn-errortype", ""), json.loads(exc.read())

    ok = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8, "messages": [user_text()]}
    status, _, answer = post(ok)
    assert status == 200 and answer["content"][0]["text"].startswith("[m] ")
    status, kind, _ = post({**ok, "anthropic_version": None})
    assert (status, kind.split(":")[0]) == (400, "ValidationException")
    status, kind, _ = post({**ok, "model": "m"})
    assert status == 400 and kind.startswith("ValidationException")
    status, kind, body = post(ok, key="wrong")
    assert (status, kind.split(":")[0]) == (403, "UnrecognizedClientException")
    assert body == {"message": "The security token included in the request is invalid."}


def user_text() -> dict[str, str]:
    return {"role": "user", "content": "hello"}
