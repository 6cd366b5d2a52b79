"""Scenario files: what each simulated model does, parsed once and validated strictly.

A scenario is the simulator's whole personality: how fast each model answers,
how long its answers are, how often and how it fails, and when incidents
(bursts) happen. It is parsed once, at start-up or on ``PUT /_sim/scenario``,
into frozen dataclasses whose derived numbers (lognormal parameters,
cumulative error weights) are computed here, so that the per-request path in
:mod:`skyroute.simulator.engine` does arithmetic only and never touches YAML.

The file format is documented field by field in the comment block at the top
of ``examples/simulator/acmeshop.yaml``; this module is its single parser.
Unknown keys are rejected with their full path (``models.gpt-5.2.ttft_ms.p99``)
because a silently ignored typo in a failure scenario makes a benchmark lie.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from skyroute.simulator.entra import EntraConfig

#: Every failure kind a scenario may name, with the HTTP status it maps to
#: (0 = no status: the failure is in the transport, not in an error response).
ERROR_STATUS: dict[str, int] = {
    "server_error": 500,
    "unavailable": 503,
    "overloaded": 529,
    "rate_limited": 429,
    "bad_request": 400,
    "context_length": 400,
    "content_filter": 400,
    "auth": 401,
    "not_found": 404,  # no such model / deployment (each family's own 404 body)
    "timeout": 0,
    "stream_cut": 0,
    "stall": 0,
    "bad_response": 200,
}
ERROR_KINDS = tuple(ERROR_STATUS)

# z-score of the 95th percentile of a standard normal distribution.
_Z95 = 1.6448536269514722


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the offending path."""


@dataclass(frozen=True, slots=True)
class LogNormal:
    """A lognormal distribution given by its median and 95th percentile."""

    p50: float
    p95: float
    mu: float
    sigma: float

    @classmethod
    def of(cls, p50: float, p95: float) -> LogNormal:
        return cls(p50, p95, math.log(p50), math.log(p95 / p50) / _Z95)


@dataclass(frozen=True, slots=True)
class TokenDist:
    """Completion length: lognormal, clipped to ``[low, high]``."""

    shape: LogNormal
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Profile:
    """How one model behaves (see the scenario file's comment block)."""

    ttft_ms: LogNormal
    tokens_per_s: float
    completion_tokens: TokenDist
    stream_chunk_tokens: int
    context_window: int
    error_rate: float
    errors: tuple[tuple[str, float], ...]
    error_latency_ms: LogNormal
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class Burst:
    """A timed incident on some models, in scenario seconds."""

    patterns: tuple[str, ...]
    start_s: float
    duration_s: float
    every_s: float | None
    error_rate: float | None
    errors: tuple[tuple[str, float], ...] | None
    latency_multiplier: float

    def applies_to(self, model: str) -> bool:
        return any(p == "*" or fnmatch.fnmatchcase(model, p) for p in self.patterns)

    def active(self, t: float) -> bool:
        if t < self.start_s:
            return False
        since = t - self.start_s
        if self.every_s is not None:
            since %= self.every_s
        return since < self.duration_s


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int
    time_scale: float
    hang_s: float
    api_key: str | None
    defaults: Profile
    models: dict[str, Profile]
    patterns: tuple[tuple[str, Profile], ...]
    bursts: tuple[Burst, ...]
    entra: EntraConfig | None = None  # the Entra ID app registration (simulator/entra.py)

    def profile_for(self, model: str) -> Profile:
        exact = self.models.get(model)
        if exact is not None:
            return exact
        for pattern, profile in self.patterns:
            if fnmatch.fnmatchcase(model, pattern):
                return profile
        return self.defaults


BUILTIN_DEFAULTS: dict[str, Any] = {
    "ttft_ms": {"p50": 300, "p95": 800},
    "tokens_per_s": 100,
    "completion_tokens": {"p50": 60, "p95": 150, "min": 1, "max": 1024},
    "stream_chunk_tokens": 4,
    "context_window": 128000,
    "error_rate": 0.0,
    "errors": {"server_error": 1},
    "error_latency_ms": {"p50": 40, "p95": 150},
    "retry_after_s": 1,
}
_NESTED = ("ttft_ms", "completion_tokens", "error_latency_ms")
_TOP_KEYS = {"seed", "time_scale", "hang_s", "api_key", "defaults", "models", "bursts", "entra"}
_ENTRA_KEYS = {"tenant_id", "client_id", "federated_token", "client_secret", "token_ttl_s"}
_BURST_KEYS = {
    "models",
    "start_s",
    "duration_s",
    "every_s",
    "error_rate",
    "errors",
    "latency_multiplier",
}


def load_scenario(text: str | bytes, source: str = "scenario") -> Scenario:
    """Parse YAML (or JSON, a subset) text into a :class:`Scenario`."""
    try:
        is_json = text.lstrip()[:1] in ("{", b"{")
        data = orjson.loads(text) if is_json else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{source}: not valid YAML/JSON: {exc}") from None
    return parse_scenario(data if data is not None else {}, source)


def load_scenario_file(path: str) -> Scenario:
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path!r}: {exc.strerror}") from None
    return load_scenario(text, path)


def parse_scenario(data: Any, source: str = "scenario") -> Scenario:
    """Validate an already-decoded scenario mapping."""
    top = _mapping(data, source)
    _no_unknown(top, _TOP_KEYS, source)
    defaults_raw = _merge(BUILTIN_DEFAULTS, _mapping(top.get("defaults", {}), f"{source}.defaults"))
    defaults = _profile(defaults_raw, f"{source}.defaults")
    models: dict[str, Profile] = {}
    patterns: list[tuple[str, Profile]] = []
    for name, raw in _mapping(top.get("models", {}), f"{source}.models").items():
        path = f"{source}.models.{name}"
        profile = _profile(_merge(defaults_raw, _mapping(raw or {}, path)), path)
        if any(ch in str(name) for ch in "*?["):
            patterns.append((str(name), profile))
        else:
            models[str(name)] = profile
    bursts_raw = top.get("bursts", [])
    if not isinstance(bursts_raw, list):
        raise ScenarioError(f"{source}.bursts: expected a list, got {type(bursts_raw).__name__}")
    bursts = tuple(_burst(b, f"{source}.bursts[{i}]") for i, b in enumerate(bursts_raw))
    api_key = top.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise ScenarioError(f"{source}.api_key: expected a string or null")
    return Scenario(
        seed=int(_number(top.get("seed", 0), f"{source}.seed", integer=True)),
        time_scale=_number(top.get("time_scale", 1.0), f"{source}.time_scale", positive=True),
        hang_s=_number(top.get("hang_s", 300.0), f"{source}.hang_s", positive=True),
        api_key=api_key,
        defaults=defaults,
        models=models,
        patterns=tuple(patterns),
        bursts=bursts,
        entra=_entra(top["entra"], f"{source}.entra") if top.get("entra") is not None else None,
    )


def _entra(raw: Any, path: str) -> EntraConfig:
    d = _mapping(raw, path)
    _no_unknown(d, _ENTRA_KEYS, path)
    strings: dict[str, str | None] = {}
    for key in ("tenant_id", "client_id", "federated_token", "client_secret"):
        value = d.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ScenarioError(f"{path}.{key}: expected a non-empty string")
        strings[key] = value
    tenant, client = strings["tenant_id"], strings["client_id"]
    if tenant is None or client is None:
        raise ScenarioError(f"{path}: tenant_id and client_id are required")
    return EntraConfig(
        tenant_id=tenant,
        client_id=client,
        federated_token=strings["federated_token"],
        client_secret=strings["client_secret"],
        token_ttl_s=_number(d.get("token_ttl_s", 3600), f"{path}.token_ttl_s", positive=True),
    )


def _profile(raw: dict[str, Any], path: str) -> Profile:
    _no_unknown(raw, set(BUILTIN_DEFAULTS), path)
    tokens = _mapping(raw["completion_tokens"], f"{path}.completion_tokens")
    _no_unknown(tokens, {"p50", "p95", "min", "max"}, f"{path}.completion_tokens")
    low = int(_number(tokens.get("min", 1), f"{path}.completion_tokens.min", integer=True))
    high = int(_number(tokens.get("max", 1024), f"{path}.completion_tokens.max", integer=True))
    if not 1 <= low <= high:
        raise ScenarioError(f"{path}.completion_tokens: need 1 <= min <= max, got {low}..{high}")
    chunk = _number(raw["stream_chunk_tokens"], f"{path}.stream_chunk_tokens", integer=True)
    window = _number(raw["context_window"], f"{path}.context_window", integer=True)
    if chunk < 1 or window < 1:
        raise ScenarioError(f"{path}: stream_chunk_tokens and context_window must be >= 1")
    return Profile(
        ttft_ms=_lognormal(raw["ttft_ms"], f"{path}.ttft_ms"),
        tokens_per_s=_number(raw["tokens_per_s"], f"{path}.tokens_per_s", positive=True),
        completion_tokens=TokenDist(
            _lognormal(tokens, f"{path}.completion_tokens", extra={"min", "max"}), low, high
        ),
        stream_chunk_tokens=int(chunk),
        context_window=int(window),
        error_rate=_rate(raw["error_rate"], f"{path}.error_rate"),
        errors=_mix(raw["errors"], f"{path}.errors"),
        error_latency_ms=_lognormal(raw["error_latency_ms"], f"{path}.error_latency_ms"),
        retry_after_s=_number(raw["retry_after_s"], f"{path}.retry_after_s", positive=True),
    )


def _burst(raw: Any, path: str) -> Burst:
    b = _mapping(raw, path)
    _no_unknown(b, _BURST_KEYS, path)
    models = b.get("models", ["*"])
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models) or not models:
        raise ScenarioError(f"{path}.models: expected a non-empty list of model names")
    if "start_s" not in b or "duration_s" not in b:
        raise ScenarioError(f"{path}: start_s and duration_s are required")
    every = b.get("every_s")
    duration = _number(b["duration_s"], f"{path}.duration_s", positive=True)
    every_s = None if every is None else _number(every, f"{path}.every_s", positive=True)
    if every_s is not None and every_s < duration:
        raise ScenarioError(f"{path}.every_s: must be >= duration_s ({duration})")
    start = _number(b["start_s"], f"{path}.start_s")
    if start < 0:
        raise ScenarioError(f"{path}.start_s: must be >= 0")
    rate = b.get("error_rate")
    mix = b.get("errors")
    return Burst(
        patterns=tuple(models),
        start_s=start,
        duration_s=duration,
        every_s=every_s,
        error_rate=None if rate is None else _rate(rate, f"{path}.error_rate"),
        errors=None if mix is None else _mix(mix, f"{path}.errors"),
        latency_multiplier=_number(
            b.get("latency_multiplier", 1.0), f"{path}.latency_multiplier", positive=True
        ),
    )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if key in _NESTED and isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = {**base[key], **value}
        else:
            out[key] = value
    return out


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{path}: expected a mapping, got {type(value).__name__}")
    return value


def _no_unknown(d: dict[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        raise ScenarioError(
            f"{path}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def _number(value: Any, path: str, *, positive: bool = False, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{path}: expected a number, got {value!r}")
    if integer and not float(value).is_integer():
        raise ScenarioError(f"{path}: expected an integer, got {value!r}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ScenarioError(f"{path}: expected a {'positive ' if positive else ''}number")
    return float(value)


def _rate(value: Any, path: str) -> float:
    rate = _number(value, path)
    if not 0.0 <= rate <= 1.0:
        raise ScenarioError(f"{path}: expected a probability in [0, 1], got {rate}")
    return rate


def _lognormal(value: Any, path: str, extra: set[str] | None = None) -> LogNormal:
    d = _mapping(value, path)
    _no_unknown(d, {"p50", "p95"} | (extra or set()), path)
    if "p50" not in d or "p95" not in d:
        raise ScenarioError(f"{path}: p50 and p95 are required")
    p50 = _number(d["p50"], f"{path}.p50", positive=True)
    p95 = _number(d["p95"], f"{path}.p95", positive=True)
    if p95 < p50:
        raise ScenarioError(f"{path}: p95 ({p95}) must be >= p50 ({p50})")
    return LogNormal.of(p50, p95)


def _mix(value: Any, path: str) -> tuple[tuple[str, float], ...]:
    d = _mapping(value, path)
    out: list[tuple[str, float]] = []
    for kind, weight in d.items():
        if kind not in ERROR_STATUS:
            raise ScenarioError(
                f"{path}.{kind}: unknown error kind (known: {', '.join(ERROR_KINDS)})"
            )
        w = _number(weight, f"{path}.{kind}")
        if w < 0:
            raise ScenarioError(f"{path}.{kind}: weight must be >= 0")
        if w > 0:
            out.append((str(kind), w))
    if not out:
        raise ScenarioError(f"{path}: needs at least one kind with a positive weight")
    return tuple(out)
