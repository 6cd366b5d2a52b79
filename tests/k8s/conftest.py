"""A real Kubernetes API server for the k8s suites, envtest-style.

Why a real one: what the operator relies on (CRD structural schemas, CEL
``x-kubernetes-validations``, defaulting, printer columns, status
subresources, watches, RBAC) is implemented by kube-apiserver itself; a fake
would only repeat our own assumptions back to us. The cluster is etcd plus a
kube-apiserver built from the pinned k8s.io/kubernetes release
(``hack/cluster/``), both on 127.0.0.1 free ports, with no kubelet or
controllers, like controller-runtime's envtest.

The ``k8s_cluster`` fixture is session-scoped: one cluster (a few seconds to
start) serves every test under tests/k8s/. It runs ``hack/cluster/up.sh``
with its own state directory, so it never touches a developer's
``make cluster-up`` cluster, and ``down.sh`` at the end. While it is up,
``KUBECONFIG`` points at it and the built kubectl is first on ``PATH`` so
subprocesses (an operator under test, kubectl itself) find both.

Set ``SKYROUTE_TEST_KUBECONFIG`` to run against a cluster that is already up
(``export SKYROUTE_TEST_KUBECONFIG=$(make -s cluster-up)``): the fixture then
neither starts nor stops anything, which saves the start-up while iterating.

Missing binaries are an error, not a skip: ``make cluster-bins`` builds them
(``make test`` depends on it), and a skipped cluster test must never look like
a passed one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcluster import Cluster, cluster_env, cluster_script


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Session-wide API server; exports KUBECONFIG and puts kubectl on PATH while up."""
    kubectl_bin = Path(cluster_env("KUBECTL"))
    external = os.environ.get("SKYROUTE_TEST_KUBECONFIG")
    state_dir: Path | None = None
    t0 = time.monotonic()
    if external:
        kubeconfig = Path(external)
        if not kubeconfig.is_file():
            pytest.fail(f"SKYROUTE_TEST_KUBECONFIG={external}: no such kubeconfig file")
        if not kubectl_bin.is_file():
            pytest.fail(f"kubectl not built at {kubectl_bin}: run `make cluster-bins`")
    else:
        check = cluster_script("bins.sh", "--check")
        if check.returncode != 0:
            pytest.fail(
                "test-cluster binaries missing ("
                + check.stderr.strip()
                + "): run `make cluster-bins` (make test does this first)"
            )
        state_dir = tmp_path_factory.mktemp("k8s-cluster")
        up = cluster_script("up.sh", state_dir=state_dir)
        if up.returncode != 0:
            cluster_script("down.sh", state_dir=state_dir)
            pytest.fail(f"hack/cluster/up.sh failed ({up.returncode}):\n{up.stderr}")
        kubeconfig = Path(up.stdout.strip().splitlines()[-1])
    cluster = Cluster(kubeconfig, kubectl_bin, time.monotonic() - t0)

    saved = {k: os.environ.get(k) for k in ("KUBECONFIG", "PATH")}
    os.environ["KUBECONFIG"] = str(kubeconfig)
    os.environ["PATH"] = f"{kubectl_bin.parent}{os.pathsep}{saved['PATH'] or ''}"
    try:
        yield cluster
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if state_dir is not None:
            down = cluster_script("down.sh", state_dir=state_dir)
            if down.returncode != 0:
                raise RuntimeError(f"hack/cluster/down.sh failed:\n{down.stderr}")
