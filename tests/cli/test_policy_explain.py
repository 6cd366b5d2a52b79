"""``skyroute policy explain`` against a real router fed by a real control plane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import REPO, Proc, Stack

EXAMPLE = REPO / "examples" / "acmeshop"
SCENARIO = "seed: 1\ndefaults: {ttft_ms: {p50: 5, p95: 10}, tokens_per_s: 3000, error_rate: 0}\n"


def explain(router: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", "policy", "explain", "--router", router, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_explain_prints_the_live_decision(procs: list[Proc], tmp_path: Path) -> None:
    files = {
        name: (EXAMPLE / name).read_text().replace("http://127.0.0.1:8790", "{SIM}")
        for name in ("pools.yaml", "policy.yaml")
    }
    stack = Stack(procs, tmp_path, files, SCENARIO)  # the control plane ran the policy tests
    grpc_addr = stack.routers[0][1]

    result = explain(
        grpc_addr, "--locale", "en-GB", "--tier", "free", "How do I reset my password?"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = dict(
        line.split(":", 1) for line in out.splitlines() if line[:1].isalpha() and ":" in line
    )
    assert lines["policy"].split()[0] == "acmeshop"
    assert lines["policy"].split()[1] == stack.status()["policies"]["acmeshop"]
    assert lines["intent"].strip().startswith("faq.password from keyword:reset my password")
    assert lines["rule"].strip() == "faq-and-low-risk" and lines["pool"].strip() == "cost"
    assert lines["chain"].strip() == "gemini-3-flash -> claude-4.5-haiku"
    assert lines["cacheable"].strip() == "true"
    assert "locale en-GB, tier free" in lines["signals"]
    assert "gemini-3-flash" in out and "claude-4.5-haiku" in out and "candidates" in out
    assert "  - pool 'cost' by rule 'faq-and-low-risk'" in out
    # Each term's contribution per candidate, in the table and in the reasons.
    assert "candidates (scored)" in out and "+ quality" in out
    assert any(
        line.strip().startswith("- gemini-3-flash: score") and "= cost" in line
        for line in out.splitlines()
    )

    as_json = json.loads(
        explain(grpc_addr, "--tools", "--json", "What's your refund policy?").stdout
    )
    assert as_json["policy"] == "acmeshop" and as_json["pool"] == "balanced"
    assert as_json["rule"] == "default" and as_json["cacheable"] is False
    assert as_json["signals"]["has_tools"] is True
    assert [s["model"] for s in as_json["scores"]] == ["claude-4.5-sonnet", "gpt-5.2"]
    for part in as_json["scores"]:
        terms = ("cost_term", "latency_term", "failure_term", "quality_term")
        assert abs(sum(part[t] for t in terms) - part["score"]) < 1e-9
    assert as_json["selection"] == "scored"

    baseline = json.loads(explain(grpc_addr, "--policy", "baseline", "--json", "hello").stdout)
    assert baseline["chain"] == ["gpt-5.2"]

    missing = explain(grpc_addr, "--policy", "nope", "hello")
    assert missing.returncode == 1
    assert "NOT_FOUND" in missing.stderr and "policy 'nope' not found" in missing.stderr
