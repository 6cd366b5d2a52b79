"""Pool models' auth, region and project: validated like the CRD does, and compiled."""

from __future__ import annotations

from pathlib import Path

import pytest
from poolfiles import add_first_model, problems

from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.model import (
    MSG_API_KEY_AUTH,
    MSG_AUTH,
    MSG_PROJECT,
    MSG_PROJECT_REQUIRED,
    MSG_REGION,
)

ENTRA = """\
    - name: gpt-4o
      provider: azure-openai
      endpoint: https://contoso-eu.openai.azure.com
      auth: entra
      pricing: {inputPerMTok: 2.50, outputPerMTok: 10.00}
"""


def test_auth_compiles_and_defaults_to_api_key(acmeshop: Path) -> None:
    add_first_model(acmeshop, ENTRA)
    snap = compile_folder(acmeshop)
    (pool,) = [p for p in snap.pools if p.name == "cost"]
    first, *rest = pool.candidates
    assert (first.provider, first.auth, first.region, first.project) == (
        "azure-openai",
        "entra",
        "",
        "",
    )
    assert (first.api_key_env, first.api_key_file) == ("", "")
    assert rest and all(c.auth == "api-key" for c in rest)


def test_auth_the_family_does_not_take_names_file_object_and_field(acmeshop: Path) -> None:
    pools = add_first_model(acmeshop, ENTRA.replace("azure-openai", "openai"))
    [problem] = problems(acmeshop)
    assert str(problem).startswith(
        f"{pools}: ModelPool default/cost: spec.models[0].auth: {MSG_AUTH}"
    )
    assert "provider openai does not take entra" in problem.message


def test_unknown_auth_is_refused_by_the_enum(acmeshop: Path) -> None:
    add_first_model(acmeshop, ENTRA.replace("auth: entra", "auth: oauth"))
    [problem] = problems(acmeshop)
    assert problem.path == "spec.models[0].auth"
    assert "'api-key', 'aws', 'google' or 'entra'" in problem.message


def test_an_api_key_with_token_auth_is_refused(acmeshop: Path) -> None:
    add_first_model(acmeshop, ENTRA + "      apiKey: {env: AZURE_OPENAI_API_KEY}\n")
    [problem] = problems(acmeshop)
    assert problem.path == "spec.models[0].apiKey"
    assert problem.message.startswith(MSG_API_KEY_AUTH)
    assert "auth is entra" in problem.message


@pytest.mark.parametrize(
    "field,value,message",
    [("region", "us-central1", MSG_REGION), ("project", "acme-prod-1", MSG_PROJECT)],
)
def test_cloud_addressing_only_for_the_families_that_take_it(
    acmeshop: Path, field: str, value: str, message: str
) -> None:
    pools = add_first_model(acmeshop, ENTRA + f"      {field}: {value}\n")
    [problem] = problems(acmeshop)
    assert (problem.file, problem.obj, problem.path) == (
        str(pools),
        "ModelPool default/cost",
        f"spec.models[0].{field}",
    )
    assert problem.message.startswith(message)
    assert "provider is azure-openai" in problem.message


@pytest.mark.parametrize(
    "field,value", [("region", "US_EAST_1"), ("region", "x"), ("project", "Acme")]
)
def test_malformed_region_or_project_names_the_field(
    acmeshop: Path, field: str, value: str
) -> None:
    add_first_model(acmeshop, ENTRA + f"      {field}: {value}\n")
    assert [p.path for p in problems(acmeshop)] == [f"spec.models[0].{field}"]


VERTEX = """\
    - name: claude-vertex
      provider: vertex-anthropic
      endpoint: "https://{region}-aiplatform.googleapis.com"
      upstreamModel: claude-sonnet-4-5@20250929
      auth: google
      project: acme-prod-1
      region: us-east5
      pricing: {inputPerMTok: 3.0, outputPerMTok: 15.0}
"""


def test_a_vertex_model_compiles_with_its_project_region_and_versioned_id(acmeshop: Path) -> None:
    add_first_model(acmeshop, VERTEX)
    (pool,) = [p for p in compile_folder(acmeshop).pools if p.name == "cost"]
    first = pool.candidates[0]
    assert (first.provider, first.auth, first.project, first.region, first.upstream_model) == (
        "vertex-anthropic",
        "google",
        "acme-prod-1",
        "us-east5",
        "claude-sonnet-4-5@20250929",
    )
    # The router fills {region} (per endpoint, when a model has several).
    assert first.endpoint == "https://{region}-aiplatform.googleapis.com"


def test_a_vertex_model_without_a_project_names_file_object_and_field(acmeshop: Path) -> None:
    pools = add_first_model(acmeshop, VERTEX.replace("      project: acme-prod-1\n", ""))
    [problem] = problems(acmeshop)
    assert (problem.file, problem.obj, problem.path) == (
        str(pools),
        "ModelPool default/cost",
        "spec.models[0]",
    )
    assert problem.message.startswith(MSG_PROJECT_REQUIRED)
    assert "provider is vertex-anthropic" in problem.message
