"""The README's by-hand walkthrough with a key ("Tenants, keys, limits and spend"), run as written.

The ``sh`` block after "By hand (a folder" is taken from README.md and run by
bash, unchanged but for its ``/tmp/shop`` folder (a fresh one here), inside a
network namespace of its own (``unshare -rn``: a private loopback), so its
default ports (7070, 7071, 7080-7082, 8790) collide with nobody. It must
create a key, be served with it (the model and cost of each answer printed),
and ``skyroute spend`` must print the sum of those costs as the total.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def walkthrough() -> str:
    text = (REPO / "README.md").read_text()
    at = text.index("By hand (a folder")
    m = re.search(r"```sh\n(.*?)```", text[at:], re.S)
    assert m, "the walkthrough's sh block"
    return m.group(1)


def test_the_readme_walkthrough_creates_and_uses_a_key(tmp_path: Path) -> None:
    block = walkthrough()
    assert "skyroute keys create" in block and "api_key=sys.argv[1]" in block
    shop = tmp_path / "shop"
    script = "\n".join(
        [
            "set -eu",
            "ip link set lo up",
            "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT",
            block.replace("/tmp/shop", str(shop)),
        ]
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(
        ["unshare", "-rn", "bash", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # The key was created into the tenant's file (its digest only) and sent.
    tenant_file = (shop / "tenants.yaml").read_text()
    assert re.search(r"digest: sha256:[0-9a-f]{64}", tenant_file)
    assert "sk-sr-" not in tenant_file
    answers = re.findall(r"^(\S+) (\d+\.\d+(?:e-\d+)?)$", out, re.M)
    assert len(answers) == 2, out
    costs = [float(c) for _, c in answers]
    assert all(c > 0 for c in costs)
    # skyroute spend: one row per model, the total the sum of the costs printed.
    total = re.search(r"\btotal\b.*?(\d+\.\d{6})\s*\W*$", out, re.M)
    assert total, out
    assert abs(float(total.group(1)) - sum(costs)) < 1e-6, out
    rows = set(re.findall(r"^\W*([a-z][\w.-]*)\s+\W\s+\d+", out, re.M))
    assert {m for m, _ in answers} <= rows, out
    # skyroute status: the tenant's row.
    assert re.search(r"^acme-web\s+\$\d", out, re.M), out
