"""Fixtures shared by every suite (the process harness lives in harness.py).

Also the order of a run: the suites that need something built from source first
run last, each after the ones that need nothing: the self-hosted family's test
against llama-cpp-python's server (``hack/llama/server.sh``: about 4 minutes on
2 idle cores), then the cluster suites (``tests/k8s``: kube-apiserver, kubectl,
helm, about 23 minutes). On a fresh machine ``make test`` starts both builds in
the background while every other suite runs, and the first test needing each
waits for it here, before its own timeout starts, instead of the whole run
waiting up front.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import Proc

_ROOT = Path(__file__).resolve().parents[1]
_TESTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class _Build:
    """Tests under ``where`` (a file or a folder) need ``script``'s build."""

    where: Path
    script: Path
    what: str

    def needed_by(self, item: pytest.Item) -> bool:
        path = Path(str(item.path))
        return path == self.where or self.where in path.parents


# In run order: a suite needing a later build runs after one needing an earlier one.
_BUILDS = (
    _Build(
        _TESTS / "providers" / "test_selfhosted_llama.py",
        _ROOT / "hack" / "llama" / "server.sh",
        "llama-cpp-python server",
    ),
    _Build(_TESTS / "k8s", _ROOT / "hack" / "cluster" / "bins.sh", "cluster binaries"),
)
_waited: set[Path] = set()


def _build_of(item: pytest.Item) -> int:
    """1 + the index of the build ``item`` needs, 0 if none (the sort key)."""
    return next((i + 1 for i, b in enumerate(_BUILDS) if b.needed_by(item)), 0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Suites needing a build last, in build order (a stable sort: each part keeps its order)."""
    items.sort(key=_build_of)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Before the first test needing a build: it is there, or wait for it.

    Each script returns at once when its output is cached (``--check``); while
    ``make test``'s background build runs it waits on that build's lock (and builds
    itself if nobody is). Outermost hook wrapper, so no test timeout runs yet.
    """
    n = _build_of(item)
    if n:
        build = _BUILDS[n - 1]
        if build.script not in _waited:
            _waited.add(build.script)
            check = ["bash", str(build.script), "--check"]
            if subprocess.run(check, capture_output=True).returncode:
                capman = item.config.pluginmanager.getplugin("capturemanager")
                with capman.global_and_fixture_disabled():  # the build's progress is shown
                    t0 = time.monotonic()
                    print(f"\n[tests] waiting for the build of the {build.what}", file=sys.stderr)
                    subprocess.run(["bash", str(build.script)], check=False, stdout=sys.stderr)
                    print(f"[tests] waited {time.monotonic() - t0:.0f} s", file=sys.stderr)
    yield


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Collects processes a test starts and stops them all afterwards."""
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()
