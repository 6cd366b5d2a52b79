"""Learned state in a ConfigMap on the real API server: saved by the leader, restored on start."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from kubernetes import config

from skyroute.control.kube.api import KubeApi, NotLeader
from skyroute.control.kube.learned import KEY, NAME, LearnedStateMap
from skyroute.control.learning.loop import Learner
from skyroute.control.policy.store import SnapshotStore

from kcluster import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "control"))
from test_control_learning import Clock, _stats

NS = "learned-state"


@pytest.fixture(scope="module")
def cluster(k8s_cluster: Cluster) -> Cluster:
    k8s_cluster.kubectl("create", "namespace", NS, check=False)
    return k8s_cluster


def _learner() -> Learner:
    return Learner(SnapshotStore("test"), clock=Clock())


def test_the_leader_saves_and_a_restarted_operator_restores(cluster: Cluster) -> None:
    async def scenario() -> None:
        api = KubeApi(config.new_client_from_config(str(cluster.kubeconfig)))
        learner = _learner()
        learner.record([_stats("a", [100.0] * 60), _stats("b", [250.0] * 60, failures=6)])
        learner.priors["a"] = (100.0, 0.0, 30.0)
        saver = LearnedStateMap(api, NS)
        assert await saver.save(learner)
        assert await saver.save(learner)  # the second write replaces the first
        again = _learner()
        got = await LearnedStateMap(api, NS).load(again)
        assert not got.error and got.series == 4 and got.priors == 1, got
        assert set(again.models) == {"a", "b"} and again.priors["a"] == (100.0, 0.0, 30.0)
        # A follower (its fence says no) writes nothing.
        api.fence = lambda: False
        with pytest.raises(NotLeader):
            await saver.save(learner)

    asyncio.run(scenario())
    got = cluster.kubectl("get", "configmap", NAME, "-n", NS, "-o", "jsonpath={.binaryData}")
    assert KEY in got.stdout


def test_a_corrupt_configmap_restores_nothing_and_says_why(cluster: Cluster) -> None:
    cluster.kubectl("delete", "configmap", NAME, "-n", NS, "--ignore-not-found")
    cluster.kubectl("create", "configmap", NAME, "-n", NS, f"--from-literal={KEY}=not-base64-gzip")

    async def scenario() -> None:
        api = KubeApi(config.new_client_from_config(str(cluster.kubeconfig)))
        learner = _learner()
        got = await LearnedStateMap(api, NS).load(learner)
        assert "unreadable" in got.error and not learner.models

    asyncio.run(scenario())
