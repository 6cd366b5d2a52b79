"""`skyroute demo` end to end: real control plane, two routers, simulator, small sample."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness import REPO

KEYS = (
    "p95_ms",
    "success_rate",
    "cost_per_1k_usd",
    "mix",
    "faq_cache_hit_rate",
    "requests",
    "duplicate_tool_actions",
)


@pytest.mark.timeout(90)
def test_demo_runs_end_to_end_and_writes_sane_figures(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "demo",
            "--requests",
            "150",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=80,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed < 40, f"demo with 150 requests took {elapsed:.1f} s"
    assert "p95 latency" in proc.stdout and "Router mix" in proc.stdout

    doc = json.loads(out.read_text())
    for arm in ("baseline", "routed"):
        fig = doc[arm]
        for key in KEYS:
            assert key in fig, (arm, key)
        assert fig["requests"] == 150
        assert 0.0 <= fig["success_rate"] <= 1.0
        assert 0.0 <= fig["faq_cache_hit_rate"] <= 1.0
        assert fig["p95_ms"] > 0
        assert fig["cost_per_1k_usd"] > 0
        assert abs(sum(fig["mix"].values()) - 1.0) < 1e-3, fig["mix"]
        assert fig["client_attempts"] >= fig["requests"]

    base, routed = doc["baseline"], doc["routed"]
    # The baseline sends everything to its single gpt-5.2 pool and never caches.
    assert list(base["mix"]) == ["baseline"]
    assert base["faq_cache_hit_rate"] == 0.0
    # The routed client never retries; the acmeshop policy spreads traffic over its pools.
    assert routed["client_attempts"] == routed["requests"]
    assert {"cost", "balanced"} <= set(routed["mix"])
    assert doc["meta"]["requests_per_arm"] == 150
    # The routers ran closed: a keyless request was refused, the replay sent the Tenant's
    # key (made as `skyroute keys create` makes it: its id and digest in the demo's folder).
    door = doc["meta"]["door"]
    assert door["tenant"] == "acmeshop" and door["keyless_status"] == [401]
    tenant = yaml.safe_load((REPO / "demo-out" / "source" / "tenant.yaml").read_text())
    assert [k["id"] for k in tenant["spec"]["keys"]] == [door["key_id"]]
    assert tenant["spec"]["keys"][0]["digest"].startswith("sha256:")
    # ... and it was accepted: most requests of both arms were answered (401s are failures).
    assert base["success_rate"] > 0.5 and routed["success_rate"] > 0.5
