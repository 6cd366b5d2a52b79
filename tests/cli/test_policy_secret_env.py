"""``skyroute policy validate|test|diff --secret-env-prefix``: the control plane's keyrefs rule.

A pool's ``apiKey: {env: NAME}`` that ``skyroute control`` would refuse (skyroute/keyrefs.py)
must fail in CI first: the policy commands take the same flag and apply the same rule,
exit 2 naming the file, object and field.
"""

from __future__ import annotations

import json
from pathlib import Path

from test_policy_cli import EXAMPLE, copy_example, skyroute


def _named(folder: Path, name: str) -> Path:
    pools = folder / "pools.yaml"
    text = pools.read_text()
    assert "apiKey: {env: GEMINI_API_KEY}" in text
    pools.write_text(text.replace("apiKey: {env: GEMINI_API_KEY}", f"apiKey: {{env: {name}}}", 1))
    return folder


def test_validate_accepts_the_example_and_counts_its_objects() -> None:
    result = skyroute("policy", "validate", str(EXAMPLE), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["ok"] is True and out["pools"] >= 1 and out["policies"] == 2
    assert out["version"]


def test_a_variable_outside_the_default_rule_is_refused_naming_the_field(tmp_path: Path) -> None:
    folder = _named(copy_example(tmp_path / "p"), "AWS_SECRET_ACCESS_KEY")
    for command in ("validate", "test"):
        result = skyroute("policy", command, str(folder))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "pools.yaml" in result.stderr
        assert "ModelPool default/cost" in result.stderr
        assert "spec.models[0].apiKey.env" in result.stderr
        assert "AWS_SECRET_ACCESS_KEY" in result.stderr


def test_the_flag_replaces_the_default_as_on_the_control_plane(tmp_path: Path) -> None:
    folder = _named(copy_example(tmp_path / "p"), "ACME_GEMINI")
    assert skyroute("policy", "validate", str(folder)).returncode == 2
    # Only ACME_*: the example's other *_API_KEY names are now refused, this one is not.
    only = skyroute("policy", "validate", str(folder), "--secret-env-prefix", "ACME_", "--json")
    assert only.returncode == 2
    paths = {(p["object"], p["path"]) for p in json.loads(only.stdout)["problems"]}
    assert ("ModelPool default/cost", "spec.models[1].apiKey.env") in paths
    assert ("ModelPool default/cost", "spec.models[0].apiKey.env") not in paths
    prefixes = [
        a for p in ("ACME_", "GEMINI_", "ANTHROPIC_", "OPENAI_") for a in ("--secret-env-prefix", p)
    ]
    ok = skyroute("policy", "test", str(folder), *prefixes)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all 10 tests passed" in ok.stdout
    # diff compiles both sides with the same rule.
    sample = EXAMPLE / "traffic-sample.jsonl"
    refused = skyroute("policy", "diff", str(EXAMPLE), str(folder), "--sample", str(sample))
    assert refused.returncode == 2 and "ACME_GEMINI" in refused.stderr
    allowed = skyroute(
        "policy",
        "diff",
        str(EXAMPLE),
        str(folder),
        "--sample",
        str(sample),
        "--secret-env-prefix",
        "",
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
