"""Azure OpenAI, as the official ``openai.AzureOpenAI`` client expects it.

The body is OpenAI's Chat Completions (:class:`~.openai_wire.OpenAIWire` parses
and renders it); what Azure adds is checked or produced here:

- the path names the deployment, ``POST /azure/openai/deployments/{deployment}
  /chat/completions`` (client ``azure_endpoint=http://HOST:PORT/azure``), and
  the deployment is the scenario's model name; a body ``model`` is ignored;
- ``?api-version=`` is required (a 404 ``Resource not found`` without it, as
  Azure answers) and must be one of :data:`API_VERSIONS` (a 400 otherwise);
- the key comes in an ``api-key`` header; a Microsoft Entra ID bearer token
  instead must be one the simulator's Entra endpoint issued (:mod:`.entra`,
  checked by the server before the wire sees the request: :data:`KEY`);
- answers carry ``prompt_filter_results`` and per-choice
  ``content_filter_results``; a stream opens with Azure's empty-``choices``
  chunk holding the prompt's filter results;
- errors are Azure's bodies: ``{"error": {"code": "429", ...}}`` with
  Retry-After, a 401 ``Access denied due to invalid subscription key``, and the
  content filter's 400 with ``code: content_filter`` and
  ``innererror.content_filter_result`` naming the category that was filtered.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from skyroute.families import Family
from skyroute.simulator.answers import Answer
from skyroute.simulator.openai_wire import OpenAIWire
from skyroute.simulator.wire import (
    ErrorContext,
    Rendered,
    SimRequest,
    StreamFrames,
    WireError,
    retry_after_header,
)

API_VERSIONS = frozenset(
    {"2024-06-01", "2024-10-21", "2025-01-01-preview", "2025-03-01-preview", "2025-04-01-preview"}
)
_JSON = {"Content-Type": "application/json"}
_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
_CODES = {400: "BadRequest", 401: "401", 403: "403", 404: "404", 429: "429"}
#: Set on a request whose Entra ID bearer token was verified: the key it stands for.
KEY = web.RequestKey("skyroute.simulator.azure.key", str)
#: Azure's answer to a bearer token it does not accept.
BAD_TOKEN = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect "
    "(https://cognitiveservices.azure.com), or have expired."
)


def filter_results(filtered: str | None = None) -> dict[str, Any]:
    """Azure's per-category verdicts: all safe, or ``filtered`` blocked at medium severity."""
    return {
        c: {"filtered": c == filtered, "severity": "medium" if c == filtered else "safe"}
        for c in _CATEGORIES
    }


_PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": filter_results()}]
_STREAM_HEAD = (
    b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
    + orjson.dumps(_PROMPT_FILTER)
    + b"}\n\n"
)


def _err(
    status: int,
    code: str,
    message: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Rendered:
    body = {"error": {"code": code, "message": message, **(extra or {})}}
    return Rendered(status, {**_JSON, **(headers or {})}, orjson.dumps(body))


class AzureOpenAIWire(OpenAIWire):
    name: Family = "azure-openai"

    def api_key(self, request: web.Request) -> str | None:
        verified = request.get(KEY)
        return verified if verified is not None else request.headers.get("api-key")

    def check_headers(self, request: web.Request) -> None:
        version = request.query.get("api-version")
        if version is None:
            raise WireError("Resource not found", 404)
        if version not in API_VERSIONS:
            raise WireError(
                f"Unsupported api-version {version!r}: use one of {', '.join(sorted(API_VERSIONS))}"
            )

    def parse(self, body: Any, path_model: str | None, stream_path: bool) -> SimRequest:
        if not isinstance(body, dict):
            raise WireError("The request body must be a JSON object.")
        return super().parse({**body, "model": path_model}, path_model, stream_path)

    def render(self, req: SimRequest, answer: Answer) -> bytes:
        obj = orjson.loads(super().render(req, answer))
        obj["prompt_filter_results"] = _PROMPT_FILTER
        for choice in obj["choices"]:
            choice["content_filter_results"] = filter_results()
        return orjson.dumps(obj)

    def stream(self, req: SimRequest, answer: Answer, chunk_tokens: int) -> StreamFrames:
        frames = super().stream(req, answer, chunk_tokens)
        frames.head = _STREAM_HEAD + frames.head
        return frames

    def error(self, kind: str, ctx: ErrorContext) -> Rendered:
        if kind == "rate_limited":
            return _err(
                429,
                "429",
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have "
                "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry "
                f"after {max(1, round(ctx.retry_after_s))} seconds.",
                headers=retry_after_header(ctx.retry_after_s),
            )
        if kind == "content_filter":
            inner = {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": filter_results("violence"),
            }
            return _err(
                400,
                "content_filter",
                "The response was filtered due to the prompt triggering Azure OpenAI's content "
                "management policy. Please modify your prompt and retry.",
                {"param": "prompt", "type": None, "status": 400, "innererror": inner},
            )
        if kind == "not_found":
            return _err(
                404,
                "DeploymentNotFound",
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.",
            )
        if kind == "auth":
            return self.invalid(
                "Access denied due to invalid subscription key or wrong API endpoint.", 401
            )
        return super().error(kind, ctx)

    def invalid(self, message: str, status: int = 400) -> Rendered:
        return _err(status, _CODES.get(status, str(status)), message)
