"""The CRDs are structural, capped, and say exactly what the pydantic models say.

Without an API server here, three independent checks stand in for one:
the schemas are walked for the structural rules (type everywhere, maxItems on
every list, maxLength on every string); the examples are validated against
the OpenAPI part by a small validator that also applies the CRD defaults;
and every CEL rule is evaluated with cel-python (a CEL implementation using
RE2, like the API server's) on the examples (must hold) and on one bad input
per rule (must fail), while the pydantic models must reject that same input
with the same message. Finally the pydantic JSON schema is compared with the
CRD schema field by field: lengths, list sizes, ranges, enums, patterns,
defaults and required fields.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from skyroute import families
from skyroute.control.policy import model
from skyroute.control.policy.errors import PolicyError
from skyroute.control.policy.loader import SourceDocument
from skyroute.control.policy.validate import validate

ROOT = Path(__file__).resolve().parents[2]
CRDS = {
    "ModelPool": ROOT / "crds" / "modelpool.yaml",
    "RoutingPolicy": ROOT / "crds" / "routingpolicy.yaml",
    "Tenant": ROOT / "crds" / "tenant.yaml",
}
EXAMPLES = [
    ROOT / "examples" / "acmeshop" / "pools.yaml",
    ROOT / "examples" / "acmeshop" / "policy.yaml",
    ROOT / "examples" / "tenants" / "acmeshop.yaml",
]
# FieldValueDuplicate is left out on purpose: the API server then prints
# 'Duplicate value: "array"' and drops the rule's message.
REASONS = {"FieldValueRequired", "FieldValueInvalid", "FieldValueForbidden"}
Schema = dict[str, Any]


def crd(kind: str) -> Schema:
    return yaml.safe_load(CRDS[kind].read_text())  # type: ignore[no-any-return]


def root_schema(kind: str) -> Schema:
    return crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def examples() -> list[dict[str, Any]]:
    return [d for f in EXAMPLES for d in yaml.safe_load_all(f.read_text()) if d]


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


# --- structure ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_is_structural_and_capped(kind: str) -> None:
    doc = crd(kind)
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    spec = doc["spec"]
    assert spec["group"] == "skyroute.io" and spec["scope"] == "Namespaced"
    assert doc["metadata"]["name"] == f"{spec['names']['plural']}.skyroute.io"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["shortNames"] == [
        {"ModelPool": "mp", "RoutingPolicy": "rp", "Tenant": "tn"}[kind]
    ]
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = version["additionalPrinterColumns"]
    assert {"Version", "Ready", "Age"} <= {c["name"] for c in columns}
    assert all(c["jsonPath"].startswith(".") for c in columns)
    problems = []
    for path, node in walk(version["schema"]["openAPIV3Schema"]):
        if "type" not in node:
            problems.append(f"{path}: no type")
        if node.get("type") == "array" and ("maxItems" not in node or "items" not in node):
            problems.append(f"{path}: array without maxItems or items")
        capped = {"maxLength", "enum"} & node.keys() or node.get("format") == "date-time"
        if node.get("type") == "string" and path not in (".apiVersion", ".kind") and not capped:
            problems.append(f"{path}: string without maxLength")
        if isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
            problems.append(f"{path}: map without maxProperties")
        for rule in node.get("x-kubernetes-validations", []):
            if not rule.get("rule") or not rule.get("message") or "\n" in rule["message"]:
                problems.append(f"{path}: CEL rule without a one-line message")
            if rule.get("reason", "FieldValueInvalid") not in REASONS:
                problems.append(f"{path}: unknown reason {rule['reason']}")
            field = rule.get("fieldPath")
            if field is not None and field.lstrip(".") not in node.get("properties", {}):
                problems.append(f"{path}: fieldPath {field} is not a property")
    assert not problems, problems


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_status_allows_what_kopf_writes(kind: str) -> None:
    status = root_schema(kind)["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert {"conditions", "observedGeneration", "version"} <= status["properties"].keys()
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


# --- a small OpenAPI validator with defaulting --------------------------------


_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def openapi_errors(schema: Schema, value: object, path: str = "") -> list[str]:
    """Validate and apply defaults in place, as the API server does before CEL runs."""
    errors: list[str] = []
    kind = schema.get("type")
    if kind and not _TYPES[kind](value):
        return [f"{path}: not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", 10**9) or len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: length")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: pattern")
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and not schema.get("minimum", -1e18) <= value <= schema.get("maximum", 1e18):  # type: ignore[operator]
        errors.append(f"{path}: range")
    if isinstance(value, list):
        if len(value) > schema["maxItems"] or len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: item count")
        for i, item in enumerate(value):
            errors += openapi_errors(schema["items"], item, f"{path}[{i}]")
            if schema["items"].get("type") == "number" and isinstance(item, int):
                value[i] = float(item)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        extra = schema.get("additionalProperties")
        if len(value) > schema.get("maxProperties", 10**9):
            errors.append(f"{path}: too many properties")
        for name, item in value.items():
            sub = props.get(name) or (extra if isinstance(extra, dict) else None)
            if sub is None:
                if not schema.get("x-kubernetes-preserve-unknown-fields") and path != ".metadata":
                    errors.append(f"{path}.{name}: unknown field")
                continue
            errors += openapi_errors(sub, item, f"{path}.{name}")
            if sub.get("type") == "number" and isinstance(item, int) and not isinstance(item, bool):
                value[name] = float(item)
    return errors


def cel_failures(schema: Schema, value: object, path: str = "") -> list[tuple[str, str]]:
    """(path, message) of every CEL rule that does not hold, evaluated bottom-up."""
    failures: list[tuple[str, str]] = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            sub = props.get(name) or (extra if isinstance(extra, dict) else None)
            if sub is not None:
                failures += cel_failures(sub, item, f"{path}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            failures += cel_failures(schema["items"], item, f"{path}[{i}]")
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        if not bool(program.evaluate({"self": celpy.json_to_cel(value)})):
            failures.append((path + rule.get("fieldPath", ""), rule["message"]))
    return failures


def on_cluster(obj: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    obj = copy.deepcopy(obj)
    schema = root_schema(obj["kind"])
    errors = openapi_errors(schema, obj)
    return errors, ([] if errors else cel_failures(schema, obj))


def off_cluster(objs: list[dict[str, Any]]) -> list[str]:
    docs = [SourceDocument(file="x.yaml", index=i, data=o) for i, o in enumerate(objs)]
    try:
        validate(docs)
    except PolicyError as exc:
        return [f"{p.path}: {p.message}" for p in exc.problems]
    return []


def test_examples_pass_openapi_and_every_cel_rule() -> None:
    for obj in examples():
        assert on_cluster(obj) == ([], []), obj["metadata"]["name"]
    assert off_cluster(examples()) == []


def test_the_validator_and_cel_checks_can_fail() -> None:
    pool = next(o for o in examples() if o["kind"] == "ModelPool")
    bad = copy.deepcopy(pool)
    bad["spec"]["models"][0]["provider"] = "gemeni"
    bad["spec"]["models"][0]["extra"] = 1
    errors, _ = on_cluster(bad)
    assert f".spec.models[0].provider: not one of {list(families.FAMILY_NAMES)}" in errors
    assert ".spec.models[0].extra: unknown field" in errors


# One bad input per CEL rule: (kind, mutation, the rule's message, off-cluster field path).
Mutation = Callable[[dict[str, Any]], None]


def _set(path: list[str | int], value: object) -> Mutation:
    def apply(obj: dict[str, Any]) -> None:
        node: Any = obj
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


def _flash() -> dict[str, Any]:
    return {
        "name": "gemini-3-flash",
        "provider": "gemini",
        "endpoint": "http://127.0.0.1:1/g",
        "pricing": {"inputPerMTok": 0.5, "outputPerMTok": 3},
    }


def _dup_model(obj: dict[str, Any]) -> None:
    obj["spec"]["models"][1]["name"] = obj["spec"]["models"][0]["name"]


def _dup_intent(obj: dict[str, Any]) -> None:
    obj["spec"]["intents"][1]["name"] = obj["spec"]["intents"][0]["name"]


def _dup_rule(obj: dict[str, Any]) -> None:
    obj["spec"]["rules"][1]["name"] = obj["spec"]["rules"][0]["name"]


def _no_signal(obj: dict[str, Any]) -> None:
    obj["spec"]["intents"][0] = {"name": obj["spec"]["intents"][0]["name"]}


def _case(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "request": {"prompt": "where is my order"},
        "expect": {"pool": "standard"},
    }


def _sites(*extra: dict[str, Any], provider: str = "gemini") -> Mutation:
    sites = [{"name": "east", "url": "http://127.0.0.1:1/g"}, *extra]
    flash = {k: v for k, v in _flash().items() if k != "endpoint"}
    return _set(["spec", "models", 0], {**flash, "provider": provider, "endpoints": sites})


def _regional(*regions: str) -> list[dict[str, Any]]:
    """Endpoints at one URL that names {region}, one per region given."""
    url = "https://bedrock-runtime.{region}.amazonaws.com"
    return [{"name": f"r{i}", "url": url, "region": r} for i, r in enumerate(regions)]


def test_one_region_templated_url_in_several_regions_is_several_endpoints() -> None:
    objs = examples()
    target = next(o for o in objs if o["metadata"]["name"] == "cost")
    _sites(*_regional("us-east1", "eu-west-1"), provider="bedrock")(target)
    target["spec"]["models"][0]["auth"] = "aws"
    assert on_cluster(target) == ([], [])
    assert off_cluster(objs) == []


ENDPOINT_CASES: list[tuple[str, Mutation, str, str]] = [
    ("cost", _set(["spec", "models", 0, "endpoints"], [{"name": "a", "url": "http://a"}]),
     model.MSG_ONE_ENDPOINT_FORM, "spec.models[0]"),
    ("cost", _sites({"name": "east", "url": "http://127.0.0.1:2/g"}),
     model.MSG_UNIQUE_ENDPOINT_NAMES, "spec.models[0].endpoints"),
    ("cost", _sites({"name": "west", "url": "http://127.0.0.1:1/g"}),
     model.MSG_UNIQUE_ENDPOINT_URLS, "spec.models[0].endpoints"),
    ("cost", _sites(*_regional("us-east1", "us-east1"), provider="bedrock"),
     model.MSG_UNIQUE_ENDPOINT_URLS, "spec.models[0].endpoints"),
    ("cost", _sites({"name": "west", "url": "http://b", "deployment": "d"}),
     model.MSG_DEPLOYMENT, "spec.models[0].endpoints"),
]  # fmt: skip

CEL_CASES: list[tuple[str, Mutation, str, str]] = [
    ("cost", _dup_model, model.MSG_UNIQUE_MODELS, "spec.models"),
    (
        "cost",
        _set(["spec", "models", 0], {**_flash(), "contextWindow": 1000, "maxOutputTokens": 2000}),
        model.MSG_MAX_OUTPUT,
        "spec.models[0].maxOutputTokens",
    ),
    ("cost", _set(["spec", "models", 0, "apiKey"], {}), model.MSG_API_KEY, "spec.models[0].apiKey"),
    (
        "cost",
        _set(["spec", "models", 0], {**_flash(), "apiVersion": "2024-10-21"}),
        model.MSG_API_VERSION,
        "spec.models[0].apiVersion",
    ),
    *ENDPOINT_CASES,
    (
        "cost",
        _set(["spec", "models", 0], {**_flash(), "auth": "entra"}),
        model.MSG_AUTH,
        "spec.models[0].auth",
    ),
    (
        "cost",
        _set(
            ["spec", "models", 0],
            {**_flash(), "provider": "azure-openai", "auth": "entra", "apiKey": {"env": "K"}},
        ),
        model.MSG_API_KEY_AUTH,
        "spec.models[0].apiKey",
    ),
    (
        "cost",
        _set(["spec", "models", 0], {**_flash(), "region": "us-central1"}),
        model.MSG_REGION,
        "spec.models[0].region",
    ),
    (
        "cost",
        _set(["spec", "models", 0], {**_flash(), "project": "acme-prod"}),
        model.MSG_PROJECT,
        "spec.models[0].project",
    ),
    (
        "cost",
        _set(
            ["spec", "models", 0],
            {**_flash(), "provider": "vertex-gemini", "auth": "google", "region": "us-central1"},
        ),
        model.MSG_PROJECT_REQUIRED,
        "spec.models[0]",
    ),
    (
        "acmeshop",
        _set(["spec", "learnedSignal"], {"strong": "gpt-4o", "weak": "gpt-4o"}),
        model.MSG_LEARNED_PAIR,
        "spec.learnedSignal.weak",
    ),
    (
        "cost",
        _set(["spec", "models", 0], {**_flash(), "quirks": ["ignores-n"]}),
        model.MSG_QUIRKS,
        "spec.models[0].quirks",
    ),
    ("acmeshop", _dup_intent, model.MSG_UNIQUE_INTENTS, "spec.intents"),
    ("acmeshop", _no_signal, model.MSG_INTENT_SIGNAL, "spec.intents[0]"),
    ("acmeshop", _dup_rule, model.MSG_UNIQUE_RULES, "spec.rules"),
    (
        "acmeshop",
        _set(
            ["spec", "rules", 0, "match"],
            {"intents": ["safety.*"], "minPromptTokens": 500, "maxPromptTokens": 100},
        ),
        model.MSG_PROMPT_BOUNDS,
        "spec.rules[0].match.maxPromptTokens",
    ),
    (
        "acmeshop",
        _set(["spec", "cache"], {"enabled": True}),
        model.MSG_CACHE_INTENTS,
        "spec.cache.intents",
    ),
    (
        "acmeshop",
        _set(["spec", "limits"], {"requestTimeoutMs": 1000}),
        model.MSG_FIRST_TOKEN,
        "spec.limits.firstTokenTimeoutMs",
    ),
    (
        "acmeshop",
        _set(["spec", "weights"], {"cost": 0, "latency": 0, "success": 0, "quality": 0}),
        model.MSG_WEIGHTS,
        "spec.weights",
    ),
    (
        "acmeshop",
        _set(["spec", "tests"], [_case("a"), _case("a")]),
        model.MSG_UNIQUE_TESTS,
        "spec.tests",
    ),
    (
        "acmeshop",
        _set(["spec", "tests"], [{**_case("a"), "expect": {}}]),
        model.MSG_TEST_EXPECT,
        "spec.tests[0].expect",
    ),
    (
        "acmeshop",
        _set(
            ["spec", "rollout"],
            {
                "steps": [{"weight": 5}],
                "analysis": {
                    "metrics": [{"name": "p95-latency"}, {"name": "p95-latency", "threshold": 2}]
                },
            },
        ),
        model.MSG_UNIQUE_METRICS,
        "spec.rollout.analysis.metrics",
    ),
]


def test_every_cel_rule_has_a_case_and_a_pydantic_twin() -> None:
    in_crds = {
        rule["message"]
        for kind in CRDS
        for _, node in walk(root_schema(kind))
        for rule in node.get("x-kubernetes-validations", [])
    }
    assert in_crds == set(model.CEL_MESSAGES)
    assert {case[2] for case in CEL_CASES} == in_crds


def test_cloud_rules_are_the_ones_derived_from_the_contract_tables() -> None:
    # crds/modelpool.yaml spells the auth, region and project rules out; model.py derives
    # them from skyroute.families: a family added there without the CRD fails here.
    item = root_schema("ModelPool")["properties"]["spec"]["properties"]["models"]["items"]
    rules = {r["message"]: r["rule"] for r in item["x-kubernetes-validations"]}
    assert rules[model.MSG_AUTH] == model.RULE_AUTH
    assert rules[model.MSG_REGION] == model.RULE_REGION
    assert rules[model.MSG_PROJECT] == model.RULE_PROJECT
    assert rules[model.MSG_PROJECT_REQUIRED] == model.RULE_PROJECT_REQUIRED
    assert rules[model.MSG_QUIRKS] == model.RULE_QUIRKS
    assert item["properties"]["quirks"]["items"]["enum"] == list(families.QUIRK_NAMES)
    assert item["properties"]["provider"]["enum"] == list(families.FAMILY_NAMES)
    assert item["properties"]["auth"]["enum"] == list(families.AUTH_NAMES)
    assert set(families.FAMILY_NAMES) <= set(families.FAMILY_AUTH)


@pytest.mark.parametrize("name,mutate,message,path", CEL_CASES, ids=[c[2][:40] for c in CEL_CASES])
def test_cel_rule_and_pydantic_reject_alike(
    name: str, mutate: Mutation, message: str, path: str
) -> None:
    objs = examples()
    target = next(o for o in objs if o["metadata"]["name"] == name)
    mutate(target)
    errors, failures = on_cluster(target)
    assert errors == []
    assert [m for _, m in failures] == [message], failures
    assert failures[0][0] == "." + path
    found = off_cluster(objs)
    assert any(f.startswith(f"{path}: {message}") for f in found), found


# --- the pydantic models mirror the CRD schemas ------------------------------

_COMPARED = (
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "maxProperties",
    "enum",
)


def _resolve(node: Schema, defs: Schema) -> Schema:
    while "$ref" in node:
        node = {
            **defs[node["$ref"].rsplit("/", 1)[-1]],
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        node = {**_resolve(options[0], defs), **{k: v for k, v in node.items() if k != "anyOf"}}
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    bound = node.get("exclusiveMinimum")
    if isinstance(bound, int | float) and not isinstance(bound, bool):
        # JSON Schema's exclusiveMinimum: N is a v1 CRD's minimum: N, exclusiveMinimum: true.
        node = {**node, "minimum": bound, "exclusiveMinimum": True}
    return node


def _mirror(crd_node: Schema, py: Schema, defs: Schema, path: str, out: list[str]) -> None:
    py = _resolve(py, defs)
    if crd_node.get("type") != py.get("type"):
        out.append(f"{path}: type {crd_node.get('type')} != {py.get('type')}")
    for key in _COMPARED:
        if crd_node.get(key) != py.get(key):
            out.append(f"{path}: {key} {crd_node.get(key)!r} != {py.get(key)!r}")
    scalar_default = "default" in crd_node and not isinstance(crd_node["default"], dict)
    if scalar_default and crd_node["default"] != py.get("default"):
        out.append(f"{path}: default {crd_node['default']!r} != {py.get('default')!r}")
    if crd_node.get("type") == "object" and "properties" in crd_node:
        props = py.get("properties", {})
        if set(crd_node["properties"]) != set(props):
            out.append(f"{path}: fields {sorted(crd_node['properties'])} != {sorted(props)}")
        if set(crd_node.get("required", [])) != set(py.get("required", [])):
            out.append(f"{path}: required {crd_node.get('required')} != {py.get('required')}")
        for name, sub in crd_node["properties"].items():
            if name in props:
                _mirror(sub, props[name], defs, f"{path}.{name}", out)
    if "items" in crd_node:
        _mirror(crd_node["items"], py.get("items", {}), defs, f"{path}[]", out)
    if isinstance(crd_node.get("additionalProperties"), dict):
        # pydantic puts a constrained key type in patternProperties: one pattern, one schema.
        patterned = list(py.get("patternProperties", {}).values())
        values = py.get("additionalProperties") or (patterned[0] if patterned else {})
        _mirror(crd_node["additionalProperties"], values, defs, f"{path}{{}}", out)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_pydantic_model_mirrors_the_crd_schema(kind: str) -> None:
    cls = model.MODELS[kind]
    py = cls.model_json_schema(by_alias=True)
    spec_py = py["properties"]["spec"]
    out: list[str] = []
    _mirror(root_schema(kind)["properties"]["spec"], spec_py, py.get("$defs", {}), "spec", out)
    assert out == []
