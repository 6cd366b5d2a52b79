"""Azure OpenAI pool models: apiVersion is validated like the CRD does, and compiled."""

from __future__ import annotations

from pathlib import Path

from poolfiles import add_first_model, problems

from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.model import MSG_API_VERSION

AZURE = """\
    - name: gpt-4o
      provider: azure-openai
      endpoint: https://contoso-eu.openai.azure.com
      upstreamModel: gpt-4o-eu
      apiVersion: {version}
      pricing: {{inputPerMTok: 2.50, outputPerMTok: 10.00}}
      apiKey: {{secretKeyRef: {{name: azure-openai, key: api-key}}}}
"""


def _with_azure(folder: Path, version: str, provider: str = "azure-openai") -> Path:
    block = AZURE.format(version=version).replace("azure-openai\n", provider + "\n", 1)
    return add_first_model(folder, block)  # first pool: "cost"


def test_azure_model_compiles_with_its_api_version(acmeshop: Path) -> None:
    _with_azure(acmeshop, "2025-01-01-preview")
    snap = compile_folder(acmeshop)
    (pool,) = [p for p in snap.pools if p.name == "cost"]
    first = pool.candidates[0]
    assert (first.model, first.provider, first.upstream_model) == (
        "gpt-4o",
        "azure-openai",
        "gpt-4o-eu",
    )
    assert first.api_version == "2025-01-01-preview"
    assert first.api_key_file == "/var/run/secrets/skyroute/azure-openai/api-key"
    assert all(c.api_version == "" for c in pool.candidates[1:])


def test_api_version_on_another_family_names_file_object_and_field(acmeshop: Path) -> None:
    pools = _with_azure(acmeshop, "2024-10-21", provider="openai")
    [problem] = problems(acmeshop)
    assert str(problem).startswith(
        f"{pools}: ModelPool default/cost: spec.models[0].apiVersion: {MSG_API_VERSION}"
    )
    assert "provider is openai" in problem.message


def test_malformed_api_version_names_the_field(acmeshop: Path) -> None:
    pools = _with_azure(acmeshop, "latest")
    [problem] = problems(acmeshop)
    assert (problem.file, problem.obj, problem.path) == (
        str(pools),
        "ModelPool default/cost",
        "spec.models[0].apiVersion",
    )
    assert "latest" in problem.message
