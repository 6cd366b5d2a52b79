"""spec.tests on a real API server: the webhook refuses, the operator holds back.

The AcmeShop policy carries routing cases (``spec.tests``). Against a real
kube-apiserver, the operator's admission webhook and a router:

* ``kubectl apply`` of a policy whose tests fail is refused, and kubectl's
  error names the failing case with what was expected and what the router's
  decision code decided; nothing serving changes;
* a pool change that would break the policy's tests is admitted with a
  warning (order of apply must stay free), held back with a ``Rejected``
  condition naming the case, and goes live together with the policy update
  that expects it;
* with the webhook out of the way, a failing generation is stored but never
  serves: ``Compiled=False, reason Rejected`` names the case while the
  previous generation keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kcluster import Cluster
from opstack import Stack, acmeshop_stack, serving

RP, MP = "routingpolicies", "modelpools"
PASSWORD_CASE = 'spec.tests[0]: test "password reset is a cached FAQ on the cheap model" failed'


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with acmeshop_stack(k8s_cluster, tmp_path_factory.mktemp("policytests"), "pt") as s:
        yield s


def faq_to_balanced(stack: Stack) -> dict[str, Any]:
    policy = stack.example("RoutingPolicy", "acmeshop")
    policy["spec"]["rules"][3]["pool"] = "balanced"
    return policy


def test_a_policy_whose_tests_fail_is_refused_naming_the_case(stack: Stack) -> None:
    before = serving(stack)
    result = stack.apply(yaml.safe_dump(faq_to_balanced(stack)), check=False)
    assert result.returncode != 0, result.stdout
    err = result.stderr
    assert 'admission webhook "routingpolicies.skyroute.io" denied the request' in err, err
    assert (
        PASSWORD_CASE + ': expected pool "cost" and model "gemini-3-flash", got pool '
        '"balanced" and model "claude-4.5-sonnet"' in err
    ), err
    assert 'test "greetings stay on the cheap model" failed' in err
    time.sleep(0.3)
    assert serving(stack) == before
    assert stack.get(RP, "acmeshop")["metadata"]["generation"] == 1


def test_a_pool_breaking_a_test_waits_for_the_policy_that_expects_it(stack: Stack) -> None:
    before = serving(stack)
    pool = stack.example("ModelPool", "cost")
    pool["spec"]["models"][0]["name"] = "gemini-3.5-flash"
    result = stack.apply(yaml.safe_dump(pool))
    assert "Warning: RoutingPolicy " in result.stderr and PASSWORD_CASE in result.stderr, (
        result.stderr
    )
    compiled = stack.wait_condition(MP, "cost", "Compiled", "False", reason="Rejected")
    assert PASSWORD_CASE in compiled["message"]
    assert "routers keep serving generation 1" in compiled["message"]
    assert serving(stack) == before
    policy = stack.example("RoutingPolicy", "acmeshop")
    for test in policy["spec"]["tests"]:
        if test["expect"].get("model") == "gemini-3-flash":
            test["expect"]["model"] = "gemini-3.5-flash"
    result = stack.apply(yaml.safe_dump(policy))
    assert "this policy waits for them" in result.stderr, result.stderr
    stack.wait_condition(MP, "cost", "Ready")
    stack.wait_condition(RP, "acmeshop", "Ready")
    after = serving(stack)
    assert after[0] != before[0] and after[2] != before[2]
    stack.wait_routers_on(after[0])


def test_without_the_webhook_a_failing_generation_never_serves(stack: Stack) -> None:
    stack.cluster.kubectl("delete", "validatingwebhookconfiguration", stack.webhook_config)
    try:
        before = serving(stack)
        generation = stack.get(RP, "acmeshop")["metadata"]["generation"]
        stack.apply(yaml.safe_dump(faq_to_balanced(stack)))
        compiled = stack.wait_condition(RP, "acmeshop", "Compiled", "False", reason="Rejected")
        assert compiled["message"].startswith(PASSWORD_CASE), compiled["message"]
        assert f"routers keep serving generation {generation}" in compiled["message"]
        assert compiled["observedGeneration"] == generation + 1
        assert stack.condition(RP, "acmeshop", "Ready")["reason"] == "Rejected"
        time.sleep(0.3)
        assert serving(stack) == before
    finally:
        stack.register_webhook()
