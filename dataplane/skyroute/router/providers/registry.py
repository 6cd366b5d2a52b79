"""Provider families, each declared once: adapter, auth, framing, capabilities, quirks.

One :class:`ProviderFamily` per name of the contract's
:data:`skyroute.families.Family` says everything the router knows about a
wire format that is not request translation:

- ``adapter``: the body translations and stream assembly (its own module);
- ``auth``: how a request proves who sends it. :class:`HeaderKey` puts the
  key in a header, fixed per target; a scheme that signs each request
  (SigV4 over method, URL and body hash) or adds a short-lived token (Google
  OAuth) returns a signer instead, which the transport awaits with the final
  URL, headers and body;
- ``framing``: how a response byte stream is cut into payloads (SSE, or
  AWS's binary event stream for Bedrock);
- ``capabilities``: what the wire format can carry at all (a model's
  ``supportsTools`` is capped by it);
- ``embeddings``: the family's embeddings wire format (:mod:`.embeddings`),
  None where the family has no embeddings API;
- ``default_endpoint``: the public base URL, used when a snapshot names none;
- ``otel_name``: the GenAI semantic conventions' ``gen_ai.provider.name``
  for an endpoint host (Gemini is ``gcp.gemini`` or, on Vertex AI,
  ``gcp.vertex_ai``, as are both Vertex AI families; Azure OpenAI is ``azure.ai.openai``);
- ``quirks``: for a family whose models declare what their server does
  differently (``openai-compatible``: self-hosted vLLM, llama.cpp, TGI,
  Ollama), the adapter for a target's declared quirks; the OpenAI codec
  bent by flags (:class:`~.openai_adapter.Quirks`), not a copy of it.

Adding a family is one entry here plus its adapter module (and its name in
the contract); the adapter dict, the snapshot check, the telemetry names and
the per-target preparation all read this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from skyroute.families import FAMILY_NAMES, Family
from skyroute.router.providers import anthropic_adapter, bedrock_adapter, gemini_adapter
from skyroute.router.providers.anthropic_adapter import AnthropicAdapter
from skyroute.router.providers.azure_adapter import AzureOpenAIAdapter
from skyroute.router.providers.azure_auth import AzureAuth
from skyroute.router.providers.bedrock_adapter import ENDPOINT as BEDROCK_ENDPOINT
from skyroute.router.providers.bedrock_adapter import BedrockAdapter
from skyroute.router.providers.bedrock_auth import BedrockAuth
from skyroute.router.providers.bedrock_eventstream import EventStreamDecoder
from skyroute.router.providers.common import Adapter, AuthScheme, Framing, Prepared, Signer
from skyroute.router.providers.embeddings import EmbeddingWire, GeminiEmbeddings, OpenAIEmbeddings
from skyroute.router.providers.gemini_adapter import GeminiAdapter
from skyroute.router.providers.google_auth import GoogleAuth
from skyroute.router.providers.openai_adapter import SELF_HOSTED, OpenAIAdapter, quirk_refuses
from skyroute.router.providers.options import Table, unhonoured
from skyroute.router.providers.sse import SSEDecoder
from skyroute.router.providers.types import Target
from skyroute.router.providers.vertex_adapter import ENDPOINT as VERTEX_ENDPOINT
from skyroute.router.providers.vertex_adapter import VertexAnthropicAdapter, VertexGeminiAdapter


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """The key in one header, optionally after a prefix (``Authorization: Bearer KEY``)."""

    header: str
    prefix: str = ""

    def headers(self, target: Target) -> dict[str, str]:
        return {self.header: self.prefix + target.api_key} if target.api_key else {}

    def signer(self, target: Target) -> Signer | None:
        return None


@dataclass(frozen=True, slots=True)
class Capabilities:
    tools: bool = True  # function calling


@dataclass(frozen=True, slots=True)
class ProviderFamily:
    name: Family
    adapter: Adapter
    auth: AuthScheme
    framing: Callable[[], Framing]
    default_endpoint: str
    capabilities: Capabilities = field(default_factory=Capabilities)
    embeddings: EmbeddingWire | None = None
    otel_name: Callable[[str], str] | None = None  # None: the family's own name
    # The Chat Completions parameters the family translates (.options); None: every one
    # goes as sent (OpenAI's wire, unknown parameters too).
    options: Table | None = None
    # (declared quirk names) -> the adapter for them; None: the family takes no quirks.
    quirks: Callable[[frozenset[str]], Adapter] | None = None
    # The most stop sequences the family's API takes (None: no cap of its own).
    max_stop: int | None = None

    def adapter_for(self, target: Target) -> Adapter:
        """The adapter for ``target``: the family's, bent by the target's quirks if any."""
        if self.quirks is None or not target.quirks:
            return self.adapter
        return self.quirks(target.quirks)

    def prepare(self, target: Target, adapter: Adapter | None = None) -> Prepared:
        """The adapter's per-target constants with this family's credentials and framing."""
        base = (adapter or self.adapter).prepare(target)
        auth = self.auth.headers(target)
        return replace(
            base,
            headers={**base.headers, **auth},
            stream_headers={**base.stream_headers, **auth},
            framing=self.framing,
            sign=self.auth.signer(target),
        )

    def provider_name(self, host: str) -> str:
        return self.otel_name(host) if self.otel_name is not None else self.name


def _gemini_name(host: str) -> str:
    return "gcp.vertex_ai" if host.endswith("aiplatform.googleapis.com") else "gcp.gemini"


_SELF_HOSTED = OpenAIAdapter("openai-compatible", SELF_HOSTED)
#: OpenAI's API refuses more than 4 stop sequences (the Anthropic Messages door takes 64).
OPENAI_MAX_STOP = 4

FAMILIES: dict[str, ProviderFamily] = {
    f.name: f
    for f in (
        ProviderFamily(
            "azure-openai",
            AzureOpenAIAdapter(),
            AzureAuth(),  # the api-key header, or Entra ID tokens (auth: entra)
            SSEDecoder,
            # Every resource has its own host, so pools name it (the CRD requires an
            # endpoint); this placeholder only shows the shape, and fails to resolve.
            "https://RESOURCE.openai.azure.com",
            otel_name=lambda host: "azure.ai.openai",
            max_stop=OPENAI_MAX_STOP,
        ),
        ProviderFamily(
            "openai",
            OpenAIAdapter(),
            HeaderKey("Authorization", "Bearer "),
            SSEDecoder,
            "https://api.openai.com/v1",
            embeddings=OpenAIEmbeddings(),
            max_stop=OPENAI_MAX_STOP,
        ),
        ProviderFamily(
            "anthropic",
            AnthropicAdapter(),
            HeaderKey("x-api-key"),
            SSEDecoder,
            "https://api.anthropic.com",
            options=anthropic_adapter.OPTIONS,
        ),
        ProviderFamily(
            "gemini",
            GeminiAdapter(),
            HeaderKey("x-goog-api-key"),
            SSEDecoder,
            "https://generativelanguage.googleapis.com/v1beta",
            embeddings=GeminiEmbeddings(),
            otel_name=_gemini_name,
            options=gemini_adapter.OPTIONS,
        ),
        ProviderFamily(
            "bedrock",
            BedrockAdapter(),
            BedrockAuth(),  # SigV4 from the AWS chain (auth: aws), or a Bedrock API key
            EventStreamDecoder,
            BEDROCK_ENDPOINT,  # {region}: the model's region
            otel_name=lambda host: "aws.bedrock",
            options=bedrock_adapter.OPTIONS,
        ),
        ProviderFamily(
            "vertex-gemini",
            VertexGeminiAdapter(),
            GoogleAuth(),  # OAuth access tokens from google-auth's ADC
            SSEDecoder,
            VERTEX_ENDPOINT,  # {region}: the model's location
            otel_name=lambda host: "gcp.vertex_ai",
            options=gemini_adapter.OPTIONS,  # the Gemini codec, so its parameters
        ),
        ProviderFamily(
            "vertex-anthropic",
            VertexAnthropicAdapter(),
            GoogleAuth(),
            SSEDecoder,
            VERTEX_ENDPOINT,
            otel_name=lambda host: "gcp.vertex_ai",
            options=anthropic_adapter.OPTIONS,  # the Anthropic codec, so its parameters
        ),
        ProviderFamily(
            "openai-compatible",
            _SELF_HOSTED,
            HeaderKey("Authorization", "Bearer "),  # sent only if the model names a key
            SSEDecoder,
            # A self-hosted server has no public address, so pools name it (the CRD
            # requires an endpoint); this placeholder never resolves (RFC 2606's .invalid).
            "https://self-hosted.invalid/v1",
            quirks=_SELF_HOSTED.with_quirks,
        ),
    )
}
# The contract's names, in its order (tests/providers checks that each has an entry).
NAMES: tuple[str, ...] = tuple(n for n in FAMILY_NAMES if n in FAMILIES)


def family(name: str) -> ProviderFamily | None:
    return FAMILIES.get(name)


def provider_name(family_name: str, host: str) -> str:
    """``gen_ai.provider.name`` for ``family_name`` at ``host`` (the name itself if unknown)."""
    f = FAMILIES.get(family_name)
    return f.provider_name(host) if f is not None else family_name


def cannot_honour(
    family_name: str,
    options: Mapping[str, Any],
    quirks: frozenset[str] = frozenset(),
    stops: int = 0,
) -> tuple[str, ...]:
    """Every one of ``options`` (Chat Completions parameters) ``family_name`` cannot honour.

    ``quirks``: the model's declared ones (a self-hosted server that ignores ``n``).
    ``stops``: the request's number of stop sequences (the family may cap them).
    """
    f = FAMILIES.get(family_name)
    if f is None or not (options or stops):
        return ()
    refused: tuple[str, ...] = ()
    if quirks and f.quirks is not None:
        quirk = quirk_refuses(quirks, options)
        if quirk is not None:
            refused = (quirk,)
    return refused + tuple(
        n for n in unhonoured(options, f.options, stops, f.max_stop) if n not in refused
    )
