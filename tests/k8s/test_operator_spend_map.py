"""The leader's spend ledger in its ConfigMap on the real API server: pending, takeover, fence.

No operator process: a ``SpendKeeper`` on a real ``KubeApi``. Charges seen
while not leading are kept, and counted once on taking over (after the
ConfigMap's ledger is read, whose charge ids drop the ones already saved);
a follower's save is refused by the fence and writes nothing.
"""

from __future__ import annotations

import asyncio

import pytest
from kubernetes import config

from skyroute.control.kube.api import KubeApi
from skyroute.control.kube.spendmap import KEY, NAME, SpendKeeper
from skyroute.v1 import distribution_pb2

from kcluster import Cluster

NS = "spend-map"


@pytest.fixture(scope="module")
def cluster(k8s_cluster: Cluster) -> Cluster:
    k8s_cluster.kubectl("create", "namespace", NS, check=False)
    return k8s_cluster


def charge(cid: str, cost: float) -> distribution_pb2.Outcome:
    return distribution_pb2.Outcome(
        charge_id=cid, account="shop", tenant="shop", key_id="k1", model="m", cost_usd=cost
    )


def test_pending_charges_count_once_on_takeover_and_a_follower_writes_nothing(
    cluster: Cluster,
) -> None:
    async def scenario() -> None:
        api = KubeApi(config.new_client_from_config(str(cluster.kubeconfig)))
        first = SpendKeeper(api, NS)
        first.record([charge("a", 0.5), charge("b", 0.25)])  # not leading yet: kept
        assert first.ledger.total("shop").requests == 0 and len(first.pending) == 2
        await first.lead(True)
        assert first.ledger.total("shop").nano_usd == 750_000_000 and not first.pending
        assert await first.save() and not await first.save()  # unchanged: not rewritten
        # A second replica saw "b" (forwarded to the first) and "c" while following.
        second = SpendKeeper(api, NS)
        second.record([charge("b", 0.25), charge("c", 1.0)])
        await second.lead(True)
        assert second.ledger.total("shop").requests == 3  # "b" once
        assert second.ledger.total("shop").nano_usd == 1_750_000_000
        # A replica past its renew deadline: the fence refuses, nothing is written.
        api.fence = lambda: False
        second.record([charge("d", 9.0)])
        assert not await second.save()
        api.fence = None
        third = SpendKeeper(api, NS)
        await third.lead(True)
        assert third.ledger.total("shop").nano_usd == 750_000_000  # what "first" saved
        await third.lead(False)
        assert not third.keeping and not await third.save()

    asyncio.run(scenario())
    got = cluster.kubectl("get", "configmap", NAME, "-n", NS, "-o", "jsonpath={.binaryData}")
    assert KEY in got.stdout
