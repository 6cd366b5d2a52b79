"""The Gemini surface, checked with raw aiohttp against the documented REST shapes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from skyroute.simulator.harness import SimulatorThread

TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "update_shipment",
                "description": "Change a shipment",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {"shipment_id": {"type": "STRING"}, "days": {"type": "INTEGER"}},
                    "required": ["shipment_id", "days"],
                },
            }
        ]
    }
]


def post(
    sim: SimulatorThread,
    model: str,
    method: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    async def go() -> tuple[int, dict[str, str], bytes]:
        url = f"{sim.url}/gemini/v1beta/models/{model}:{method}"
        if method == "streamGenerateContent":
            url += "?alt=sse"
        async with (
            aiohttp.ClientSession() as s,
            s.post(url, json=body, headers=headers or {"x-goog-api-key": "g-key"}) as r,
        ):
            return r.status, dict(r.headers), await r.read()

    return asyncio.run(go())


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def sse_chunks(raw: bytes) -> list[dict[str, Any]]:
    assert raw.endswith(b"\r\n\r\n")
    events = [e for e in raw.split(b"\r\n\r\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    return [json.loads(e[6:]) for e in events]


def test_generate_content_shape(sim: SimulatorThread) -> None:
    status, headers, raw = post(
        sim,
        "gemini-3-flash",
        "generateContent",
        {
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [user("pricing?")],
            "generationConfig": {"maxOutputTokens": 500},
        },
    )
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    body = json.loads(raw)
    cand = body["candidates"][0]
    assert cand["content"]["role"] == "model" and cand["finishReason"] == "STOP"
    assert cand["content"]["parts"][0]["text"].startswith("[gemini-3-flash] ")
    usage = body["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert body["modelVersion"] == "gemini-3-flash"


def test_stream_sse_shape(sim: SimulatorThread) -> None:
    body = {"contents": [user("pricing?")]}
    status, headers, raw = post(sim, "gemini-3-flash", "streamGenerateContent", body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    chunks = sse_chunks(raw)
    assert len(chunks) >= 2
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    _, _, whole = post(sim, "gemini-3-flash", "generateContent", body)
    assert text == json.loads(whole)["candidates"][0]["content"]["parts"][0]["text"]
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] >= 1


def test_function_call_and_response(sim: SimulatorThread) -> None:
    contents = [user("delay my shipment")]
    _, _, raw = post(
        sim, "gemini-3-flash", "generateContent", {"contents": contents, "tools": TOOLS}
    )
    part = json.loads(raw)["candidates"][0]["content"]["parts"][0]
    call = part["functionCall"]
    assert call["name"] == "update_shipment"
    assert call["args"] == {"shipment_id": "sim-shipment_id", "days": 1}
    assert "id" not in call  # the Gemini Developer API sends no call ids
    _, _, raw = post(
        sim, "gemini-3-flash", "streamGenerateContent", {"contents": contents, "tools": TOOLS}
    )
    streamed = sse_chunks(raw)
    assert streamed[0]["candidates"][0]["content"]["parts"][0]["functionCall"] == call
    contents += [
        {"role": "model", "parts": [part]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "update_shipment", "response": {"ok": True}}}],
        },
    ]
    status, _, raw = post(
        sim, "gemini-3-flash", "generateContent", {"contents": contents, "tools": TOOLS}
    )
    assert status == 200
    assert "text" in json.loads(raw)["candidates"][0]["content"]["parts"][0]


def test_function_response_out_of_turn_is_rejected(sim: SimulatorThread) -> None:
    contents = [
        user("hi"),
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "update_shipment", "response": {}}}],
        },
    ]
    status, _, raw = post(sim, "gemini-3-flash", "generateContent", {"contents": contents})
    err = json.loads(raw)["error"]
    assert status == 400 and err["status"] == "INVALID_ARGUMENT" and err["code"] == 400
    assert "function response turn" in err["message"]


def test_errors(sim: SimulatorThread) -> None:
    status, _, raw = post(sim, "err-rate_limited", "generateContent", {"contents": [user("x")]})
    err = json.loads(raw)["error"]
    assert status == 429 and err["status"] == "RESOURCE_EXHAUSTED"
    assert err["details"][0]["@type"].endswith("google.rpc.RetryInfo")
    assert err["details"][0]["retryDelay"] == "0.01s"
    status, _, raw = post(
        sim, "err-unavailable", "streamGenerateContent", {"contents": [user("x")]}
    )
    assert status == 503 and json.loads(raw)["error"]["status"] == "UNAVAILABLE"
    status, _, raw = post(sim, "err-auth", "generateContent", {"contents": [user("x")]})
    assert status == 400
    assert json.loads(raw)["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    status, _, raw = post(sim, "tiny-context", "generateContent", {"contents": [user("w" * 80)]})
    assert status == 400 and "exceeds the maximum number of tokens" in raw.decode()
    status, _, raw = post(sim, "err-content_filter", "generateContent", {"contents": [user("x")]})
    body = json.loads(raw)
    assert status == 200 and body["promptFeedback"]["blockReason"] == "SAFETY"
    assert "candidates" not in body
    status, _, _ = post(sim, "m", "generateContent", {"notcontents": []})
    assert status == 400
