"""Turning every way an upstream call can fail into one :class:`ProviderError` class.

The router's fallback logic looks only at ``error_class``, so this module is
where provider-specific failure vocabularies are flattened: HTTP statuses,
the families' error bodies (OpenAI ``{"error": {"type", "code"}}``,
Anthropic ``{"type": "error", "error": {"type"}}``, Gemini ``{"error":
{"status", "details"}}``, Azure OpenAI's ``{"error": {"code", "innererror":
{"code", "content_filter_result"}}}``, whose filtered categories the message
names, AWS's ``{"message"}`` with the error's name in the ``x-amzn-errortype``
header, as Bedrock answers) and aiohttp's exceptions. Two rules matter more
than the rest:

- a 400 is not always the caller's fault: context-length and content-filter
  refusals come back as 400s (and Gemini reports a bad key as a 400 with
  ``API_KEY_INVALID``), and they call for a different candidate, not for
  giving up, so their wording is recognised here;
- a 404 is never the caller's fault either: the router chose the URL and the
  model, so Azure's ``DeploymentNotFound``, Bedrock's
  ``ResourceNotFoundException`` and OpenAI's ``model_not_found`` are NOT_FOUND,
  a configuration fault of that candidate (and endpoint), and the next one is
  tried;
- the API key never appears in an exception message, even if an upstream
  echoes it back.

Retry-After is read from ``retry-after-ms``, ``retry-after`` (seconds or an
HTTP date) or Gemini's ``RetryInfo.retryDelay``.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from skyroute.router.providers.types import (
    AUTH,
    BAD_RESPONSE,
    CLIENT_ERROR,
    CONNECT,
    CONTENT_FILTER,
    CONTEXT_LENGTH,
    NOT_FOUND,
    RATE_LIMITED,
    SERVER_ERROR,
    STREAM_CUT,
    TIMEOUT,
    ProviderError,
)

_CONTEXT_RE = re.compile(
    r"context.length|context window|maximum context|prompt is too long|too many tokens|"
    r"exceeds the maximum number of tokens|input token count|token limit|reduce the length|"
    r"input is too long"
)
_FILTER_RE = re.compile(
    r"content.filter|content management policy|content.policy|responsibleaipolicy|safety|"
    r"prohibited content|blocked"
)
# A request a server could not validate, in the words of a server that answers it with a
# 500 (llama-cpp-python: FastAPI's "2 validation errors: ..." as an internal_server_error).
_INVALID_RE = re.compile(r"validation error|unprocessable entity|invalid request")
_AUTH_RE = re.compile(r"api_key_invalid|api key not valid|invalid.api.key|unauthenticated")
# AWS error names (Bedrock's x-amzn-errortype) whose class is not what their status says:
# a model-side failure (424) and a quota (400) call for another model, not for giving up.
_AWS_CLASS = {
    "ModelErrorException": SERVER_ERROR,
    "ModelStreamErrorException": SERVER_ERROR,
    "ServiceQuotaExceededException": RATE_LIMITED,
    "ModelNotReadyException": RATE_LIMITED,
    "ThrottlingException": RATE_LIMITED,
    "ModelTimeoutException": TIMEOUT,
}
#: The HTTP status of each AWS error name Bedrock uses (its service model's), for errors
#: that arrive inside an event stream, where no status comes with them.
AWS_STATUS = {
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
}
_MAX_MESSAGE = 300


def error_details(body: bytes) -> tuple[str, str, float | None]:
    """(codes, message, retry delay) from any of the three families' error bodies."""
    try:
        obj: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", body[:_MAX_MESSAGE].decode("utf-8", "replace"), None
    if isinstance(obj, list) and obj:
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, str):
        return "", err, None
    if err is None and isinstance(obj, dict) and isinstance(obj.get("message"), str):
        return "", obj["message"], None  # AWS: the error's name is in a header
    if not isinstance(err, dict):
        return "", str(obj)[:_MAX_MESSAGE], None
    codes = [str(err[k]) for k in ("type", "code", "status") if err.get(k) is not None]
    message = str(err.get("message", ""))
    inner = err.get("innererror")
    if isinstance(inner, dict):
        if inner.get("code") is not None:
            codes.append(str(inner["code"]))
        message = _filtered(inner.get("content_filter_result")) + message
    delay: float | None = None
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        if detail.get("reason"):
            codes.append(str(detail["reason"]))
        if isinstance(detail.get("retryDelay"), str):
            delay = _duration(detail["retryDelay"])
    return " ".join(codes), message, delay


def _filtered(result: Any) -> str:
    """``"[filtered: hate, violence] "`` from Azure's per-category verdicts ("" if none)."""
    if not isinstance(result, dict):
        return ""
    names = [
        str(name)
        for name, verdict in result.items()
        if isinstance(verdict, dict) and verdict.get("filtered") is True
    ]
    return f"[filtered: {', '.join(names)}] " if names else ""


def classify_status(
    family: str,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    api_key: str | None,
    invalid_as_500: bool = False,
) -> ProviderError:
    """The ProviderError for a non-2xx answer (or a 2xx one that is not ours).

    ``invalid_as_500``: the server answers a request it cannot validate with a 500
    (quirk errors-as-500), so a 500 that says so is a CLIENT_ERROR, as its 400 would be.
    """
    codes, message, delay = error_details(body)
    aws = aws_type(headers)
    if aws:
        codes = f"{aws} {codes}".strip()
    text = f"{codes} {message}".lower()
    retry_after: float | None = None
    if aws in _AWS_CLASS:
        error_class = _AWS_CLASS[aws]
        if error_class == RATE_LIMITED:
            retry_after = parse_retry_after(headers)
    elif status == 429:
        error_class = RATE_LIMITED
        retry_after = parse_retry_after(headers)
        if retry_after is None:
            retry_after = delay
    elif status in (401, 403) or (status == 400 and _AUTH_RE.search(text)):
        error_class = AUTH
    elif status == 408:
        error_class = TIMEOUT
    elif status == 404:
        error_class = NOT_FOUND
    elif status == 413 or (400 <= status < 500 and _CONTEXT_RE.search(text)):
        error_class = CONTEXT_LENGTH
    elif 400 <= status < 500 and _FILTER_RE.search(text):
        error_class = CONTENT_FILTER
    elif 400 <= status < 500 or (invalid_as_500 and status == 500 and _INVALID_RE.search(text)):
        error_class = CLIENT_ERROR
    elif status >= 500:
        error_class = SERVER_ERROR
    else:
        error_class = BAD_RESPONSE
    detail = f" ({codes})" if codes else ""
    msg = scrub(f"{family} HTTP {status}{detail}: {message[:_MAX_MESSAGE]}", api_key)
    return ProviderError(error_class, msg, status=status, retry_after_s=retry_after)


def aws_type(headers: Mapping[str, str]) -> str:
    """The AWS error name in ``x-amzn-errortype`` (``ThrottlingException:http://...``), or ""."""
    value = headers.get("x-amzn-errortype") or headers.get("X-Amzn-ErrorType") or ""
    return value.split(":", 1)[0].strip()


def aws_error(family: str, name: str, message: str) -> ProviderError:
    """The ProviderError for an AWS error met inside an event stream (no HTTP status there)."""
    body = orjson.dumps({"message": message[:_MAX_MESSAGE]})
    return classify_status(
        family, AWS_STATUS.get(name, 500), body, {"x-amzn-errortype": name}, None
    )


def classify_exception(
    family: str, exc: BaseException, started: bool, api_key: str | None
) -> ProviderError:
    """The ProviderError for a transport failure; ``started`` = a token was already out."""
    if isinstance(exc, ProviderError):
        return exc
    what = type(exc).__name__
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return ProviderError(TIMEOUT, f"{family}: no complete answer in time ({what})")
    if started:
        return ProviderError(
            STREAM_CUT, scrub(f"{family}: stream broke after it started: {what}: {exc}", api_key)
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ProviderError(CONNECT, scrub(f"{family}: cannot connect: {exc}", api_key))
    return ProviderError(CONNECT, scrub(f"{family}: connection failed: {what}: {exc}", api_key))


def bad_response(family: str, why: str) -> ProviderError:
    return ProviderError(BAD_RESPONSE, f"{family}: unparsable answer: {why}"[:_MAX_MESSAGE])


def scrub(message: str, api_key: str | None) -> str:
    if api_key and api_key in message:
        return message.replace(api_key, "***")
    return message


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _duration(text: str) -> float | None:
    """A google.protobuf.Duration in JSON form ("1.5s")."""
    try:
        return max(0.0, float(text.rstrip("s")))
    except ValueError:
        return None


def eof_error(family: str, started: bool) -> ProviderError:
    """The stream closed before its terminal event."""
    if started:
        return ProviderError(STREAM_CUT, f"{family}: stream ended without its final event")
    return ProviderError(CONNECT, f"{family}: stream closed before the first token")
