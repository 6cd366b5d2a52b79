"""Fixtures shared by every suite (the process harness lives in harness.py).

Also the order of a run: the suites that need the test cluster's binaries
(``tests/k8s``) run last. On a fresh machine ``make test`` builds those binaries
(kube-apiserver, kubectl, helm: about 23 minutes on 2 cores) in the background
while every other suite runs, and the first cluster test waits for that build
here, before its own timeout starts, instead of the whole run waiting up front.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from harness import Proc

_ROOT = Path(__file__).resolve().parents[1]
_CLUSTER_SUITE = Path(__file__).resolve().parent / "k8s"
_bins_ready = False


def _needs_cluster_bins(item: pytest.Item) -> bool:
    return _CLUSTER_SUITE in Path(str(item.path)).parents


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Cluster suites last (a stable sort: the order within each part is kept)."""
    items.sort(key=_needs_cluster_bins)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Before the first cluster test: the binaries are there, or wait for their build.

    ``hack/cluster/bins.sh`` returns at once when they are cached; while ``make
    test``'s background build runs it waits on that build's lock (and builds them
    itself if nobody is). Outermost hook wrapper, so no test timeout runs yet.
    """
    global _bins_ready
    if not _bins_ready and _needs_cluster_bins(item):
        _bins_ready = True
        script = _ROOT / "hack" / "cluster" / "bins.sh"
        if subprocess.run(["bash", str(script), "--check"], capture_output=True).returncode:
            capman = item.config.pluginmanager.getplugin("capturemanager")
            with capman.global_and_fixture_disabled():  # the build's progress is shown
                t0 = time.monotonic()
                print("\n[tests/k8s] waiting for the cluster binaries' build", file=sys.stderr)
                subprocess.run(["bash", str(script)], check=False)
                print(f"[tests/k8s] waited {time.monotonic() - t0:.0f} s", file=sys.stderr)
    yield


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Collects processes a test starts and stops them all afterwards."""
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()
