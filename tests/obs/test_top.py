"""``skyroute top --once`` shows the control plane's figures per pool and policy version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai

from harness import REPO, Proc, Stack, free_port, wait_until
from policies import FILES, SCENARIO


def _top(admin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", "top", "--admin", admin, "--once"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def test_top_once_prints_mix_p95_success_cost_and_hit_rate(
    procs: list[Proc], tmp_path: Path
) -> None:
    stack = Stack(procs, tmp_path, FILES, SCENARIO)
    c = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0)
    for text in ["how do I reset my password?"] * 3 + ["Please compare plan A and B"]:
        c.chat.completions.create(model="auto", messages=[{"role": "user", "content": text}])
    wait_until(lambda: stack.status()["outcomes_total"] == 4, timeout=10, what="4 outcomes")
    version = stack.status()["policies"]["support"]

    done = _top(stack.admin.removeprefix("http://"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for header in ("mix", "p95 ms", "success", "cost/1k $", "hit rate"):
        assert header in out
    rows = {
        line.split("│")[3].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
        for line in out.splitlines()
        if line.count("│") >= 9
    }
    assert set(rows) == {"fast", "smart"}, out
    fast, smart = rows["fast"], rows["smart"]
    assert fast[0] == smart[0] == "support"
    assert fast[1] and version.startswith(fast[1]) and smart[1] == fast[1]
    assert (fast[3], fast[4], fast[6], fast[8]) == ("3", "75.0%", "100.00%", "66.7%")
    assert (smart[3], smart[4], smart[8]) == ("1", "25.0%", "0.0%")
    assert float(smart[7]) > float(fast[7]) > 0  # the smart pool costs more per request


def test_top_names_an_admin_address_that_does_not_answer() -> None:
    addr = f"127.0.0.1:{free_port()}"
    done = _top(addr)
    assert done.returncode == 1
    assert f"cannot read http://{addr}/debug/outcomes" in done.stdout
