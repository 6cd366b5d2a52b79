"""Gemini generateContent / streamGenerateContent, as the REST API documents them.

The model is in the path (``models/{model}:generateContent``), the request
has ``contents`` (roles ``user`` and ``model``, each with ``parts``),
``systemInstruction``, ``tools[].functionDeclarations``, ``toolConfig`` and
``generationConfig``; both the camelCase and the snake_case spellings of
these fields are accepted, as the real API accepts both. Tool calls are
``functionCall`` parts carrying ``name`` and ``args`` but no id (the Gemini
Developer API does not populate one), so an adapter must mint its own ids
and answer with ``functionResponse`` parts by name; a function-response turn
that does not directly follow a function-call turn with as many calls is
rejected with the real API's wording.

A streamed answer (``?alt=sse``) is ``data:`` lines, CRLF-framed as Google
frames them, each holding a full ``GenerateContentResponse``; there is no
``[DONE]`` sentinel: the last chunk carries ``finishReason`` and
``usageMetadata``. Errors are ``{"error": {"code", "message", "status"}}``
with google.rpc statuses (``RESOURCE_EXHAUSTED`` with a ``RetryInfo``
detail, ``UNAVAILABLE``, ``INVALID_ARGUMENT``...); a bad key is a 400 with
``API_KEY_INVALID``, as the real API answers; a blocked prompt is a 200 with
``promptFeedback.blockReason``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from skyroute.families import Family
from skyroute.simulator.answers import Answer, new_id
from skyroute.simulator.wire import (
    ErrorContext,
    Rendered,
    SimRequest,
    StreamFrames,
    WireError,
    piece_tokens,
    stop_list,
)

_JSON = {"Content-Type": "application/json; charset=UTF-8"}
_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    529: "UNAVAILABLE",
}
_ERRORS: dict[str, tuple[int, str]] = {
    "server_error": (
        500,
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    "unavailable": (503, "The model is overloaded. Please try again later."),
    "overloaded": (529, "The model is overloaded. Please try again later."),
    "bad_request": (400, "Request contains an invalid argument."),
    "not_found": (
        404,
        "models/unknown is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models.",
    ),
}


def _get(d: dict[str, Any], camel: str, snake: str) -> Any:
    value = d.get(camel)
    return d.get(snake) if value is None else value


def google_error(code: int, message: str, details: list[dict[str, Any]] | None = None) -> Rendered:
    """An error in Google APIs' shape: ``{"error": {"code", "message", "status", "details"}}``."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": _STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return Rendered(code, dict(_JSON), orjson.dumps({"error": error}))


def _seed(generation: dict[str, Any]) -> int | None:
    seed = generation.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise WireError("* GenerateContentRequest.generation_config.seed: must be an integer")
    return seed


def _json_schema(generation: Any) -> dict[str, Any] | None:
    """JSON mode (responseMimeType application/json): the schema asked for, {} for any."""
    if _get(generation, "responseMimeType", "response_mime_type") != "application/json":
        return None
    schema = _get(generation, "responseJsonSchema", "response_json_schema") or _get(
        generation, "responseSchema", "response_schema"
    )
    return schema if isinstance(schema, dict) else {}


class GeminiWire:
    name: Family = "gemini"

    def api_key(self, request: web.Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key")

    def check_headers(self, request: web.Request) -> None:
        return None

    def parse(self, body: Any, path_model: str | None, stream_path: bool) -> SimRequest:
        if not isinstance(body, dict):
            raise WireError("Invalid JSON payload received. Expected an object.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise WireError("* GenerateContentRequest.contents: contents is not specified")
        texts = [_parts_text(_get(body, "systemInstruction", "system_instruction"))]
        prev_calls: list[str] = []
        last_user_turn = False
        for i, content in enumerate(contents):
            if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
                raise WireError(
                    f"* GenerateContentRequest.contents[{i}].parts: contents.parts "
                    "must not be empty."
                )
            role = content.get("role", "user")
            if role not in ("user", "model", "function"):
                raise WireError("Please use a valid role: user, model.")
            calls: list[str] = []
            responses: list[str] = []
            for part in content["parts"]:
                if not isinstance(part, dict):
                    raise WireError(f"* GenerateContentRequest.contents[{i}].parts: invalid part")
                text = part.get("text")
                if isinstance(text, str):
                    texts.append(text)
                call = _get(part, "functionCall", "function_call")
                if isinstance(call, dict):
                    calls.append(str(call.get("name")))
                    texts.append(orjson.dumps(call.get("args", {})).decode())
                reply = _get(part, "functionResponse", "function_response")
                if isinstance(reply, dict):
                    responses.append(str(reply.get("name")))
                    texts.append(orjson.dumps(reply.get("response", {})).decode())
            if responses:
                if not prev_calls:
                    raise WireError(
                        "Please ensure that function response turn comes immediately "
                        "after a function call turn."
                    )
                if sorted(responses) != sorted(prev_calls):
                    raise WireError(
                        "Please ensure that the number of function response parts is "
                        "equal to the number of function call parts of the function "
                        f"call turn (calls {prev_calls}, responses {responses})."
                    )
            prev_calls = calls
            last_user_turn = role == "user" and not responses
        prompt_text = "\n".join(t for t in texts if t)
        generation = _get(body, "generationConfig", "generation_config") or {}
        max_tokens = _get(generation, "maxOutputTokens", "max_output_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise WireError(
                "* GenerateContentRequest.generation_config.max_output_tokens: "
                "must be a positive integer"
            )
        tool_name, schema = None, None
        if last_user_turn:
            tool_name, schema = _pick_tool(body)
        return SimRequest(
            model=path_model or "",
            stream=stream_path,
            max_tokens=max_tokens,
            prompt_chars=len(prompt_text),
            prompt_text=prompt_text,
            tool_name=tool_name,
            tool_schema=schema,
            json_schema=_json_schema(generation),
            stop=stop_list(_get(generation, "stopSequences", "stop_sequences"), "stopSequences", 5),
            seed=_seed(generation),
        )

    def render(self, req: SimRequest, answer: Answer) -> bytes:
        if answer.is_tool:
            parts: list[dict[str, Any]] = [
                {"functionCall": {"name": answer.tool_name, "args": answer.tool_args}}
            ]
            finish = "STOP"
        else:
            parts = [{"text": answer.text}]
            finish = "MAX_TOKENS" if answer.truncated else "STOP"
        return orjson.dumps(
            {
                "candidates": [
                    {
                        "content": {"parts": parts, "role": "model"},
                        "finishReason": finish,
                        "index": 0,
                    }
                ],
                "usageMetadata": _usage(answer.prompt_tokens, answer.completion_tokens),
                "modelVersion": req.model,
                "responseId": new_id(""),
            }
        )

    def stream(self, req: SimRequest, answer: Answer, chunk_tokens: int) -> StreamFrames:
        response_id = new_id("")
        suffix = (
            b'"usageMetadata":'
            + orjson.dumps(_usage(answer.prompt_tokens, 0))
            + b',"modelVersion":'
            + orjson.dumps(req.model)
            + b',"responseId":"'
            + response_id.encode()
            + b'"}\r\n\r\n'
        )
        if answer.is_tool:
            part = {"functionCall": {"name": answer.tool_name, "args": answer.tool_args}}
            pieces = [_chunk([part], None, suffix)]
            tokens = [answer.completion_tokens]
        else:
            pieces = [_chunk([{"text": p}], None, suffix) for p in answer.pieces]
            tokens = piece_tokens(answer.completion_tokens, len(pieces), chunk_tokens)
        finish = "MAX_TOKENS" if answer.truncated else "STOP"
        final_suffix = (
            b'"usageMetadata":'
            + orjson.dumps(_usage(answer.prompt_tokens, answer.completion_tokens))
            + suffix[suffix.index(b',"modelVersion"') :]
        )
        tail = _chunk([{"text": ""}], finish, final_suffix)
        return StreamFrames(b"", pieces, tail, tokens)

    def error(self, kind: str, ctx: ErrorContext) -> Rendered:
        if kind in _ERRORS:
            return google_error(*_ERRORS[kind])
        if kind == "rate_limited":
            delay = f"{ctx.retry_after_s:.3f}".rstrip("0").rstrip(".") + "s"
            return google_error(
                429,
                "Resource has been exhausted (e.g. check quota).",
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}],
            )
        if kind == "context_length":
            return google_error(
                400,
                f"The input token count ({ctx.prompt_tokens}) exceeds the maximum "
                f"number of tokens allowed ({ctx.context_window}).",
            )
        if kind == "auth":
            return _api_key_invalid()
        if kind == "content_filter":
            body = orjson.dumps(
                {
                    "promptFeedback": {
                        "blockReason": "SAFETY",
                        "safetyRatings": [
                            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
                        ],
                    },
                    "usageMetadata": _usage(ctx.prompt_tokens, 0),
                    "modelVersion": ctx.model,
                }
            )
            if ctx.stream:
                return Rendered(200, dict(_SSE), b"data: " + body + b"\r\n\r\n")
            return Rendered(200, dict(_JSON), body)
        if kind == "bad_response":
            if ctx.stream:
                return Rendered(200, dict(_SSE), b'data: {"candidates": [\r\n\r\n')
            return Rendered(200, dict(_JSON), b'{"candidates": [{"content": ')
        return google_error(500, _ERRORS["server_error"][1])

    def invalid(self, message: str, status: int = 400) -> Rendered:
        if status == 401:
            return _api_key_invalid()
        if status == 403:
            return google_error(
                403,
                "Method doesn't allow unregistered callers (callers without "
                "established identity). Please use API Key or other form of API "
                "consumer identity to call this API.",
            )
        return google_error(status, message)


def _api_key_invalid() -> Rendered:
    return google_error(
        400,
        "API key not valid. Please pass a valid API key.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ],
    )


def _chunk(parts: list[dict[str, Any]], finish: str | None, suffix: bytes) -> bytes:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return b'data: {"candidates":[' + orjson.dumps(candidate) + b"]," + suffix


def _usage(prompt_tokens: int, output_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }
    if output_tokens:
        usage["candidatesTokenCount"] = output_tokens
    return usage


def _parts_text(content: Any) -> str:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return ""
    return "\n".join(
        p["text"]
        for p in content["parts"]
        if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


def _pick_tool(body: dict[str, Any]) -> tuple[str | None, Any]:
    config = _get(body, "toolConfig", "tool_config") or {}
    calling = _get(config, "functionCallingConfig", "function_calling_config") or {}
    if str(calling.get("mode", "AUTO")).upper() == "NONE":
        return None, None
    allowed = _get(calling, "allowedFunctionNames", "allowed_function_names") or []
    declarations: list[dict[str, Any]] = []
    for i, tool in enumerate(body.get("tools") or []):
        decls = _get(tool, "functionDeclarations", "function_declarations") or []
        for j, decl in enumerate(decls):
            if not isinstance(decl, dict) or not isinstance(decl.get("name"), str):
                raise WireError(
                    f"* GenerateContentRequest.tools[{i}].function_declarations[{j}]"
                    ".name: Name cannot be empty."
                )
            declarations.append(decl)
    for decl in declarations:
        if not allowed or decl["name"] in allowed:
            schema = (
                decl.get("parameters")
                or _get(decl, "parametersJsonSchema", "parameters_json_schema")
                or {}
            )
            return decl["name"], schema
    return None, None
