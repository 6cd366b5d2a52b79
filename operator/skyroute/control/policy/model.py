"""Pydantic mirrors of the ModelPool and RoutingPolicy CRDs.

The CRDs in ``crds/`` are what a Kubernetes API server enforces; these models
are what the control plane enforces when it reads a folder of YAML with no API
server in front of it (local runs, CI, the demo). Both must reject the same
input with the same words, otherwise a policy that passes ``skyroute control``
locally fails ``kubectl apply`` later, or the reverse. So every limit here
(lengths, list sizes, ranges, enums, patterns, defaults) is copied from the
CRD schema, and every cross-field CEL rule of the CRDs has a validator here
raising the very same message (``CEL_MESSAGES``; tests compare both files).

Field names are snake_case in Python and camelCase on the wire, as in the
CRDs. Models are strict (no "0.5" strings for numbers, no ints for booleans)
because the API server is strict too, and unknown fields are errors, as with
``kubectl apply --validate=strict``: a typo such as ``defualtPool`` must not
silently fall back to a default.

What a single object cannot tell (does the referenced pool exist, does a glob
match any intent, is there only one default policy) lives in ``validate.py``.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from skyroute.families import (
    AUTH_NAMES,
    DEFAULT_AUTH,
    FAMILY_AUTH,
    PROJECT_FAMILIES,
    QUIRK_FAMILIES,
    REGIONAL_FAMILIES,
    Auth,
    Family,
    Quirk,
)
from skyroute.patterns import re2_error

GROUP = "skyroute.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND_POOL = "ModelPool"
KIND_POLICY = "RoutingPolicy"
KIND_TENANT = "Tenant"
# kubectl annotate routingpolicy NAME skyroute.io/rollout-action=promote (or abort)
ROLLOUT_ACTION_ANNOTATION = f"{GROUP}/rollout-action"

# Patterns are written in the subset that ECMA-262 (OpenAPI), RE2 (CEL) and
# Python agree on, so the CRD and these models accept exactly the same strings.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
# A provider's own model id may also carry "@" (Vertex AI's claude-sonnet-4-5@20250929).
UPSTREAM_MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"
INTENT_PATTERN = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9_-]*[a-z0-9])?)*$"
GLOB_PATTERN = r"^[a-z0-9_.*?-]+$"
ENDPOINT_PATTERN = r"^https?://[^\s]+$"
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
FILE_PATTERN = r"^/[^\x00]*$"
LOCALE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
API_VERSION_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$"
REGION_PATTERN = r"^[a-z]+(-[a-z0-9]+)*$"
PROJECT_PATTERN = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"
# API keys (sk-sr-<id>-<secret>): the public id and the digest of the whole key.
KEY_ID_PATTERN = r"^[0-9a-f]{12}$"
KEY_DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
POLICY_REF_PATTERN = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"
# Where routers find a secretKeyRef: deploy/ mounts Secret <name> at <root>/<name>.
SECRET_MOUNT_ROOT = "/var/run/secrets/skyroute"

# The messages of the CRDs' x-kubernetes-validations rules, raised verbatim below.
MSG_UNIQUE_MODELS = "model names must be unique within a pool"
MSG_MAX_OUTPUT = "maxOutputTokens must not exceed contextWindow"
MSG_API_KEY = "apiKey needs env, file or secretKeyRef"
MSG_API_VERSION = "apiVersion is only for provider azure-openai"
# The auth, region and project rules are derived from the contract's tables
# (skyroute.families); tests/control checks the CRD's rules are these very texts.
MSG_AUTH = "auth must be a method of the provider: " + ", ".join(
    f"{auth} ({', '.join(f for f, methods in FAMILY_AUTH.items() if auth in methods)})"
    for auth in AUTH_NAMES
)
RULE_AUTH = (
    "self.auth in {"
    + ", ".join(f"'{f}': [{', '.join(repr(a) for a in m)}]" for f, m in FAMILY_AUTH.items())
    + "}[self.provider]"
)
MSG_API_KEY_AUTH = f"apiKey is only for auth {DEFAULT_AUTH}"
MSG_REGION = f"region is only for providers {', '.join(REGIONAL_FAMILIES)}"
RULE_REGION = f"!has(self.region) || self.provider in [{', '.join(map(repr, REGIONAL_FAMILIES))}]"
MSG_PROJECT = f"project is only for providers {', '.join(PROJECT_FAMILIES)}"
RULE_PROJECT = f"!has(self.project) || self.provider in [{', '.join(map(repr, PROJECT_FAMILIES))}]"
MSG_PROJECT_REQUIRED = f"project is required for providers {', '.join(PROJECT_FAMILIES)}"
RULE_PROJECT_REQUIRED = (
    f"has(self.project) || !(self.provider in [{', '.join(map(repr, PROJECT_FAMILIES))}])"
)
MSG_QUIRKS = f"quirks are only for providers {', '.join(QUIRK_FAMILIES)}"
RULE_QUIRKS = f"!has(self.quirks) || self.provider in [{', '.join(map(repr, QUIRK_FAMILIES))}]"
MSG_UNIQUE_INTENTS = "intent names must be unique"
MSG_INTENT_SIGNAL = "an intent needs at least one keyword, pattern or example"
MSG_UNIQUE_RULES = "rule names must be unique"
MSG_PROMPT_BOUNDS = "maxPromptTokens must be 0 (unbounded) or at least minPromptTokens"
MSG_CACHE_INTENTS = "cache.intents must name at least one intent when the cache is enabled"
MSG_FIRST_TOKEN = "firstTokenTimeoutMs must not exceed requestTimeoutMs"
MSG_WEIGHTS = "weights must not all be zero"
MSG_UNIQUE_TESTS = "test names must be unique"
MSG_TEST_EXPECT = "expect needs at least one of pool, model, intent or cacheable"
MSG_UNIQUE_METRICS = "analysis metric names must be unique"
MSG_ONE_ENDPOINT_FORM = "a model needs exactly one of endpoint or endpoints"
MSG_UNIQUE_ENDPOINT_NAMES = "endpoint names must be unique within a model"
MSG_UNIQUE_ENDPOINT_URLS = "endpoint url and deployment must be unique within a model"
MSG_DEPLOYMENT = "deployment is only for provider azure-openai"
MSG_LEARNED_PAIR = "strong and weak must be different models"
CEL_MESSAGES = frozenset(
    {
        MSG_LEARNED_PAIR,
        MSG_ONE_ENDPOINT_FORM,
        MSG_UNIQUE_ENDPOINT_NAMES,
        MSG_UNIQUE_ENDPOINT_URLS,
        MSG_DEPLOYMENT,
        MSG_UNIQUE_TESTS,
        MSG_TEST_EXPECT,
        MSG_UNIQUE_METRICS,
        MSG_UNIQUE_MODELS,
        MSG_MAX_OUTPUT,
        MSG_API_KEY,
        MSG_API_VERSION,
        MSG_AUTH,
        MSG_API_KEY_AUTH,
        MSG_REGION,
        MSG_PROJECT,
        MSG_PROJECT_REQUIRED,
        MSG_QUIRKS,
        MSG_UNIQUE_INTENTS,
        MSG_INTENT_SIGNAL,
        MSG_UNIQUE_RULES,
        MSG_PROMPT_BOUNDS,
        MSG_CACHE_INTENTS,
        MSG_FIRST_TOKEN,
        MSG_WEIGHTS,
    }
)


def rule_error(message: str, detail: str = "") -> PydanticCustomError:
    """An error whose text is a CEL rule's message (plus optional detail), unprefixed."""
    text = f"{message} ({detail})" if detail else message
    return PydanticCustomError("skyroute_rule", text)


def _regex_compiles(pattern: str) -> str:
    # Routers match patterns with RE2 (skyroute.patterns) and also compile them with
    # Python's `re`: `re` checks the syntax here; RE2 is checked on the whole policy
    # (RoutingPolicySpec._re2), by its tests' router table when it has tests.
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise PydanticCustomError(
            "skyroute_regex", "invalid regular expression: {error}", {"error": str(exc)}
        ) from None
    return pattern


def _unique(names: list[str], message: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise rule_error(message, f'duplicate "{name}" at [{seen[name]}] and [{i}]')
        seen[name] = i


Name = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=NAME_PATTERN)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=MODEL_PATTERN)]
UpstreamModel = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=UPSTREAM_MODEL_PATTERN)
]
IntentName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=INTENT_PATTERN)]
IntentGlob = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=GLOB_PATTERN)]
Endpoint = Annotated[
    str, StringConstraints(min_length=1, max_length=2048, pattern=ENDPOINT_PATTERN)
]
ApiVersion = Annotated[
    str, StringConstraints(min_length=10, max_length=32, pattern=API_VERSION_PATTERN)
]
Region = Annotated[str, StringConstraints(min_length=2, max_length=32, pattern=REGION_PATTERN)]
Project = Annotated[str, StringConstraints(min_length=6, max_length=30, pattern=PROJECT_PATTERN)]
EnvVar = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ENV_PATTERN)]
SecretFile = Annotated[str, StringConstraints(min_length=2, max_length=1024, pattern=FILE_PATTERN)]
Keyword = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Pattern = Annotated[
    str, StringConstraints(min_length=1, max_length=512), AfterValidator(_regex_compiles)
]
Example = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Tier = Annotated[str, StringConstraints(min_length=1, max_length=63)]
Locale = Annotated[str, StringConstraints(min_length=2, max_length=35, pattern=LOCALE_PATTERN)]
Tenant = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Score = Annotated[float, Field(ge=0, le=1)]
Millis = Annotated[int, Field(ge=100, le=600_000)]
Tokens = Annotated[int, Field(ge=0, le=10_000_000)]
#: The smallest weight that is not zero (the router refuses smaller ones: their terms
#: would underflow for some candidates and not others).
MIN_WEIGHT = 1e-6


def _weight_resolution(w: float) -> float:
    if 0 < w < MIN_WEIGHT:
        raise PydanticCustomError(
            "weight_too_small", "a weight is 0 or at least {floor}", {"floor": MIN_WEIGHT}
        )
    return w


Weight = Annotated[float, Field(ge=0, le=100), AfterValidator(_weight_resolution)]
Price = Annotated[float, Field(ge=0, le=1000)]
VERSION_PATTERN = r"^sha256:[0-9a-f]{16}$"
PolicyVersion = Annotated[
    str, StringConstraints(min_length=23, max_length=23, pattern=VERSION_PATTERN)
]


class _Spec(BaseModel):
    """Shared configuration: camelCase aliases, strict types, no unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
        allow_inf_nan=False,
    )


# --- ModelPool ---------------------------------------------------------------


class Pricing(_Spec):
    """USD per million tokens."""

    input_per_m_tok: Price
    output_per_m_tok: Price


class SecretKeyRef(_Spec):
    """A key of a Secret that the router Deployment mounts (see ``secret_path``)."""

    name: Name
    key: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)]


class ApiKeyRef(_Spec):
    """Where a router finds the key: never the key itself."""

    env: EnvVar | None = None
    file: SecretFile | None = None
    secret_key_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeyRef:
        if self.env is None and self.file is None and self.secret_key_ref is None:
            raise rule_error(MSG_API_KEY)
        return self

    @property
    def secret_path(self) -> str:
        """The file a router reads: ``file``, else the mounted secretKeyRef, else ''.

        The operator never reads the Secret: it only turns the reference into the path
        at which the router Deployment mounts it, so the key itself never enters a
        snapshot, a status, an event or a log line.
        """
        if self.file is not None:
            return self.file
        ref = self.secret_key_ref
        return f"{SECRET_MOUNT_ROOT}/{ref.name}/{ref.key}" if ref is not None else ""


def _calendar_date(value: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "skyroute_date", "not a calendar date (YYYY-MM-DD): {value}", {"value": value}
        ) from None
    return value


def date_text(value: object) -> object:
    """PyYAML reads an unquoted 2026-11-26 as a date; kubectl sends it as a string."""
    return value.isoformat() if type(value) is date else value


EvalDate = Annotated[
    str,
    StringConstraints(min_length=10, max_length=10, pattern=DATE_PATTERN),
    AfterValidator(_calendar_date),
]
SampleCount = Annotated[int, Field(ge=0, le=1_000_000_000)]


class EvalProvenance(_Spec):
    """Where a model's ``quality`` scores came from: which eval set, when, on how much.

    Written by ``skyroute evals backfill`` (or by hand). ``intentSamples`` names the
    concrete intents whose scores the eval measured; other ``quality`` keys (globs,
    ``*``) are hand-set priors the eval did not touch.
    """

    eval_set: ModelName
    evaluated_at: EvalDate
    samples: SampleCount | None = None
    intent_samples: Annotated[dict[IntentName, SampleCount], Field(max_length=64)] = Field(
        default_factory=dict
    )

    @field_validator("evaluated_at", mode="before")
    @classmethod
    def _date_text(cls, value: object) -> object:
        return date_text(value)


class PoolEndpoint(_Spec):
    """One of a model's several endpoints (a region, a deployment, a replica)."""

    name: Name
    url: Endpoint
    weight: Annotated[int, Field(ge=1, le=1000)] = 1
    region: Name | None = None
    api_key: ApiKeyRef | None = None
    deployment: ModelName | None = None


def _unique_endpoints(endpoints: list[PoolEndpoint]) -> list[PoolEndpoint]:
    _unique([e.name for e in endpoints], MSG_UNIQUE_ENDPOINT_NAMES)
    # A URL naming {region} is a different upstream in each region (the router fills it in).
    _unique(
        [
            f"{e.url.replace('{region}', e.region or '{region}')} {e.deployment or ''}".strip()
            for e in endpoints
        ],
        MSG_UNIQUE_ENDPOINT_URLS,
    )
    return endpoints


# The cloud addressing fields and the families that take each (with the rule's message).
_CLOUD_FIELDS = {
    "region": (REGIONAL_FAMILIES, MSG_REGION),
    "project": (PROJECT_FAMILIES, MSG_PROJECT),
}


class PoolModel(_Spec):
    """One candidate of a pool; the list order is primary first, then fallbacks."""

    name: ModelName
    provider: Family
    endpoint: Endpoint | None = None
    # Several endpoints instead of ``endpoint``: balanced, failed over before the next model.
    endpoints: (
        Annotated[
            list[PoolEndpoint],
            Field(min_length=1, max_length=16),
            AfterValidator(_unique_endpoints),
        ]
        | None
    ) = None
    api_version: ApiVersion | None = None
    auth: Annotated[Auth, Field(validate_default=True)] = DEFAULT_AUTH
    region: Region | None = None
    project: Project | None = None
    # What the model's self-hosted server does differently (openai-compatible only).
    quirks: Annotated[list[Quirk], Field(max_length=8)] | None = None
    upstream_model: UpstreamModel | None = None
    family: Name | None = None
    pricing: Pricing
    context_window: Annotated[int, Field(ge=1, le=10_000_000)] = 128_000
    # An embedding model, and the space its vectors live in (fallback stays within it).
    embedding_space: Name | None = None
    supports_tools: bool = True
    max_output_tokens: Annotated[int, Field(ge=1, le=1_000_000, validate_default=True)] = 4096
    timeout_ms: Millis = 10_000
    api_key: ApiKeyRef | None = None
    quality: Annotated[dict[IntentGlob, Score], Field(max_length=64)] = Field(default_factory=dict)
    evals: EvalProvenance | None = None

    @field_validator("max_output_tokens")
    @classmethod
    def _fits_context(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("context_window")
        if isinstance(window, int) and value > window:
            raise rule_error(MSG_MAX_OUTPUT, f"{value} > {window}")
        return value

    @field_validator("api_version", mode="before")
    @classmethod
    def _api_version_text(cls, value: object) -> object:
        return date_text(value)

    @field_validator("api_version")
    @classmethod
    def _api_version_family(cls, value: str | None, info: ValidationInfo) -> str | None:
        provider = info.data.get("provider")
        if value is not None and provider is not None and provider != "azure-openai":
            raise rule_error(MSG_API_VERSION, f"provider is {provider}")
        return value

    @field_validator("endpoints")
    @classmethod
    def _deployments_azure(
        cls, value: list[PoolEndpoint] | None, info: ValidationInfo
    ) -> list[PoolEndpoint] | None:
        provider = info.data.get("provider")
        if provider not in (None, "azure-openai") and any(e.deployment for e in value or ()):
            raise rule_error(MSG_DEPLOYMENT, f"provider is {provider}")
        return value

    @model_validator(mode="after")
    def _endpoint_form(self) -> PoolModel:
        if (self.endpoint is None) == (self.endpoints is None):
            raise rule_error(MSG_ONE_ENDPOINT_FORM)
        return self

    @model_validator(mode="after")
    def _project_given(self) -> PoolModel:
        if self.provider in PROJECT_FAMILIES and self.project is None:
            raise rule_error(MSG_PROJECT_REQUIRED, f"provider is {self.provider}")
        return self

    @field_validator("auth")
    @classmethod
    def _auth_family(cls, value: str, info: ValidationInfo) -> str:
        provider = info.data.get("provider")
        if provider is not None and value not in FAMILY_AUTH.get(provider, ()):
            raise rule_error(MSG_AUTH, f"provider {provider} does not take {value}")
        return value

    @field_validator("region", "project")
    @classmethod
    def _cloud_family(cls, value: str | None, info: ValidationInfo) -> str | None:
        families, message = _CLOUD_FIELDS[str(info.field_name)]
        provider = info.data.get("provider")
        if value is not None and provider is not None and provider not in families:
            raise rule_error(message, f"provider is {provider}")
        return value

    @field_validator("quirks")
    @classmethod
    def _quirks_family(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        provider = info.data.get("provider")
        if value is not None and provider is not None and provider not in QUIRK_FAMILIES:
            raise rule_error(MSG_QUIRKS, f"provider is {provider}")
        return value

    @field_validator("api_key")
    @classmethod
    def _api_key_auth(cls, value: ApiKeyRef | None, info: ValidationInfo) -> ApiKeyRef | None:
        auth = info.data.get("auth")
        if value is not None and auth is not None and auth != DEFAULT_AUTH:
            raise rule_error(MSG_API_KEY_AUTH, f"auth is {auth}")
        return value

    @property
    def effective_family(self) -> str:
        return self.family or self.provider

    @property
    def first_url(self) -> str:
        """The base URL of the model's (first) endpoint."""
        return self.endpoint or (self.endpoints[0].url if self.endpoints else "")


class ModelPoolSpec(_Spec):
    models: Annotated[list[PoolModel], Field(min_length=1, max_length=16)]

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[PoolModel]) -> list[PoolModel]:
        _unique([m.name for m in models], MSG_UNIQUE_MODELS)
        return models


# --- RoutingPolicy -----------------------------------------------------------


class IntentSpec(_Spec):
    """An intent class; dotted names (``faq.password``) so globs can select families."""

    name: IntentName
    keywords: Annotated[list[Keyword], Field(max_length=256)] = Field(default_factory=list)
    patterns: Annotated[list[Pattern], Field(max_length=64)] = Field(default_factory=list)
    examples: Annotated[list[Example], Field(max_length=64)] = Field(default_factory=list)
    tool_use: Score = 0.0

    @model_validator(mode="after")
    def _has_signal(self) -> IntentSpec:
        if not (self.keywords or self.patterns or self.examples):
            raise rule_error(MSG_INTENT_SIGNAL)
        return self


class RuleMatch(_Spec):
    """All given conditions must hold; an empty list means "any"."""

    intents: Annotated[list[IntentGlob], Field(max_length=64)] = Field(default_factory=list)
    tools: Literal["any", "required", "absent"] = "any"
    min_prompt_tokens: Tokens = 0
    max_prompt_tokens: Annotated[int, Field(ge=0, le=10_000_000, validate_default=True)] = 0
    user_tiers: Annotated[list[Tier], Field(max_length=32)] = Field(default_factory=list)
    locales: Annotated[list[Locale], Field(max_length=64)] = Field(default_factory=list)
    tenants: Annotated[list[Tenant], Field(max_length=256)] = Field(default_factory=list)
    # Bounds on the learned signal's win probability (spec.learnedSignal); 0 = none.
    min_win_probability: Score = 0
    max_win_probability: Score = 0

    @field_validator("max_prompt_tokens")
    @classmethod
    def _bounds(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_prompt_tokens")
        if value != 0 and isinstance(low, int) and value < low:
            raise rule_error(MSG_PROMPT_BOUNDS, f"{value} < {low}")
        return value


#: A declared cache error bound: the share of different-meaning questions served.
FalseHitRate = Annotated[float, Field(ge=0, le=0.5)]


class CacheFamilySpec(_Spec):
    """Overrides for one intent family (``faq`` for ``faq.*``) or one intent (``faq.refunds``)."""

    similarity_threshold: Score = 0.9
    ttl_seconds: Annotated[int, Field(ge=1, le=2_592_000)] = 3600
    max_false_hit_rate: FalseHitRate | None = None


# A family (``faq`` for ``faq.*``) or one intent (``faq.refunds``: it wins over its family).
FamilyName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?$"),
]


class CacheSpec(_Spec):
    enabled: bool = False
    intents: Annotated[list[IntentGlob], Field(max_length=64, validate_default=True)] = Field(
        default_factory=list
    )
    similarity_threshold: Score = 0.9
    # Given without similarityThreshold, the router derives the threshold from it.
    max_false_hit_rate: FalseHitRate | None = None
    ttl_seconds: Annotated[int, Field(ge=1, le=2_592_000)] = 3600
    max_entries: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    families: Annotated[dict[FamilyName, CacheFamilySpec], Field(max_length=32)] = Field(
        default_factory=dict
    )

    @field_validator("intents")
    @classmethod
    def _intents_when_enabled(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("enabled") is True and not value:
            raise rule_error(MSG_CACHE_INTENTS)
        return value


class LimitsSpec(_Spec):
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    request_timeout_ms: Millis = 30_000
    first_token_timeout_ms: Annotated[int, Field(ge=100, le=600_000, validate_default=True)] = 5000
    inter_token_timeout_ms: Millis = 10_000

    @field_validator("first_token_timeout_ms")
    @classmethod
    def _within_request(cls, value: int, info: ValidationInfo) -> int:
        total = info.data.get("request_timeout_ms")
        if isinstance(total, int) and value > total:
            raise rule_error(MSG_FIRST_TOKEN, f"{value} > {total}")
        return value


class WeightsSpec(_Spec):
    """Weights of the decision score's terms.

    Each term is normalised to [0, 1] over the pool (0 = the pool's best on it, 1 =
    its worst), so a weight is what the whole spread of its term is worth and doubling
    it doubles that term's contribution (see ``skyroute policy explain``).
    """

    cost: Weight = 0.25
    latency: Weight = 0.25
    success: Weight = 0.25
    quality: Weight = 0.25

    @model_validator(mode="after")
    def _not_all_zero(self) -> WeightsSpec:
        if self.cost + self.latency + self.success + self.quality <= 0:
            raise rule_error(MSG_WEIGHTS)
        return self


class RetryBudgetSpec(_Spec):
    """Envoy's retry budget: retries at most ``ratio`` of active requests.

    The floor is 10 concurrent retries rather than Envoy's 3: LLM calls last
    seconds, so a router has tens of requests in flight where a microservice
    proxy has a handful, and a primary that dies at once must not fail the
    whole first wave before outlier ejection takes it out.
    """

    ratio: Annotated[float, Field(ge=0, le=1)] = 0.2
    min_concurrency: Annotated[int, Field(ge=0, le=10_000)] = 10


class OutlierDetectionSpec(_Spec):
    """Envoy-style ejection of a model endpoint after consecutive failures."""

    consecutive_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    base_ejection_ms: Millis = 30_000
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] = 50


class HedgingSpec(_Spec):
    """A second attempt for idempotent, tool-free requests once the first is slow."""

    enabled: bool = False
    after_ms: Annotated[int, Field(ge=0, le=600_000)] = 0
    percentile: Annotated[float, Field(ge=50, le=99.9)] = 95


class ReliabilitySpec(_Spec):
    retry_budget: RetryBudgetSpec = Field(default_factory=RetryBudgetSpec)
    outlier_detection: OutlierDetectionSpec = Field(default_factory=OutlierDetectionSpec)
    hedging: HedgingSpec = Field(default_factory=HedgingSpec)
    content_filter: Literal["fallback", "fail"] = "fail"
    non_idempotent_tools: Annotated[list[ModelName], Field(max_length=128)] = Field(
        default_factory=list
    )
    non_idempotent_max_attempts: Annotated[int, Field(ge=1, le=10)] = 2
    idempotency_ttl_seconds: Annotated[int, Field(ge=1, le=604_800)] = 86_400
    idempotency_unavailable: Literal["failClosed", "failOpen"] = "failClosed"


class ConstraintsSpec(_Spec):
    """Hard limits a candidate must meet to be chosen at all (0 = no limit)."""

    max_cost_per1k: Annotated[float, Field(ge=0, le=1_000_000, alias="maxCostPer1k")] = 0
    min_quality: Score = 0
    max_p95_ms: Annotated[int, Field(ge=0, le=600_000)] = 0


class ObjectiveSpec(_Spec):
    """A latency objective the router meets by its choice and on first-token time (hedges)."""

    p95_ms: Annotated[int, Field(ge=0, le=600_000)] = 0


class SelectionSpec(_Spec):
    """How a model is chosen inside the pool the rules picked.

    ``scored`` (the default) ranks by the weighted score, ties in the pool's declared
    order; ``ordered`` keeps the declared order (primary first); ``cheapest`` and
    ``fastest`` rank by expected cost or by p95 alone (ties: declared order).
    """

    mode: Literal["scored", "ordered", "cheapest", "fastest"] = "scored"
    constraints: ConstraintsSpec = Field(default_factory=ConstraintsSpec)
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    fallback_order: Literal["family", "score"] = "family"
    expected_completion_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 256


class Rule(_Spec):
    """First match wins; its own selection and weights, if given, replace the policy's."""

    name: Name
    match: RuleMatch = Field(default_factory=RuleMatch)
    pool: Name
    selection: SelectionSpec | None = None
    weights: WeightsSpec | None = None


class AdaptationSpec(_Spec):
    """The learning loop: fleet observations as priors, bounded exploration, drift alerts."""

    enabled: bool = False
    half_life_s: Annotated[int, Field(ge=1, le=86_400)] = 300
    exploration: Annotated[float, Field(ge=0, le=0.5)] = 0.05
    min_samples: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    interval_s: Annotated[int, Field(ge=1, le=3600)] = 30
    drift_latency_ratio: Annotated[float, Field(ge=0, le=100)] = 2.0
    drift_cost_ratio: Annotated[float, Field(ge=0, le=100)] = 2.0
    # Weight of the offline eval as a prior on quality feedback, in observations.
    quality_prior_weight: Annotated[float, Field(gt=0, le=1_000_000)] = 10.0
    # Alert when a quality posterior falls this far below its offline eval (0 = off).
    drift_quality_drop: Annotated[float, Field(ge=0, le=1)] = 0.0
    # Scored selection's quality: the posterior mean, or a Thompson draw per request.
    quality_sampling: Literal["mean", "thompson"] = "mean"

    @field_validator("drift_latency_ratio", "drift_cost_ratio")
    @classmethod
    def _ratio(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("a drift ratio is 0 (off) or at least 1 (a multiple of the baseline)")
        return value


class LearnedSignalSpec(_Spec):
    """A learned per-request signal over a strong/weak pair (README, "The learned signal")."""

    strong: ModelName
    weak: ModelName
    exploration: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    min_feedback: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    regularization: Annotated[float, Field(gt=0, le=1_000_000)] = 4.0

    @field_validator("weak")
    @classmethod
    def _pair(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("strong"):
            raise rule_error(MSG_LEARNED_PAIR, value)
        return value


# --- Lifecycle: tests in the policy, canary rollouts, pinning -------------------


class PolicyTestRequest(_Spec):
    """A request as the decision engine sees it: the last user message and its signals."""

    prompt: Annotated[str, StringConstraints(min_length=1, max_length=8192)]
    tools: bool = False
    intent: IntentName | None = None
    user_tier: Tier | None = None
    locale: Locale | None = None
    tenant: Tenant | None = None
    prompt_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class PolicyTestExpect(_Spec):
    """What the decision must be; only the given fields are checked."""

    pool: Name | None = None
    model: ModelName | None = None
    intent: IntentName | None = None
    cacheable: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> PolicyTestExpect:
        if (
            self.pool is None
            and self.model is None
            and self.intent is None
            and self.cacheable is None
        ):
            raise rule_error(MSG_TEST_EXPECT)
        return self


class PolicyTest(_Spec):
    """One routing case that must hold for every version of the policy."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    request: PolicyTestRequest
    expect: PolicyTestExpect


MetricName = Literal["success-rate", "p95-latency", "cost-per-1k", "fallback-rate", "quality"]
# What ``threshold`` means per metric, and its default: success-rate may drop by at
# most this (absolute), p95 latency and cost per 1k may be at most this multiple of
# the stable version's, the fallback rate may rise by at most this (absolute), and
# quality (from feedback) may be this far below stable's (absolute) before it fails.
METRIC_DEFAULTS: dict[str, float] = {
    "success-rate": 0.01,
    "p95-latency": 1.25,
    "cost-per-1k": 1.10,
    "fallback-rate": 0.05,
    "quality": 0.05,
}
# What an empty ``metrics`` compares: quality only when asked (it waits for feedback).
DEFAULT_METRICS = ("success-rate", "p95-latency", "cost-per-1k", "fallback-rate")


class AnalysisMetric(_Spec):
    name: MetricName
    threshold: Annotated[float, Field(ge=0, le=1000)] | None = None

    @property
    def limit(self) -> float:
        return METRIC_DEFAULTS[self.name] if self.threshold is None else self.threshold


def _default_metrics() -> list[AnalysisMetric]:
    return [AnalysisMetric(name=n) for n in DEFAULT_METRICS]  # type: ignore[arg-type]


class AnalysisSpec(_Spec):
    """Candidate against stable, every interval, over that interval's outcomes."""

    interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 30
    min_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    failure_limit: Annotated[int, Field(ge=1, le=100)] = 2
    # Feedback pieces each side needs before the quality metric can pass or fail.
    min_feedback: Annotated[int, Field(ge=1, le=1_000_000)] = 30
    # Empty: the four outcome metrics with their default thresholds.
    metrics: Annotated[list[AnalysisMetric], Field(max_length=5)] = Field(default_factory=list)

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, metrics: list[AnalysisMetric]) -> list[AnalysisMetric]:
        _unique([m.name for m in metrics], MSG_UNIQUE_METRICS)
        return metrics

    @property
    def checks(self) -> list[AnalysisMetric]:
        return self.metrics or _default_metrics()


class RolloutStep(_Spec):
    """Send ``weight`` percent of the policy's traffic to the candidate for ``pauseSeconds``."""

    weight: Annotated[float, Field(ge=0.01, le=100)]
    pause_seconds: Annotated[int, Field(ge=0, le=86_400)] = 60


class RolloutSpec(_Spec):
    """A new version of the policy is a candidate: canary steps, analysis, promotion."""

    stickiness: Literal["user", "session", "tenant"] = "user"
    steps: Annotated[list[RolloutStep], Field(min_length=1, max_length=20)]
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)


class OutcomesSpec(_Spec):
    """What the outcomes routers report carry beyond figures (``skyroute outcomes export``)."""

    # The request's last user message as written (its first 2,000 characters); off by default.
    prompt_text: bool = False


#: A Chat Completions parameter's name, as OpenAI spells it (``logit_bias``, ``stop``).
ParameterName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
]


class RoutingPolicySpec(_Spec):
    default: bool = False
    intents: Annotated[list[IntentSpec], Field(max_length=128)] = Field(default_factory=list)
    rules: Annotated[list[Rule], Field(max_length=64)] = Field(default_factory=list)
    default_pool: Name
    cache: CacheSpec = Field(default_factory=CacheSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    weights: WeightsSpec = Field(default_factory=WeightsSpec)
    trust_declared_intent: bool = False
    intent_min_similarity: Score = 0.6
    reliability: ReliabilitySpec = Field(default_factory=ReliabilitySpec)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    adaptation: AdaptationSpec = Field(default_factory=AdaptationSpec)
    learned_signal: LearnedSignalSpec | None = None
    outcomes: OutcomesSpec = Field(default_factory=OutcomesSpec)
    tests: Annotated[list[PolicyTest], Field(max_length=256)] = Field(default_factory=list)
    rollout: RolloutSpec | None = None
    pin_version: PolicyVersion | None = None
    # Per parameter a candidate's family cannot honour: ``skip`` that candidate (the
    # default, a hard constraint of selection) or ``drop`` the parameter for it (sent
    # without it; the answer's x-skyroute-dropped-parameters header names it).
    parameters: Annotated[dict[ParameterName, Literal["skip", "drop"]], Field(max_length=64)] = (
        Field(default_factory=dict)
    )

    @field_validator("intents")
    @classmethod
    def _unique_intents(cls, intents: list[IntentSpec]) -> list[IntentSpec]:
        _unique([i.name for i in intents], MSG_UNIQUE_INTENTS)
        return intents

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: list[Rule]) -> list[Rule]:
        _unique([r.name for r in rules], MSG_UNIQUE_RULES)
        return rules

    @field_validator("tests")
    @classmethod
    def _unique_tests(cls, tests: list[PolicyTest]) -> list[PolicyTest]:
        _unique([t.name for t in tests], MSG_UNIQUE_TESTS)
        return tests

    @model_validator(mode="after")
    def _re2(self) -> RoutingPolicySpec:
        # A policy with tests is built into a router table to run them, which refuses a
        # pattern outside RE2 with the router's own words (policytests.py); one without
        # tests is checked here with the routers' RE2 options, so it never reaches them.
        if self.tests:
            return self
        for intent in self.intents:
            for pattern in intent.patterns:
                problem = re2_error(pattern)
                if problem is not None:
                    raise rule_error(
                        f"intent {intent.name!r} pattern {pattern!r} is not valid RE2 "
                        "(routers match with RE2)",
                        problem,
                    )
        return self

    @property
    def intent_names(self) -> list[str]:
        return [i.name for i in self.intents]


# --- Tenant ------------------------------------------------------------------


class RateLimitValues(_Spec):
    """Limits of one scope; 0 = no limit of that kind."""

    requests_per_minute: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    tokens_per_minute: Annotated[int, Field(ge=0, le=1_000_000_000)] = 0
    concurrent_requests: Annotated[int, Field(ge=0, le=100_000)] = 0
    shadow: bool = False


class NamedRateLimit(RateLimitValues):
    """Limits of one policy (request model name) or one upstream model."""

    name: ModelName


class RateLimitsSpec(RateLimitValues):
    """The tenant's own limits, each key's, and per policy or model."""

    per_key: RateLimitValues | None = None
    per_policy: Annotated[list[NamedRateLimit], Field(max_length=64)] = []
    per_model: Annotated[list[NamedRateLimit], Field(max_length=64)] = []


class BudgetSpec(_Spec):
    name: Name
    usd: Annotated[float, Field(ge=0.01, le=100_000_000)]
    period: Literal["day", "month", "total"] = "month"
    action: Literal["reject", "route"] = "reject"
    pool: Name | None = None
    soft_share: Annotated[float, Field(ge=0, le=1)] = 0.8
    shadow: bool = False


class ServiceAccountBinding(_Spec):
    namespace: Name
    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=NAME_PATTERN)]


class ApiKeySpec(_Spec):
    """A key by its public id and digest (``skyroute keys create`` writes these)."""

    id: Annotated[str, StringConstraints(min_length=12, max_length=12, pattern=KEY_ID_PATTERN)]
    digest: Annotated[
        str, StringConstraints(min_length=71, max_length=71, pattern=KEY_DIGEST_PATTERN)
    ]
    expires_at: (
        Annotated[str, StringConstraints(min_length=20, max_length=20, pattern=TIMESTAMP_PATTERN)]
        | None
    ) = None
    revoked: bool = False


class TenantSpec(_Spec):
    tier: Tier | None = None
    policies: Annotated[
        list[
            Annotated[
                str, StringConstraints(min_length=1, max_length=63, pattern=POLICY_REF_PATTERN)
            ]
        ],
        Field(min_length=1, max_length=256),
    ]
    delegate: bool = False
    service_accounts: Annotated[list[ServiceAccountBinding], Field(max_length=64)] = []
    rate_limits: RateLimitsSpec | None = None
    budgets: Annotated[list[BudgetSpec], Field(max_length=8)] = []
    redis_down: Literal["failOpen", "failClosed"] = "failOpen"
    keys: Annotated[list[ApiKeySpec], Field(max_length=64)] = []


# --- Top-level objects -------------------------------------------------------


class ObjectMeta(BaseModel):
    """The part of ``metadata`` the control plane reads; labels and the rest pass."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    name: Name
    namespace: Name = "default"


class _Object(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )

    api_version: Literal["skyroute.io/v1alpha1"]
    metadata: ObjectMeta
    # Written by the operator (kopf) on a cluster; never read as input.
    status: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        """``namespace/name``, as kubectl prints it."""
        return f"{self.metadata.namespace}/{self.metadata.name}"


class ModelPool(_Object):
    kind: Literal["ModelPool"]
    spec: ModelPoolSpec


class RoutingPolicy(_Object):
    kind: Literal["RoutingPolicy"]
    spec: RoutingPolicySpec


class TenantResource(_Object):
    kind: Literal["Tenant"]
    spec: TenantSpec


MODELS: dict[str, type[ModelPool] | type[RoutingPolicy] | type[TenantResource]] = {
    KIND_POOL: ModelPool,
    KIND_POLICY: RoutingPolicy,
    KIND_TENANT: TenantResource,
}


def _field_aliases() -> dict[str, str]:
    found: dict[str, str] = {}
    todo: list[type[BaseModel]] = [*_Spec.__subclasses__(), *_Object.__subclasses__()]
    for cls in todo:
        for name, info in cls.model_fields.items():
            if info.alias and info.alias != name:
                found[name] = info.alias
    return found


# Python field name -> wire name. pydantic reports an error found while validating a
# default (validate_default) under the Python name; problems must use the wire name.
FIELD_ALIASES = _field_aliases()
