"""Invalid objects against the real API server, the webhook and the operator.

One test per kind of mistake, each asserting the message names the field
and that nothing serving changed (the operator's snapshot, the router's
version and the policy's status version). Who catches what:

* schema violations, CEL rules and negative prices: the API server itself,
  from the CRD (no webhook involved);
* an intent pattern that is not a valid regular expression: the operator's
  validating webhook (the CRD cannot compile regexes);
* a pool's ``apiKey.env`` naming a variable outside the ``--secret-env-prefix``
  rule (skyroute/keyrefs.py, the folder mode's check): the webhook, and the
  operator itself for what was admitted while it was down;
* a pool that does not exist: admitted with a warning (order of apply must
  not matter), then ``Compiled=False, reason PoolNotFound`` naming the
  field, with the previous generation still serving;
* with the webhook down, the CRD's CEL still refuses what it can, and what
  slips through is refused by the operator when it is back.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from harness import http_get
from kcluster import Cluster
from opstack import Stack, acmeshop_stack, serving

RP, MP = "routingpolicies", "modelpools"


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with acmeshop_stack(k8s_cluster, tmp_path_factory.mktemp("admission"), "adm") as s:
        yield s


def refused(stack: Stack, obj: dict[str, Any]) -> str:
    before = serving(stack)
    result = stack.apply(yaml.safe_dump(obj), check=False)
    assert result.returncode != 0, result.stdout
    time.sleep(0.3)
    assert serving(stack) == before
    return str(result.stderr)


def test_schema_violation_is_refused_by_the_api_server(stack: Stack) -> None:
    pool = stack.example("ModelPool", "cost")
    pool["spec"]["models"][0]["provider"] = "gemeni"
    err = refused(stack, pool)
    assert "spec.models[0].provider" in err and 'Unsupported value: "gemeni"' in err, err
    assert "admission webhook" not in err


def test_cel_violation_is_refused_with_the_rules_message(stack: Stack) -> None:
    policy = stack.example("RoutingPolicy", "acmeshop")
    policy["spec"]["cache"] = {"enabled": True}
    err = refused(stack, policy)
    assert "spec.cache.intents" in err, err
    assert "cache.intents must name at least one intent when the cache is enabled" in err


def test_negative_price_is_refused(stack: Stack) -> None:
    pool = stack.example("ModelPool", "quality")
    pool["spec"]["models"][1]["pricing"]["outputPerMTok"] = -1
    err = refused(stack, pool)
    assert "spec.models[1].pricing.outputPerMTok" in err, err
    assert "should be greater than or equal to 0" in err


def test_bad_intent_pattern_is_refused_by_the_webhook(stack: Stack) -> None:
    policy = stack.example("RoutingPolicy", "acmeshop")
    policy["spec"]["intents"][2]["patterns"][0] = r"\b(invoice|receipt\b"
    err = refused(stack, policy)
    assert 'admission webhook "routingpolicies.skyroute.io" denied the request' in err, err
    assert "spec.intents[2].patterns[0]: invalid regular expression" in err


def test_an_env_key_outside_the_allowed_names_is_refused_by_the_webhook(stack: Stack) -> None:
    pool = stack.example("ModelPool", "cost")
    pool["spec"]["models"][0]["apiKey"] = {"env": "AWS_SECRET_ACCESS_KEY"}
    err = refused(stack, pool)
    assert 'admission webhook "modelpools.skyroute.io" denied the request' in err, err
    assert 'spec.models[0].apiKey.env: "AWS_SECRET_ACCESS_KEY" refused' in err
    assert "--secret-env-prefix" in err


def test_missing_pool_waits_with_a_condition_naming_the_field(stack: Stack) -> None:
    before = serving(stack)
    policy = stack.example("RoutingPolicy", "acmeshop")
    policy["spec"]["rules"][0]["pool"] = "premium"
    result = stack.apply(yaml.safe_dump(policy))
    assert 'Warning: spec.rules[0].pool: pool "premium" not found' in result.stderr
    compiled = stack.wait_condition(RP, "acmeshop", "Compiled", "False", reason="PoolNotFound")
    assert compiled["message"].startswith('spec.rules[0].pool: pool "premium" not found')
    assert "routers keep serving generation 1" in compiled["message"]
    assert compiled["observedGeneration"] == 2
    ready = stack.condition(RP, "acmeshop", "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PoolNotFound"
    warnings = [e for e in stack.events("acmeshop") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["PoolNotFound"]
    time.sleep(0.3)
    assert serving(stack) == before
    # The pool arrives: the waiting generation compiles on its own.
    premium = copy.deepcopy(stack.example("ModelPool", "quality"))
    premium["metadata"]["name"] = "premium"
    stack.apply(yaml.safe_dump(premium))
    stack.wait_condition(RP, "acmeshop", "Ready")
    assert serving(stack)[2] != before[2]


def test_with_the_webhook_down_cel_still_protects_and_the_operator_refuses_the_rest(
    stack: Stack,
) -> None:
    stack.operator.stop()
    policy = stack.example("RoutingPolicy", "acmeshop")
    policy["spec"]["limits"] = {"requestTimeoutMs": 1000, "firstTokenTimeoutMs": 2000}
    result = stack.apply(yaml.safe_dump(policy), check=False)
    assert result.returncode != 0
    assert "firstTokenTimeoutMs must not exceed requestTimeoutMs" in result.stderr
    sneaky = stack.example("RoutingPolicy", "baseline")
    sneaky["metadata"]["name"] = "sneaky"
    sneaky["spec"]["intents"] = [{"name": "x", "patterns": ["(unclosed"]}]
    stack.apply(yaml.safe_dump(sneaky))  # failurePolicy Ignore: admitted without the webhook
    stack.operator = stack.start_operator()
    accepted = stack.wait_condition(RP, "sneaky", "Accepted", "False", reason="Invalid")
    assert accepted["message"].startswith("spec.intents[0].patterns[0]: invalid regular expression")
    assert "sneaky" not in stack.operator_status()["policies"]
    assert stack.condition(RP, "acmeshop", "Ready")["status"] == "True"


def test_an_env_key_admitted_while_the_webhook_was_down_never_serves(stack: Stack) -> None:
    stack.operator.stop()
    pool = stack.example("ModelPool", "cost")
    pool["metadata"]["name"] = "leaky"
    pool["spec"]["models"][0]["apiKey"] = {"env": "REDIS_PASSWORD"}
    stack.apply(yaml.safe_dump(pool))  # failurePolicy Ignore: admitted without the webhook
    stack.operator = stack.start_operator()
    accepted = stack.wait_condition(MP, "leaky", "Accepted", "False", reason="Invalid")
    assert accepted["message"].startswith('spec.models[0].apiKey.env: "REDIS_PASSWORD" refused')
    code, body = http_get(f"http://{stack.admin}/debug/snapshot")
    assert code == 200, body
    pools = {p["name"] for p in json.loads(body)["pools"]}
    assert "cost" in pools and "leaky" not in pools
    assert stack.condition(RP, "acmeshop", "Ready")["status"] == "True"
