"""The provider families (upstream wire formats) of the contract, named once.

A pool's model names its family (``ModelPool.spec.models[].provider``, the
snapshot's ``Candidate.provider``). Both planes and the simulator need the
list of names and must not import each other, so the names live here, in
the contract: the control plane's model types the field with :data:`Family`
(and the CRD's enum is checked equal to it by tests/control), the router's
provider registry declares one entry per name (checked by tests/providers),
and the simulator serves every one (checked by tests/simulator). Everything
else about a family (adapter, auth, framing, quirks) is the router's, in
``skyroute.router.providers.registry``.

Which credentials a family takes (``spec.models[].auth``) and whether it is
addressed by cloud region and project are part of the contract too: the CRD's
CEL rules and the control plane's validators are both derived from the tables
below (tests/control checks the CRD's rule text against them), and the router
reads the same names to pick a token source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

# Azure OpenAI is named first only so that the older names keep their order in messages
# ("'openai', 'anthropic' or 'gemini'"); order carries no other meaning.
Family = Literal[
    "azure-openai",
    "openai",
    "anthropic",
    "gemini",
    "bedrock",
    "vertex-gemini",
    "vertex-anthropic",
    "openai-compatible",
]
FAMILY_NAMES: tuple[Family, ...] = get_args(Family)

#: How a router authenticates to a model's upstream: a static API key (the default), AWS
#: SigV4 from the standard credential chain, Google OAuth tokens (google-auth: ADC,
#: workload identity, a service-account key file), or Microsoft Entra ID tokens
#: (azure-identity: workload identity, managed identity, a client secret).
Auth = Literal["api-key", "aws", "google", "entra"]
AUTH_NAMES: tuple[Auth, ...] = get_args(Auth)
DEFAULT_AUTH: Auth = "api-key"

#: The auth methods each family accepts (keys may name a family before :data:`Family` does:
#: the rules are in place first, so adding the name there is all that enables it).
FAMILY_AUTH: Mapping[str, tuple[Auth, ...]] = {
    "azure-openai": ("api-key", "entra"),
    "openai": ("api-key",),
    "anthropic": ("api-key",),
    "gemini": ("api-key",),
    "bedrock": ("aws", "api-key"),
    "openai-compatible": ("api-key",),
    "vertex-gemini": ("google",),
    "vertex-anthropic": ("google",),
}

#: Families addressed by a cloud region (``spec.models[].region``: a Bedrock region, a
#: Vertex AI location); only they take the field.
REGIONAL_FAMILIES: tuple[str, ...] = ("bedrock", "vertex-gemini", "vertex-anthropic")
#: Families addressed by a cloud project (Vertex AI): they need ``project`` (``region`` defaults).
PROJECT_FAMILIES: tuple[str, ...] = ("vertex-gemini", "vertex-anthropic")

#: What a self-hosted OpenAI-compatible server (vLLM, llama.cpp, TGI, Ollama) does
#: differently from OpenAI, declared per model (``spec.models[].quirks``) so the router
#: copes with it; what each one makes the router do is in the router's OpenAI adapter
#: (``skyroute.router.providers.openai_adapter.Quirks``):
#:
#: - ``rejects-stream-options``: refuses ``stream_options``, so it is not sent (the
#:   stream's usage is then estimated, as for a server that ignores it);
#: - ``rejects-null-content``: refuses an assistant message whose ``content`` is null
#:   (one with tool calls), so such content is sent as "";
#: - ``ignores-n``: answers one choice whatever ``n`` says, so a request for several
#:   is refused (400) rather than silently answered with one;
#: - ``overcounts-completion``: reports more ``completion_tokens`` than ``max_tokens``
#:   allowed, so the count is capped at ``max_tokens``;
#: - ``errors-as-500``: answers a request it cannot validate with a 500, so a 500 whose
#:   body says so is the request's fault (not retried, not held against the server);
#: - ``serves-one-at-a-time``: a second request in flight cuts the first one's stream
#:   short (llama-cpp-python's default), so a router sends it one request at a time.
Quirk = Literal[
    "rejects-stream-options",
    "rejects-null-content",
    "ignores-n",
    "overcounts-completion",
    "errors-as-500",
    "serves-one-at-a-time",
]
QUIRK_NAMES: tuple[Quirk, ...] = get_args(Quirk)
#: Families whose models may declare quirks.
QUIRK_FAMILIES: tuple[str, ...] = ("openai-compatible",)
