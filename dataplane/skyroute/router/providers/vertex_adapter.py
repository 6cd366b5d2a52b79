"""Google Vertex AI: the Gemini and Anthropic codecs at Vertex AI's publisher-model URLs.

Vertex AI serves Gemini with the Gemini API's body and Anthropic's models
with the Messages body, so the translations and stream assembly are
:class:`~.gemini_adapter.GeminiAdapter`'s and
:class:`~.anthropic_adapter.AnthropicAdapter`'s, unchanged; what differs is
where a request goes, how it authenticates (:mod:`.google_auth`) and, for
Anthropic, two body fields:

- the URL names the project, the location and the publisher:
  ``{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/
  models/{model}:{method}``, with methods ``generateContent`` and
  ``streamGenerateContent?alt=sse`` (publisher ``google``), ``rawPredict`` and
  ``streamRawPredict`` (publisher ``anthropic``); the model id is the target's
  model (``gemini-2.5-flash``, ``claude-sonnet-4-5@20250929``);
- the base is the location's host: ``https://{location}-aiplatform.googleapis.com``,
  ``https://aiplatform.googleapis.com`` for ``global`` and
  ``https://aiplatform.{us,eu}.rep.googleapis.com`` for the multi-regions, as
  the official clients address them; an endpoint that is not the public
  default (a proxy, the simulator) is used as given, ``/v1`` appended unless it
  already ends with a version;
- the location is the target's region, else the one in an
  ``{location}-aiplatform.googleapis.com`` host, else :data:`DEFAULT_LOCATION`;
  the project is the target's and is required;
- Anthropic's body carries no ``model`` (it is in the path) and has
  ``anthropic_version: vertex-2023-10-16``; streaming is ``stream: true`` in
  the body, at ``streamRawPredict``.

Errors come in both vocabularies (Vertex AI's own in Google's shape: a 429
``RESOURCE_EXHAUSTED`` quota, a 401 ``UNAUTHENTICATED`` token, a 404 model
not found in the location; the model's in Anthropic's shape), and the errors
module classifies both.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from skyroute.router.providers.anthropic_adapter import AnthropicAdapter
from skyroute.router.providers.common import Prepared
from skyroute.router.providers.gemini_adapter import GeminiAdapter
from skyroute.router.providers.types import CLIENT_ERROR, ChatRequest, ProviderError, Target

#: The public endpoint; ``{region}`` is the model's location (see :func:`api_base`).
ENDPOINT = "https://{region}-aiplatform.googleapis.com"
DEFAULT_LOCATION = "us-central1"
ANTHROPIC_VERSION = "vertex-2023-10-16"
_HOST_SUFFIX = "-aiplatform.googleapis.com"
_MULTI_REGIONS = frozenset({"us", "eu"})
_JSON = {"Content-Type": "application/json"}


def location_of(target: Target) -> str:
    """The target's region, else the one in a ``LOCATION-aiplatform.googleapis.com`` host."""
    if target.region:
        return target.region
    host = target.endpoint.split("://", 1)[-1].split("/", 1)[0]
    if host.endswith(_HOST_SUFFIX) and not host.startswith("{"):
        return host[: -len(_HOST_SUFFIX)]
    return DEFAULT_LOCATION


def public_host(location: str) -> str:
    """The Vertex AI host serving ``location``, as the official clients address it."""
    if location == "global":
        return "aiplatform.googleapis.com"
    if location in _MULTI_REGIONS:
        return f"aiplatform.{location}.rep.googleapis.com"
    return location + _HOST_SUFFIX


def api_base(target: Target) -> str:
    """The versioned base URL: the location's public host, or the endpoint as given."""
    location = location_of(target)
    endpoint = target.endpoint.replace("{region}", location).rstrip("/")
    if endpoint == "https://" + location + _HOST_SUFFIX:
        endpoint = "https://" + public_host(location)
    if endpoint.rsplit("/", 1)[-1] in ("v1", "v1beta1"):
        return endpoint
    return endpoint + "/v1"


def model_url(target: Target, family: str, publisher: str) -> str:
    """``{base}/projects/P/locations/L/publishers/{publisher}/models/{model}`` (no method)."""
    if not target.project:
        raise ProviderError(CLIENT_ERROR, f"{family}: the model names no Google Cloud project")
    return (
        f"{api_base(target)}/projects/{quote(target.project, safe='')}"
        f"/locations/{quote(location_of(target), safe='')}/publishers/{publisher}"
        f"/models/{quote(target.model, safe='@')}"
    )


class VertexGeminiAdapter(GeminiAdapter):
    family = "vertex-gemini"

    def prepare(self, target: Target) -> Prepared:
        base = model_url(target, self.family, "google")
        return Prepared(
            base + ":generateContent",
            base + ":streamGenerateContent?alt=sse",
            dict(_JSON),
            {**_JSON, "Accept": "text/event-stream"},
            target.model,
            None,
        )


class VertexAnthropicAdapter(AnthropicAdapter):
    family = "vertex-anthropic"

    def prepare(self, target: Target) -> Prepared:
        base = model_url(target, self.family, "anthropic")
        return Prepared(
            base + ":rawPredict",
            base + ":streamRawPredict",
            dict(_JSON),
            {**_JSON, "Accept": "text/event-stream"},
            target.model,
            None,
        )

    def encode(self, req: ChatRequest, model: str, stream: bool) -> bytes:
        body: dict[str, Any] = self.message(req, model, stream)
        del body["model"]
        body["anthropic_version"] = ANTHROPIC_VERSION
        return orjson.dumps(body)
