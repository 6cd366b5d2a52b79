"""Amazon Bedrock's Converse API, as ``boto3.client("bedrock-runtime")`` expects it (and
InvokeModel with Anthropic's body, as ``anthropic.AnthropicBedrock`` sends it).

Paths (client ``endpoint_url=http://HOST:PORT/bedrock``): ``POST
/bedrock/model/{modelId}/converse`` and ``/converse-stream``. The request is
Converse's (``messages`` of ``text`` / ``image`` / ``toolUse`` /
``toolResult`` blocks, ``system``, ``inferenceConfig``, ``toolConfig``,
``outputConfig.textFormat`` for structured output) and is checked as Bedrock
checks it, with its wording: the conversation starts with a user turn and
alternates, no text block is blank, every ``toolUse`` is answered by a
``toolResult`` with its id in the next turn and no ``toolResult`` answers
nothing, and tool blocks need a ``toolConfig``.

A streamed answer is the AWS binary event stream
(``application/vnd.amazon.eventstream``: :func:`frame` writes the prelude,
typed headers, payload and both CRC32s, as botocore's parser checks them) with
Converse's events: ``messageStart``, ``contentBlockStart`` (for a tool call),
``contentBlockDelta`` (``text``, or ``toolUse.input`` pieces), ``contentBlockStop``,
``messageStop`` with ``stopReason``, then ``metadata`` with usage; each event
carries Bedrock's ``p`` padding field, which clients ignore.

Errors are AWS's: the name in ``x-amzn-errortype`` (``ThrottlingException:...``)
and ``{"message"}`` as the body, with Bedrock's statuses (429 throttling, 503
service unavailable, 400 validation, 403 access denied). One liberty: a 429
carries Retry-After (Bedrock sends none), so tests can see it honoured. A
content-filter outcome is what a guardrail does: a 200 with ``stopReason:
guardrail_intervened``.

Authentication (:func:`authenticate`): a Bedrock API key as a bearer token, or
SigV4, which is verified with botocore against the scenario's ``api_key``
used as the secret access key (any access key id), so a wrong secret, a
tampered body or a stale ``X-Amz-Date`` is refused like AWS refuses them.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import re
import struct
import zlib
from typing import Any

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from skyroute.families import Family
from skyroute.simulator.answers import Answer, new_id
from skyroute.simulator.anthropic_wire import AnthropicWire
from skyroute.simulator.wire import (
    ErrorContext,
    Rendered,
    SimRequest,
    StreamFrames,
    WireError,
    bearer,
    piece_tokens,
    retry_after_header,
)

EVENTSTREAM = "application/vnd.amazon.eventstream"
STREAM_HEADERS = {"Content-Type": EVENTSTREAM}
#: Where :func:`authenticate` leaves the key it accepted, for :meth:`BedrockWire.api_key`.
KEY = web.RequestKey("skyroute.simulator.bedrock.key", str)
_JSON = {"Content-Type": "application/json"}
_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$"
)
_SKEW_S = 300  # AWS refuses a signature whose date is more than 5 minutes off
_ERRORS: dict[str, tuple[int, str, str]] = {
    "server_error": (
        500,
        "InternalServerException",
        "The system encountered an unexpected error during processing. Try your request again.",
    ),
    "unavailable": (
        503,
        "ServiceUnavailableException",
        "Bedrock is unable to process your request.",
    ),
    "overloaded": (
        503,
        "ServiceUnavailableException",
        "Too many connections, please wait before trying again.",
    ),
    "bad_request": (
        400,
        "ValidationException",
        "Malformed input request: #/temperature: 1.5 is not less or equal to 1.0, please "
        "reformat your input and try again.",
    ),
    "context_length": (400, "ValidationException", "Input is too long for requested model."),
    "auth": (
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    "not_found": (404, "ResourceNotFoundException", "Model not found."),
}
_INVALID = {
    401: (
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
    403: (403, "AccessDeniedException", "Access denied."),
    404: (404, "ResourceNotFoundException", "The requested resource could not be found."),
}


def aws_error(
    status: int, name: str, message: str, headers: dict[str, str] | None = None
) -> Rendered:
    """An error as AWS's REST-JSON services send it."""
    return Rendered(
        status,
        {
            **_JSON,
            "x-amzn-errortype": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-RequestId": new_id(""),
            **(headers or {}),
        },
        orjson.dumps({"message": message}),
    )


# -- the binary event stream ----------------------------------------------------


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude + CRC, string headers, payload, message CRC."""
    encoded = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        encoded += struct.pack("!B", len(n)) + n + b"\x07" + struct.pack("!H", len(v)) + v
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    head = prelude + struct.pack("!I", zlib.crc32(prelude)) + encoded + payload
    return head + struct.pack("!I", zlib.crc32(head))


def event(name: str, body: dict[str, Any]) -> bytes:
    """One Converse stream event (with Bedrock's ``p`` padding)."""
    body["p"] = _PAD[: 1 + len(name) % len(_PAD)]
    return frame(
        {":event-type": name, ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps(body),
    )


def exception(name: str, message: str) -> bytes:
    """An exception inside a stream (``throttlingException``...)."""
    return frame(
        {
            ":exception-type": name,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        orjson.dumps({"message": message}),
    )


# -- SigV4 ------------------------------------------------------------------------


def authenticate(request: web.Request, body: bytes, secret: str | None) -> str | None:
    """The key this request proves it holds: a bearer key, or ``secret`` if its SigV4 is right."""
    token = bearer(request)
    if token is not None:
        return token
    if secret is None:
        return None
    url = f"{request.scheme}://{request.host}{request.raw_path}"
    return secret if verify_sigv4(request.method, url, request.headers, body, secret) else None


def verify_sigv4(
    method: str,
    url: str,
    headers: Any,
    body: bytes,
    secret: str,
    now: datetime.datetime | None = None,
) -> bool:
    """Whether ``Authorization`` is a valid SigV4 signature of this request under ``secret``."""
    match = _SIGV4.match(str(headers.get("Authorization", "")))
    amz_date = str(headers.get("X-Amz-Date", ""))
    if match is None or not amz_date.startswith(match.group(2)):
        return False
    access_key, _, region, service, signed, signature = match.groups()
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return False
    now = now or datetime.datetime.now(datetime.UTC)
    if abs((now - when).total_seconds()) > _SKEW_S:
        return False
    names = signed.split(";")
    if "host" not in names or any(headers.get(n) is None for n in names):
        return False
    request = AWSRequest(method=method, url=url, data=body, headers={n: headers[n] for n in names})
    request.context["timestamp"] = amz_date
    token = headers.get("X-Amz-Security-Token")
    signer = SigV4Auth(Credentials(access_key, secret, token), service, region)
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    return hmac.compare_digest(str(expected), signature)


# -- Converse ---------------------------------------------------------------------


def _blocks_text(blocks: list[Any]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if "text" in block:
            out.append(str(block["text"]))
        elif "toolUse" in block:
            out.append(orjson.dumps(block["toolUse"].get("input", {})).decode())
        elif "toolResult" in block:
            for part in block["toolResult"].get("content") or ():
                if isinstance(part, dict) and "text" in part:
                    out.append(str(part["text"]))
                elif isinstance(part, dict) and "json" in part:
                    out.append(orjson.dumps(part["json"]).decode())
    return out


def _check_messages(messages: Any) -> tuple[list[str], bool, bool]:
    """Bedrock's conversation checks; (texts, last turn asks, any tool block)."""
    if not isinstance(messages, list) or not messages:
        raise WireError(
            "A conversation must start with a user message. Try again with a "
            "conversation that starts with a user message."
        )
    texts: list[str] = []
    expected: list[str] = []
    any_tool = False
    asks = False
    previous = None
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ("user", "assistant"):
            raise WireError(
                f"1 validation error detected: Value at 'messages.{i + 1}.member.role' "
                "failed to satisfy constraint: Member must satisfy enum value set: "
                "[user, assistant]"
            )
        if i == 0 and role != "user":
            raise WireError(
                "A conversation must start with a user message. Try again with a "
                "conversation that starts with a user message."
            )
        if role == previous:
            raise WireError(
                "A conversation must alternate between user and assistant roles. "
                "Make sure the conversation alternates between user and assistant "
                "roles and try again."
            )
        previous = role
        content = msg.get("content")
        if not isinstance(content, list) or not content:
            raise WireError(
                f"The content field in the Message object at messages.{i} is empty. "
                "Add a ContentBlock object to the content field and try again."
            )
        used: list[str] = []
        answered: list[str] = []
        for j, block in enumerate(content):
            if not isinstance(block, dict) or len(block) != 1:
                raise WireError(
                    f"messages.{i}.content.{j}: a ContentBlock holds exactly one member"
                )
            if "text" in block and not str(block["text"]).strip():
                raise WireError(
                    f"The text field in the ContentBlock object at messages.{i}."
                    f"content.{j} is blank. Add text to the text field, and try again."
                )
            use = block.get("toolUse")
            if use is not None:
                any_tool = True
                if role != "assistant" or not isinstance(use, dict) or not use.get("toolUseId"):
                    raise WireError(f"messages.{i}.content.{j}: invalid toolUse block")
                if not isinstance(use.get("input"), dict):
                    raise WireError(f"messages.{i}.content.{j}.toolUse.input: must be an object")
                used.append(str(use["toolUseId"]))
            result = block.get("toolResult")
            if result is not None:
                any_tool = True
                tid = result.get("toolUseId") if isinstance(result, dict) else None
                if role != "user" or tid not in expected:
                    raise WireError(
                        f"The toolResult blocks at messages.{i}.content contain "
                        "toolUseId values that don't match any toolUse blocks from "
                        "the previous turn."
                    )
                answered.append(str(tid))
        missing = [t for t in expected if t not in answered]
        if missing:
            raise WireError(
                f"Expected toolResult blocks at messages.{i}.content for the "
                f"following Ids: {', '.join(missing)}"
            )
        expected = used
        texts.extend(_blocks_text(content))
        asks = role == "user" and not answered
    if expected:
        raise WireError(
            f"Expected toolResult blocks after messages.{len(messages) - 1} for the "
            f"following Ids: {', '.join(expected)}"
        )
    return texts, asks, any_tool


def _pick_tool(config: Any) -> tuple[str, Any]:
    tools = config.get("tools") if isinstance(config, dict) else None
    if not isinstance(tools, list) or not tools:
        raise WireError("toolConfig.tools: must hold at least one tool")
    by_name: dict[str, Any] = {}
    for i, tool in enumerate(tools):
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        schema = (spec or {}).get("inputSchema") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise WireError(f"toolConfig.tools.{i}.toolSpec.name: required")
        if not isinstance(schema, dict) or not isinstance(schema.get("json"), dict):
            raise WireError(f"toolConfig.tools.{i}.toolSpec.inputSchema.json: required")
        by_name.setdefault(spec["name"], schema["json"])
    choice = config.get("toolChoice") or {}
    if isinstance(choice, dict) and isinstance(choice.get("tool"), dict):
        name = choice["tool"].get("name")
        if name not in by_name:
            raise WireError(f"toolConfig.toolChoice.tool.name: no tool named {name!r}")
        return str(name), by_name[name]
    name = next(iter(by_name))
    return name, by_name[name]


def _output_schema(config: Any) -> dict[str, Any] | None:
    fmt = config.get("textFormat") if isinstance(config, dict) else None
    if fmt is None:
        return None
    try:
        text = fmt["structure"]["jsonSchema"]["schema"]
        schema = orjson.loads(text)
    except (KeyError, TypeError, orjson.JSONDecodeError):
        raise WireError(
            "outputConfig.textFormat.structure.jsonSchema.schema: must be a JSON "
            "schema, as a string"
        ) from None
    if fmt.get("type") != "json_schema" or not isinstance(schema, dict):
        raise WireError("outputConfig.textFormat: type must be json_schema with an object schema")
    return schema


def _usage(answer: Answer) -> dict[str, int]:
    return {
        "inputTokens": answer.prompt_tokens,
        "outputTokens": answer.completion_tokens,
        "totalTokens": answer.prompt_tokens + answer.completion_tokens,
    }


class BedrockWire:
    name: Family = "bedrock"

    def api_key(self, request: web.Request) -> str | None:
        return request.get(KEY) or bearer(request)

    def check_headers(self, request: web.Request) -> None:
        return None

    def parse(self, body: Any, path_model: str | None, stream_path: bool) -> SimRequest:
        if not isinstance(body, dict):
            raise WireError("The request body must be a JSON object.")
        texts, asks, any_tool = _check_messages(body.get("messages"))
        for i, block in enumerate(body.get("system") or ()):
            if not isinstance(block, dict) or not str(block.get("text", "")).strip():
                raise WireError(f"system.{i}: a SystemContentBlock needs non-blank text")
            texts.insert(i, str(block["text"]))
        config = body.get("inferenceConfig") or {}
        if not isinstance(config, dict):
            raise WireError("inferenceConfig: must be an object")
        max_tokens = config.get("maxTokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise WireError("inferenceConfig.maxTokens: must be a positive integer")
        tool_config = body.get("toolConfig")
        if any_tool and tool_config is None:
            raise WireError(
                "The toolConfig field must be defined when using toolUse and "
                "toolResult content blocks."
            )
        tool_name, schema = None, None
        if tool_config is not None:
            picked = _pick_tool(tool_config)
            if asks:
                tool_name, schema = picked
        prompt_text = "\n".join(t for t in texts if t)
        return SimRequest(
            model=path_model or "",
            stream=stream_path,
            max_tokens=max_tokens,
            prompt_chars=len(prompt_text),
            prompt_text=prompt_text,
            tool_name=tool_name,
            tool_schema=schema,
            json_schema=_output_schema(body.get("outputConfig")),
        )

    def render(self, req: SimRequest, answer: Answer) -> bytes:
        if answer.is_tool:
            content: list[dict[str, Any]] = [
                {
                    "toolUse": {
                        "toolUseId": new_id("tooluse_"),
                        "name": answer.tool_name,
                        "input": answer.tool_args,
                    }
                }
            ]
            stop = "tool_use"
        else:
            content = [{"text": answer.text}]
            stop = "max_tokens" if answer.truncated else "end_turn"
        return orjson.dumps(
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": _usage(answer),
                "metrics": {"latencyMs": 1},
            }
        )

    def stream(self, req: SimRequest, answer: Answer, chunk_tokens: int) -> StreamFrames:
        head = event("messageStart", {"role": "assistant"})
        pieces: list[bytes] = []
        if answer.is_tool:
            start = {"toolUse": {"toolUseId": new_id("tooluse_"), "name": answer.tool_name}}
            pieces.append(event("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
            for piece in answer.arg_pieces():
                delta = {"toolUse": {"input": piece}}
                pieces.append(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}))
            share = max(1, answer.completion_tokens // len(pieces))
            tokens = [share] * len(pieces)
            stop = "tool_use"
        else:
            for piece in answer.pieces:
                pieces.append(
                    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
                )
            tokens = piece_tokens(answer.completion_tokens, len(pieces), chunk_tokens)
            stop = "max_tokens" if answer.truncated else "end_turn"
        tail = event("contentBlockStop", {"contentBlockIndex": 0})
        tail += event("messageStop", {"stopReason": stop})
        tail += event("metadata", {"usage": _usage(answer), "metrics": {"latencyMs": 1}})
        return StreamFrames(head, pieces, tail, tokens, headers=STREAM_HEADERS)

    def error(self, kind: str, ctx: ErrorContext) -> Rendered:
        if kind in _ERRORS:
            return aws_error(*_ERRORS[kind])
        if kind == "rate_limited":
            return aws_error(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
                retry_after_header(ctx.retry_after_s),
            )
        if kind == "content_filter":
            usage = {
                "inputTokens": ctx.prompt_tokens,
                "outputTokens": 0,
                "totalTokens": ctx.prompt_tokens,
            }
            if ctx.stream:
                body = (
                    event("messageStart", {"role": "assistant"})
                    + event("messageStop", {"stopReason": "guardrail_intervened"})
                    + event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}})
                )
                return Rendered(200, dict(STREAM_HEADERS), body)
            message = {
                "role": "assistant",
                "content": [{"text": "Sorry, the model cannot answer this question."}],
            }
            return Rendered(
                200,
                dict(_JSON),
                orjson.dumps(
                    {
                        "output": {"message": message},
                        "stopReason": "guardrail_intervened",
                        "usage": usage,
                        "metrics": {"latencyMs": 1},
                    }
                ),
            )
        if kind == "bad_response":
            if ctx.stream:
                broken = frame(
                    {
                        ":event-type": "messageStart",
                        ":content-type": "application/json",
                        ":message-type": "event",
                    },
                    b"{broken",
                )
                return Rendered(200, dict(STREAM_HEADERS), broken)
            return Rendered(200, dict(_JSON), b'{"output": {"message": {"content": [')
        return aws_error(*_ERRORS["server_error"])

    def invalid(self, message: str, status: int = 400) -> Rendered:
        if status in _INVALID:
            code, name, text = _INVALID[status]
            return aws_error(code, name, text if status == 401 else message)
        return aws_error(status, "ValidationException", message)


# -- InvokeModel with Anthropic's body (anthropic.AnthropicBedrock) -------------------

#: The ``anthropic_version`` an Anthropic InvokeModel body must carry: Bedrock's own
#: ``bedrock-2023-05-31``, or a dated API version (newer ``anthropic`` SDKs send theirs).
_ANTHROPIC_VERSION = re.compile(r"(bedrock-)?\d{4}-\d{2}-\d{2}")


def _chunks(sse_bytes: bytes) -> bytes:
    """SSE events as InvokeModelWithResponseStream ``chunk`` events (base64 JSON in ``bytes``)."""
    out = b""
    for block in sse_bytes.split(b"\n\n"):
        data = b"\n".join(
            line[6:] if line.startswith(b"data: ") else line[5:]
            for line in block.split(b"\n")
            if line.startswith(b"data:")
        )
        if data:
            out += frame(
                {
                    ":event-type": "chunk",
                    ":content-type": "application/json",
                    ":message-type": "event",
                },
                orjson.dumps({"bytes": base64.b64encode(data).decode()}),
            )
    return out


class BedrockInvokeWire(BedrockWire):
    """``POST /bedrock/model/{id}/invoke`` and ``/invoke-with-response-stream`` (Anthropic).

    The body is Anthropic's Messages request without ``model`` (it is in the path) and with
    ``anthropic_version`` (``bedrock-2023-05-31``); the answer is Anthropic's Messages JSON, and
    a stream is Anthropic's events, each one base64-encoded in a ``chunk`` event of AWS's
    event stream. Authentication and HTTP errors are Bedrock's.
    """

    def __init__(self) -> None:
        self.anthropic = AnthropicWire()

    def parse(self, body: Any, path_model: str | None, stream_path: bool) -> SimRequest:
        if not isinstance(body, dict):
            raise WireError("The request body must be a JSON object.")
        if not _ANTHROPIC_VERSION.fullmatch(str(body.get("anthropic_version", ""))):
            raise WireError("anthropic_version: required, e.g. 'bedrock-2023-05-31'")
        if "model" in body or "stream" in body:
            raise WireError(
                "Malformed input request: extraneous key [model or stream] is not "
                "permitted, please reformat your input and try again."
            )
        req = self.anthropic.parse({**body, "model": path_model}, path_model, stream_path)
        req.stream = stream_path
        return req

    def render(self, req: SimRequest, answer: Answer) -> bytes:
        return self.anthropic.render(req, answer)

    def stream(self, req: SimRequest, answer: Answer, chunk_tokens: int) -> StreamFrames:
        sse = self.anthropic.stream(req, answer, chunk_tokens)
        return StreamFrames(
            _chunks(sse.head),
            [_chunks(p) for p in sse.pieces],
            _chunks(sse.tail),
            sse.piece_tokens,
            headers=STREAM_HEADERS,
        )

    def error(self, kind: str, ctx: ErrorContext) -> Rendered:
        if kind not in ("content_filter", "bad_response"):
            return super().error(kind, ctx)
        rendered = self.anthropic.error(kind, ctx)  # a 200 refusal or a broken body
        if ctx.stream:
            return Rendered(200, dict(STREAM_HEADERS), _chunks(rendered.body))
        return rendered
