"""docs/policy-reference.md is generated from the CRD schemas and must be fresh."""

from __future__ import annotations

import json

import yaml

from skyroute.cli.reference import CRDS, OUTPUT, render


def test_the_checked_in_reference_is_fresh() -> None:
    assert OUTPUT.read_text() == render(), "stale: run python -m skyroute.cli.reference"


def test_every_crd_field_has_a_row_with_type_and_description() -> None:
    text = render()
    rows = {
        line.split(" | ")[0].strip("| `"): line for line in text.splitlines() if "| `spec." in line
    }

    def walk(schema: dict, path: str):  # type: ignore[no-untyped-def,type-arg]
        for name, sub in schema.get("properties", {}).items():
            yield f"{path}.{name}", sub
            items = sub.get("items", {})
            if sub.get("type") == "array" and "properties" in items:
                yield from walk(items, f"{path}.{name}[]")
            elif isinstance(sub.get("additionalProperties"), dict):
                yield from walk(sub["additionalProperties"], f"{path}.{name}.<name>")
            else:
                yield from walk(sub, f"{path}.{name}")

    for crd in CRDS.glob("*.yaml"):
        doc = yaml.safe_load(crd.read_text())
        spec = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for path, sub in walk(spec, "spec"):
            assert path in rows, f"{crd.name}: {path} has no row"
            cells = rows[path].split(" | ")
            shown = {
                "array": "list of",
                "object": "map of" if "additionalProperties" in sub else "object",
            }
            assert cells[1].startswith(shown.get(sub["type"], sub["type"])), (path, cells[1])
            assert cells[4].strip(), f"{crd.name}: {path} has no description"
            if "default" in sub and sub["default"] != {}:
                assert cells[2].strip(" `") == json.dumps(sub["default"]), path
