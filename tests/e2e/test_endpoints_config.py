"""A ModelPool model's ``endpoints``: what the control plane refuses, and what it compiles.

A folder of YAML as ``skyroute control`` reads it: a mistake is a problem naming
the file, the object and the field (the same words as the CRD's rules, see
tests/control/test_control_crds.py), and a valid list compiles into the
snapshot's ``endpoints`` that a router table turns into per-endpoint candidates.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.errors import PolicyError, Problem
from skyroute.control.policy.loader import load_folder
from skyroute.control.policy.validate import validate
from skyroute.router.table import build_table

POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: p}
spec:
  default: true
  defaultPool: regions
"""


def _pool(model_body: str) -> str:
    return (
        "apiVersion: skyroute.io/v1alpha1\nkind: ModelPool\nmetadata: {name: regions}\n"
        "spec:\n  models:\n    - name: gpt\n      provider: openai\n"
        "      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}\n" + model_body
    )


def _sites(n: int, weight: int = 1) -> str:
    rows = "".join(
        f"        - name: r{i}\n          url: http://127.0.0.1:{9000 + i}/v1\n"
        f"          weight: {weight}\n"
        for i in range(n)
    )
    return "      endpoints:\n" + rows


def _problems(tmp_path: Path, model_body: str) -> list[Problem]:
    (tmp_path / "pools.yaml").write_text(_pool(model_body))
    (tmp_path / "policy.yaml").write_text(POLICY)
    with pytest.raises(PolicyError) as caught:
        validate(load_folder(tmp_path))
    problems = caught.value.problems
    assert all(
        p.file.endswith("pools.yaml") and p.obj == "ModelPool default/regions" for p in problems
    )
    return problems


@pytest.mark.parametrize(
    "body,path,words",
    [
        ("      endpoint: http://127.0.0.1:1/v1\n" + _sites(2), "spec.models[0]",
         "exactly one of endpoint or endpoints"),
        ("", "spec.models[0]", "exactly one of endpoint or endpoints"),
        (_sites(2, weight=0), "spec.models[0].endpoints[0].weight", "greater than or equal to 1"),
        (_sites(2, weight=1001), "spec.models[0].endpoints[1].weight",
         "less than or equal to 1000"),
        (_sites(17), "spec.models[0].endpoints", "at most 16"),
        ("      endpoints: []\n", "spec.models[0].endpoints", "at least 1"),
        (_sites(2).replace("name: r1", "name: r0"), "spec.models[0].endpoints",
         "endpoint names must be unique within a model"),
        (_sites(2) + "          deployment: d\n", "spec.models[0].endpoints",
         "deployment is only for provider azure-openai"),
        (_sites(1) + "          apiKey: {env: AWS_SECRET_ACCESS_KEY}\n",
         "spec.models[0].endpoints[0].apiKey.env", "refused"),
        (_sites(1) + "          apiKey: {}\n", "spec.models[0].endpoints[0].apiKey",
         "apiKey needs env, file or secretKeyRef"),
    ],
)  # fmt: skip
def test_bad_endpoints_are_refused_with_file_object_and_field(
    tmp_path: Path, body: str, path: str, words: str
) -> None:
    problems = _problems(tmp_path, body)
    assert any(p.path == path and words in p.message for p in problems), [str(p) for p in problems]


def test_endpoints_compile_into_the_snapshot_and_a_router_table(tmp_path: Path) -> None:
    body = (
        "      apiKey: {env: SKYROUTE_MODEL_KEY}\n"
        "      endpoints:\n"
        "        - {name: east, url: 'http://127.0.0.1:9001/v1/', weight: 5, region: eastus}\n"
        "        - name: west\n"
        "          url: http://127.0.0.1:9002/v1\n"
        "          apiKey: {secretKeyRef: {name: west-keys, key: openai}}\n"
    )
    (tmp_path / "pools.yaml").write_text(_pool(body))
    (tmp_path / "policy.yaml").write_text(POLICY)
    snap = compile_folder(tmp_path)
    (cand,) = snap.pools[0].candidates
    assert cand.endpoint == "http://127.0.0.1:9001/v1"  # older routers: the first endpoint
    assert [(e.name, e.url, e.weight, e.region) for e in cand.endpoints] == [
        ("east", "http://127.0.0.1:9001/v1", 5, "eastus"),
        ("west", "http://127.0.0.1:9002/v1", 1, ""),
    ]
    assert (cand.endpoints[0].api_key_env, cand.endpoints[0].api_key_file) == ("", "")
    assert cand.endpoints[1].api_key_file == "/var/run/secrets/skyroute/west-keys/openai"
    (model,) = build_table(snap).policies["p"].pools["regions"]
    assert model.endpoints is not None
    assert [c.label for c in model.endpoints.rotations[0]] == ["gpt@east", "gpt@west"]
