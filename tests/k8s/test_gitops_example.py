"""examples/gitops: the files a pipeline commits do what its README says.

The repository renders with kubectl's kustomize and the API server accepts it
(server-side dry run: schema, CEL); the CI job's commands pass on the main
branch and on the pull request; the routing diff between them moves exactly
the order-status requests from the strong pool to the cheap one; and the
policy's rollout is a real canary configuration (the operator suite runs
canaries; here the example's own steps are checked to be what the README
describes).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from kcluster import REPO, Cluster
from opstack import ensure_crds

GITOPS = REPO / "examples" / "gitops"
PROMPTS = [
    ("Where is my order A-1234?", True),
    ("Can you track my order please", True),
    ("I forgot my password", False),
    ("I am filing a chargeback", False),
    ("What are the shipping options?", False),
    ("Hello, can you help me?", False),
]


def skyroute(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def pull_request(tmp: Path) -> Path:
    pr = tmp / "pr"
    pr.mkdir()
    for name in ("kustomization.yaml", "pools.yaml"):
        shutil.copy(GITOPS / "repo" / name, pr / name)
    shutil.copy(GITOPS / "pull-request" / "policy.yaml", pr / "policy.yaml")
    return pr


def test_ci_commands_pass_and_the_diff_is_the_intended_change(tmp_path: Path) -> None:
    pr = pull_request(tmp_path)
    for folder in (GITOPS / "repo", pr):
        result = skyroute("policy", "test", str(folder))
        assert result.returncode == 0, result.stdout + result.stderr
    sample = tmp_path / "sample.jsonl"
    sample.write_text(
        "".join(
            json.dumps(
                {"body": {"model": "support", "messages": [{"role": "user", "content": text}]}}
            )
            + "\n"
            for text, _ in PROMPTS
        )
    )
    diff = skyroute(
        "policy", "diff", str(GITOPS / "repo"), str(pr), "--sample", str(sample), "--json"
    )
    assert diff.returncode == 0, diff.stderr
    report = json.loads(diff.stdout)
    moved = sum(1 for _, moves in PROMPTS if moves)
    assert report["changed"]["pool"] == moved
    [transition] = report["transitions"]
    assert (transition["from"]["pool"], transition["to"]["pool"], transition["count"]) == (
        "strong",
        "cheap",
        moved,
    )


def test_repository_renders_and_the_api_server_accepts_it(k8s_cluster: Cluster) -> None:
    ensure_crds(k8s_cluster)
    docs: list[dict[str, Any]] = [
        d
        for d in yaml.safe_load_all(k8s_cluster.kubectl("kustomize", str(GITOPS / "repo")).stdout)
        if d
    ]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("ModelPool", "cheap"),
        ("ModelPool", "strong"),
        ("RoutingPolicy", "support"),
    ]
    assert {d["metadata"]["namespace"] for d in docs} == {"support"}
    policy = next(d for d in docs if d["kind"] == "RoutingPolicy")
    assert [s["weight"] for s in policy["spec"]["rollout"]["steps"]] == [5, 25, 50]
    ns = f"gitops-{uuid.uuid4().hex[:8]}"
    k8s_cluster.kubectl("create", "namespace", ns)
    try:
        for d in docs:
            d["metadata"]["namespace"] = ns
        out = k8s_cluster.kubectl(
            "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs)
        ).stdout
        assert out.count("(server dry run)") == 3, out
    finally:
        k8s_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
