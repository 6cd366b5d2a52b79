"""Quality drift on a cluster: feedback pulls a model's posterior below its eval, its pools say so.

A real ``skyroute operator`` on the test API server, one router and the
provider simulator. Model ``qd-a`` has an offline eval of 0.9 for intent
``chat``; the policy adapts with ``qualityPriorWeight: 5`` and
``driftQualityDrop: 0.2``. Answers rated bad through ``POST /v1/feedback``
(requests through the official openai SDK) pull the posterior below 0.7:
both pools holding ``qd-a`` get ``QualityDrift=True`` (``AboveBaseline``,
the message naming the posterior and the eval) and a Warning event, the
pool without it nothing; answers rated good bring it back above 0.72 (90%
of the drop) and the condition goes ``False`` (``Recovered``). The policy
Thompson-samples quality (``qualitySampling: thompson``), so the API server
accepts the field and the router serves it (one model in the pool used: the
draws change nothing here).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from openai import OpenAI

from kcluster import Cluster
from opstack import Stack

MP = "modelpools"
# A loaded 2-core machine: the API server, operator, router and simulator share it.
pytestmark = pytest.mark.timeout(300)
OBJECTS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: judged}
spec:
  models:
    - {name: qd-a, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}, quality: {chat: 0.9}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: also}
spec:
  models:
    - {name: qd-b, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
    - {name: qd-a, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}, quality: {chat: 0.9}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: apart}
spec:
  models:
    - {name: qd-b, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: qdrift}
spec:
  default: true
  defaultPool: judged
  intents:
    - {name: chat, keywords: ["hello"]}
  adaptation: {enabled: true, exploration: 0, intervalS: 1, minSamples: 1000000,
               driftLatencyRatio: 0, driftCostRatio: 0, qualityPriorWeight: 5,
               driftQualityDrop: 0.2, qualitySampling: thompson}
"""


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(k8s_cluster, tmp_path_factory.mktemp("qdrift"), webhook=False, prefix="qdrift")
    try:
        yield s
    finally:
        s.close()


def _rate(url: str, client: OpenAI, n: int, good: bool) -> None:
    for _ in range(n):
        raw = client.chat.completions.with_raw_response.create(
            model="qdrift", messages=[{"role": "user", "content": "hello there"}]
        )
        assert (raw.headers["x-skyroute-model"], raw.headers["x-skyroute-intent"]) == (
            "qd-a",
            "chat",
        )
        req = urllib.request.Request(
            url + "/v1/feedback",
            data=json.dumps(
                {"request_id": raw.headers["x-skyroute-feedback-id"], "value": good}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200


def test_quality_drift_raises_and_clears_pool_conditions(stack: Stack) -> None:
    stack.apply(OBJECTS.replace("{SIM}", stack.sim))
    for pool in ("judged", "also", "apart"):
        stack.wait_condition(MP, pool, "Ready")
    url = stack.start_router("qdrift-r1")
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    _rate(url, client, 10, good=False)  # posterior (5 x 0.9) / 15 = 0.30 < 0.9 - 0.2
    raised = stack.wait_condition(
        MP, "judged", "QualityDrift", "True", timeout=15, reason="AboveBaseline"
    )
    assert "qd-a" in raised["message"] and "chat" in raised["message"], raised
    stack.wait_condition(MP, "also", "QualityDrift", "True", timeout=5)
    assert not stack.condition(MP, "apart", "QualityDrift")
    _rate(url, client, 30, good=True)  # (4.5 + 30) / 45 = 0.77 > 0.9 - 0.9 x 0.2
    cleared = stack.wait_condition(
        MP, "judged", "QualityDrift", "False", timeout=15, reason="Recovered"
    )
    assert "qd-a" in cleared["message"], cleared
    stack.wait_condition(MP, "also", "QualityDrift", "False", timeout=5, reason="Recovered")
    events = [(e["type"], e["reason"]) for e in stack.events("judged")]
    assert events.count(("Warning", "QualityDrift")) == 1, events
    assert events.count(("Normal", "QualityDriftRecovered")) == 1, events
    assert not [e for e in stack.events("apart") if "Drift" in e["reason"]]
    assert stack.condition(MP, "judged", "Ready")["status"] == "True"
