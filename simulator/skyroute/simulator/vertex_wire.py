"""Google Vertex AI: Gemini and Anthropic's models at publisher-model paths, OAuth-authenticated.

Paths (``google-genai`` with ``vertexai=True`` and
``http_options.base_url=http://HOST:PORT/vertex``;
``anthropic.AnthropicVertex(base_url=http://HOST:PORT/vertex/v1)``), under
``/vertex/{v1|v1beta1}/projects/{project}/locations/{location}``::

    POST .../publishers/google/models/{model}:generateContent
    POST .../publishers/google/models/{model}:streamGenerateContent?alt=sse
    POST .../publishers/anthropic/models/{model}:rawPredict
    POST .../publishers/anthropic/models/{model}:streamRawPredict

Gemini's body and answers are the Gemini API's (:mod:`.gemini_wire`);
Anthropic's are the Messages API's (:mod:`.anthropic_wire`) with Vertex AI's
differences checked as it checks them: ``anthropic_version`` must be
Vertex AI's ``vertex-2023-10-16`` or a dated API version (newer ``anthropic``
SDKs send their own), the body carries no ``model`` (it is in the path), and
``stream: true`` goes with ``streamRawPredict`` only. No ``anthropic-version``
header is needed.

Authentication is an OAuth access token, ``Authorization: Bearer TOKEN``,
checked against the scenario's ``api_key``. What Vertex AI itself refuses is
in Google's error shape (``{"error": {"code", "message", "status"}}``): a
missing or wrong token is a 401 ``UNAUTHENTICATED``, a quota a 429
``RESOURCE_EXHAUSTED`` (with Retry-After, a liberty as in the other
families), an unknown model, publisher or method a 404 ``NOT_FOUND``. What the model
answers (Anthropic's overloaded, invalid-request, refusal...) keeps its own
family's shape.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from skyroute.families import Family
from skyroute.simulator.anthropic_wire import AnthropicWire
from skyroute.simulator.gemini_wire import GeminiWire, google_error
from skyroute.simulator.wire import (
    ErrorContext,
    Rendered,
    SimRequest,
    WireError,
    bearer,
    retry_after_header,
)

ANTHROPIC_VERSION = "vertex-2023-10-16"
_VERSION = re.compile(r"(vertex-)?\d{4}-\d{2}-\d{2}")
VERSIONS = frozenset({"v1", "v1beta1"})
_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_DENIED = "Permission 'aiplatform.endpoints.predict' denied on resource (or it may not exist)."


def unauthenticated() -> Rendered:
    return google_error(
        401,
        _UNAUTHENTICATED,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                "domain": "googleapis.com",
                "metadata": {"service": "aiplatform.googleapis.com"},
            }
        ],
    )


def quota(model: str, retry_after_s: float) -> Rendered:
    out = google_error(
        429,
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
        f"with base model: {model}. Please submit a quota increase request.",
    )
    out.headers.update(retry_after_header(retry_after_s))
    return out


def not_found(publisher: str, model: str) -> Rendered:
    return google_error(
        404,
        f"Publisher Model `publishers/{publisher}/models/{model}` was not found or your "
        "project does not have access to it.",
    )


def _vertex_invalid(message: str, status: int) -> Rendered | None:
    """Vertex AI's own refusals (authentication, permission, not found), or None."""
    if status == 401:
        return unauthenticated()
    if status == 403:
        return google_error(403, _DENIED)
    if status == 404:
        return google_error(404, message)
    return None


class VertexGeminiWire(GeminiWire):
    name: Family = "vertex-gemini"

    def api_key(self, request: web.Request) -> str | None:
        return bearer(request)

    def error(self, kind: str, ctx: ErrorContext) -> Rendered:
        if kind == "auth":
            return unauthenticated()
        if kind == "not_found":
            return not_found("google", ctx.model)
        return super().error(kind, ctx)

    def invalid(self, message: str, status: int = 400) -> Rendered:
        return _vertex_invalid(message, status) or super().invalid(message, status)


class VertexAnthropicWire(AnthropicWire):
    name: Family = "vertex-anthropic"

    def api_key(self, request: web.Request) -> str | None:
        return bearer(request)

    def check_headers(self, request: web.Request) -> None:
        return None  # the version is in the body

    def parse(self, body: Any, path_model: str | None, stream_path: bool) -> SimRequest:
        if not isinstance(body, dict):
            raise WireError("body: Input should be an object")
        if not _VERSION.fullmatch(str(body.get("anthropic_version", ""))):
            raise WireError(f"anthropic_version: Input should be '{ANTHROPIC_VERSION}'")
        if "model" in body:
            raise WireError("model: Extra inputs are not permitted (the model is in the URL)")
        if bool(body.get("stream")) != stream_path:
            raise WireError(
                "stream: must be true at streamRawPredict and absent or false at rawPredict"
            )
        req = super().parse({**body, "model": path_model}, path_model, stream_path)
        req.stream = stream_path
        return req

    def error(self, kind: str, ctx: ErrorContext) -> Rendered:
        if kind == "auth":
            return unauthenticated()
        if kind == "rate_limited":
            return quota(ctx.model, ctx.retry_after_s)
        if kind == "not_found":
            return not_found("anthropic", ctx.model)
        return super().error(kind, ctx)

    def invalid(self, message: str, status: int = 400) -> Rendered:
        return _vertex_invalid(message, status) or super().invalid(message, status)
