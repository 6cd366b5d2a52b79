"""The policy reference (``docs/policy-reference.md``), generated from the CRD schemas.

The CRDs in ``crds/`` are the one truth about every field of a RoutingPolicy
and a ModelPool: type, default, limits, allowed values, description, and the
cross-field (CEL) rules. This module walks their OpenAPI schemas and writes
one table row per field, with an example value taken from the AcmeShop
example objects (``examples/acmeshop/``) where they set the field, else one
derived from the schema (marked as such). ``tests/cli/test_reference.py``
regenerates it and fails when the checked-in file is stale, so the reference
cannot drift from the schemas.

Run ``python -m skyroute.cli.reference`` (or ``make reference``) to rewrite it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"
EXAMPLES = REPO / "examples" / "acmeshop"
OUTPUT = REPO / "docs" / "policy-reference.md"
KINDS = ("RoutingPolicy", "ModelPool", "Tenant")
# Tenant examples live apart (they name the acmeshop policies; see examples/tenants/).
TENANT_EXAMPLES = REPO / "examples" / "tenants"
Schema = dict[str, Any]
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Field:
    path: str
    schema: Schema
    required: bool


def _schemas(crds: Path) -> dict[str, Schema]:
    found: dict[str, Schema] = {}
    for f in sorted(crds.glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        kind = doc["spec"]["names"]["kind"]
        found[kind] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return found


def _examples(folder: Path) -> dict[str, list[Any]]:
    by_kind: dict[str, list[Any]] = {}
    for f in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and "kind" in doc:
                by_kind.setdefault(doc["kind"], []).append(doc.get("spec"))
    return by_kind


def _fields(schema: Schema, path: str = "spec") -> Iterator[Field]:
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        here = f"{path}.{name}"
        yield Field(here, sub, name in required)
        yield from _children(sub, here)


def _children(schema: Schema, path: str) -> Iterator[Field]:
    if schema.get("type") == "object" and "properties" in schema:
        yield from _fields(schema, path)
    elif schema.get("type") == "array" and "items" in schema:
        items = schema["items"]
        if items.get("type") == "object" and "properties" in items:
            yield from _fields(items, path + "[]")
    elif isinstance(schema.get("additionalProperties"), dict):
        yield from _children(schema["additionalProperties"], path + ".<name>")


def _lookup(value: Any, parts: list[str]) -> Iterator[Any]:
    """Every value at ``parts`` (``x[]`` walks a list, ``<name>`` every map value)."""
    if not parts:
        yield value
        return
    head, rest = parts[0], parts[1:]
    if head == "<name>":
        if isinstance(value, dict):
            for v in value.values():
                yield from _lookup(v, rest)
        return
    many = head.endswith("[]")
    key = head[:-2] if many else head
    if not isinstance(value, dict) or key not in value:
        return
    got = value[key]
    if many and isinstance(got, list):
        for item in got:
            yield from _lookup(item, rest)
    elif not many:
        yield from _lookup(got, rest)


def _type(schema: Schema) -> str:
    t = str(schema.get("type", "any"))
    if t == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if t == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type(schema['additionalProperties'])}"
    if "format" in schema:
        t += f" ({schema['format']})"
    return t


def _limits(schema: Schema) -> str:
    out: list[str] = []
    if "enum" in schema:
        out.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "minimum" in schema or "maximum" in schema:
        out.append(f"{schema.get('minimum', '-inf')} to {schema.get('maximum', 'inf')}")
    if "minLength" in schema or "maxLength" in schema:
        out.append(f"length {schema.get('minLength', 0)} to {schema.get('maxLength', 'any')}")
    if "minItems" in schema or "maxItems" in schema:
        out.append(f"{schema.get('minItems', 0)} to {schema.get('maxItems', 'any')} items")
    if "maxProperties" in schema:
        out.append(f"at most {schema['maxProperties']} keys")
    if "pattern" in schema:
        out.append(f"pattern `{schema['pattern']}`")
    items = schema.get("items", {})
    if schema.get("type") == "array" and items.get("type") != "object":
        inner = _limits(items)
        if inner:
            out.append(f"each: {inner}")
    for rule in schema.get("x-kubernetes-validations", []):
        out.append(f"rule: {rule['message']}")
    return "; ".join(out)


def _json(value: Any) -> str:
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _derived(schema: Schema) -> Any:
    if "default" in schema and schema["default"] != {}:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    if t in ("integer", "number"):
        return schema.get("minimum", 0)
    if t == "boolean":
        return True
    if t == "array":
        return []
    if t == "object":
        return {}
    return "..."


def _example(field: Field, specs: list[Any]) -> str:
    if field.schema.get("type") == "object" and "properties" in field.schema:
        return ""  # its fields have their own rows
    if field.schema.get("type") == "array" and field.schema.get("items", {}).get("properties"):
        return ""
    parts = field.path.split(".")[1:]
    for spec in specs:
        for value in _lookup({"x": spec}, ["x", *parts]):
            if value is not None and value != [] and value != {}:
                return f"`{_json(value)}`"
    return f"`{_json(_derived(field.schema))}` (illustrative)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(crds: Path = CRDS, examples: Path = EXAMPLES) -> str:
    """The whole reference as Markdown (deterministic: same schemas, same bytes)."""
    schemas = _schemas(crds)
    specs = {**_examples(examples), **_examples(TENANT_EXAMPLES)}
    out = [
        "# Policy reference",
        "",
        "<!-- Generated by `python -m skyroute.cli.reference` from crds/*.yaml; do not edit.",
        "     tests/cli/test_reference.py fails when this file is stale. -->",
        "",
        "Every field of the `skyroute.io/v1alpha1` custom resources, from their CRD schemas",
        "(`crds/`). *Default* is what the API server (and `skyroute control`) fills in when",
        "the field is omitted; *limits* are enforced on a cluster and off it alike, with the",
        "same messages. Examples come from `examples/acmeshop/` and `examples/tenants/`",
        "where they set the field; values marked *illustrative* are derived from the schema.",
        "",
    ]
    for kind in KINDS:
        spec = schemas[kind]
        out += [f"## {kind}", "", _cell(str(spec.get("description", ""))).strip(), ""]
        out += [
            "| field | type | default | limits | description | example |",
            "|---|---|---|---|---|---|",
        ]
        for f in _fields(spec):
            s = f.schema
            default = (
                "required" if f.required else (f"`{_json(s['default'])}`" if "default" in s else "")
            )
            out.append(
                "| "
                + " | ".join(
                    _cell(x)
                    for x in (
                        f"`{f.path}`",
                        _type(s),
                        default,
                        _limits(s),
                        str(s.get("description", "")),
                        _example(f, specs.get(kind, [])),
                    )
                )
                + " |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        fresh = OUTPUT.exists() and OUTPUT.read_text() == text
        if not fresh:
            print(f"{OUTPUT} is stale: run python -m skyroute.cli.reference", file=sys.stderr)
        return 0 if fresh else 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
