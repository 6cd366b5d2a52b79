"""The spend ledger, end to end: keyed requests in, the same cents out, once, after a restart.

A real control plane (``skyroute control --state``, an admin token) with two
Tenants in its folder, keys from ``skyroute keys create``, one real router,
the provider simulator upstream. Requests go through the official ``openai``
SDK with ``Authorization: Bearer``, unary and streamed, one through a
delegating gateway tenant's sub-tenant. Then:

- the ledger's total per tenant equals the sum of the per-request costs the
  responses reported (``x-skyroute-cost-usd``, the stream's final chunk) to
  the cent, per model and per key; ``skyroute spend`` prints the same;
- a report sent twice over real gRPC (a subscribed node) is counted once, and
  one naming a tenant or key the snapshot lacks is refused and counted;
- ``GET /spend`` needs the admin token; ``skyroute status`` shows the spend
  and budget left; ``/metrics`` has the spend counter;
- a restart of the control plane keeps the ledger, including the charges it
  has already counted (a re-sent report after the restart is still once).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest

from skyroute.router import tokens
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

from harness import BASE_POOL, REPO, Proc, Stack, http_get, keys_cli, wait_until

pytestmark = pytest.mark.timeout(240)

FILES = {
    "pool.yaml": BASE_POOL
    + """\
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: cheap}
spec:
  models:
    - name: cheap-model
      provider: openai
      endpoint: "{SIM}/openai/v1"
      pricing: {inputPerMTok: 0.3, outputPerMTok: 0.7}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: cutp}
spec:
  models:
    - name: cut-model
      provider: openai
      endpoint: "{SIM}/openai/v1"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 1000.0}
""",
    "policies.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: shop}
spec:
  default: true
  defaultPool: base
  rules:
    - {name: klingon, match: {locales: [tlh]}, pool: cheap}
    - {name: cut, match: {locales: [cu]}, pool: cutp}
""",
    "tenants.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: shop}
spec:
  policies: [shop]
  budgets:
    - {name: daily, usd: 5, period: day}
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: gateway}
spec:
  policies: [shop]
  delegate: true
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: streamer}
spec:
  policies: [shop]
""",
}
SCENARIO = """\
seed: 11
defaults:
  ttft_ms: {p50: 1, p95: 2}
  tokens_per_s: 50000
  completion_tokens: {p50: 40, p95: 120, min: 5, max: 200}
  stream_chunk_tokens: 2
  error_rate: 0
models:
  cut-model:
    error_rate: 1.0
    errors: {stream_cut: 1}
    completion_tokens: {p50: 60, p95: 80, min: 40, max: 200}
"""
TOKEN = "spend-test-admin-token-0123456789abcdef"


class LedgerStack(Stack):
    """The harness's stack with ``--state`` (the ledger's file) and an admin token."""

    state: Path
    token_file: Path

    def control_args(self) -> list[str]:
        return [
            *super().control_args(),
            "--state",
            str(self.state),
            "--admin-token-file",
            str(self.token_file),
        ]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LedgerStack, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("spend")
    LedgerStack.state = tmp / "state.json"
    LedgerStack.token_file = tmp / "admin.token"
    LedgerStack.token_file.write_text(TOKEN + "\n")
    procs: list[Proc] = []
    try:
        stack = LedgerStack(procs, tmp, FILES, SCENARIO)
        keys = {
            name: keys_cli("create", "--tenant", tenant, "--source", str(stack.source))
            for name, tenant in (
                ("shop-a", "shop"),
                ("shop-b", "shop"),
                ("gw", "gateway"),
                ("cut", "streamer"),
            )
        }
        wait_until(lambda: stack.router_status()["door"]["keys"] == 4, what="keys pushed")
        yield stack, keys
    finally:
        for p in reversed(procs):
            p.stop()


def spend(stack: Stack, tenant: str, by: str = "model", token: str | None = TOKEN) -> Any:
    req = urllib.request.Request(
        f"{stack.admin}/spend?tenant={tenant}&by={by}",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return {"status": e.code, **json.loads(e.read())}


def key_id(key: str) -> str:
    return key.split("-")[2]  # sk-sr-<id>-<secret>


def ask(stack: Stack, key: str, text: str, **headers: str) -> float:
    """One unary request; the cost its response reported."""
    client = openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key=key, max_retries=0, default_headers=headers
    )
    raw = client.chat.completions.with_raw_response.create(
        model="shop", messages=[{"role": "user", "content": text}]
    )
    raw.parse()
    return float(raw.headers["x-skyroute-cost-usd"])


def ask_stream(stack: Stack, key: str, text: str) -> float:
    client = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key=key, max_retries=0)
    cost = None
    for chunk in client.chat.completions.create(
        model="shop",
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        extra = (chunk.model_extra or {}).get("x_skyroute")
        if extra is not None:
            cost = float(extra["cost_usd"])
    assert cost is not None, "the final chunk names the cost"
    return cost


@pytest.fixture(scope="module")
def sent(keyed: tuple[LedgerStack, dict[str, str]]) -> dict[str, Any]:
    """N keyed requests; the costs their responses reported, per tenant, key and model."""
    stack, keys = keyed
    costs: dict[str, list[float]] = {"shop": [], "gateway": []}
    by_key: dict[str, float] = {}
    by_model: dict[str, float] = {}
    plan = [
        ("shop-a", "a question about shipping", "base-model", {}),
        ("shop-a", "another one, a bit longer than the first question", "base-model", {}),
        ("shop-b", "nuqneH, where is my parcel", "cheap-model", {"x-skyroute-locale": "tlh"}),
        ("shop-b", "a third ordinary question", "base-model", {}),
        ("gw", "a question from a sub-tenant", "base-model", {"x-skyroute-tenant": "team1"}),
    ]
    for name, text, model, headers in plan:
        c = ask(stack, keys[name], text, **headers)
        tenant = "gateway" if name == "gw" else "shop"
        costs[tenant].append(c)
        by_key[key_id(keys[name])] = by_key.get(key_id(keys[name]), 0.0) + c
        if tenant == "shop":
            by_model[model] = by_model.get(model, 0.0) + c
    c = ask_stream(stack, keys["shop-a"], "a streamed question, please")
    costs["shop"].append(c)
    by_key[key_id(keys["shop-a"])] += c
    by_model["base-model"] += c
    wait_until(
        lambda: (
            spend(stack, "shop")["total"]["requests"] == 5
            and spend(stack, "gateway")["total"]["requests"] == 1
        ),
        what="the ledger counted every request",
    )
    return {"costs": costs, "by_key": by_key, "by_model": by_model}


def test_the_ledger_equals_the_costs_the_responses_reported(
    keyed: tuple[LedgerStack, dict[str, str]], sent: dict[str, Any]
) -> None:
    stack, keys = keyed
    shop = spend(stack, "shop")
    assert all(c > 0 for c in sent["costs"]["shop"])
    assert abs(shop["total"]["cost_usd"] - sum(sent["costs"]["shop"])) < 0.005  # to the cent
    assert abs(shop["total"]["cost_usd"] - sum(sent["costs"]["shop"])) < 1e-6  # and closer
    models = {r["model"]: r for r in shop["rows"]}
    assert set(models) == set(sent["by_model"])
    for model, cost in sent["by_model"].items():
        assert abs(models[model]["cost_usd"] - cost) < 1e-6
    assert models["cheap-model"]["requests"] == 1 and models["base-model"]["requests"] == 4
    by_key = {r["key_id"]: r["cost_usd"] for r in spend(stack, "shop", by="key")["rows"]}
    ids = {key_id(keys["shop-a"]), key_id(keys["shop-b"])}
    assert set(by_key) == ids
    for kid in ids:
        assert abs(by_key[kid] - sent["by_key"][kid]) < 1e-6
    # The sub-tenant's request is billed to the delegating tenant, under its key.
    gw = spend(stack, "gateway", by="key")
    assert [r["key_id"] for r in gw["rows"]] == [key_id(keys["gw"])]
    assert abs(gw["total"]["cost_usd"] - sent["costs"]["gateway"][0]) < 1e-6
    (budget,) = shop["budgets"]
    assert budget["name"] == "daily" and budget["period"] == "day"
    assert abs(budget["left_usd"] - (5 - sum(sent["costs"]["shop"]))) < 1e-6


def _cli(
    stack: LedgerStack, *args: str, command: tuple[str, ...] = ("spend",)
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            *command,
            "--admin",
            stack.admin.removeprefix("http://"),
            "--admin-token-file",
            str(stack.token_file),
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_skyroute_spend_prints_the_per_model_sum(
    keyed: tuple[LedgerStack, dict[str, str]], sent: dict[str, Any]
) -> None:
    stack, _ = keyed
    r = _cli(stack, "--tenant", "shop", "--since", "2h", "--json")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    rows = {row["model"]: row["cost_usd"] for row in body["rows"]}
    for model, cost in sent["by_model"].items():
        assert abs(rows[model] - cost) < 1e-6
    table = _cli(stack, "--tenant", "shop", "--since", "today")
    assert table.returncode == 0, table.stderr
    total = f"{sum(sent['costs']['shop']):.6f}"
    assert "cheap-model" in table.stdout and "base-model" in table.stdout
    assert total in table.stdout, table.stdout
    assert "budget daily" in table.stdout
    # A --since after every request counts from its hour on (whole UTC hours): never more.
    future = _cli(stack, "--tenant", "shop", "--since", str(int(time.time() * 1000) + 7_200_000))
    assert future.returncode == 0 and "total" in future.stdout
    bad = _cli(stack, "--tenant", "shop", "--since", "last tuesday")
    assert bad.returncode == 1 and "--since" in bad.stderr


def test_spend_matches_the_outcome_log_to_the_cent(
    keyed: tuple[LedgerStack, dict[str, str]], sent: dict[str, Any]
) -> None:
    """`skyroute spend` per model equals the exported outcome log's sum for that payer."""
    stack, keys = keyed
    log = _cli(stack, "--since", "2h", command=("outcomes", "export"))
    assert log.returncode == 0, log.stderr
    rows = [json.loads(line) for line in log.stdout.splitlines() if line.strip()]
    assert rows and all("sk-sr-" not in json.dumps(r) for r in rows)  # public ids only
    for tenant in ("shop", "gateway"):
        mine = [r for r in rows if r["account"] == tenant]
        by_model: dict[str, float] = {}
        by_key: dict[str, float] = {}
        for r in mine:
            by_model[r["model"]] = by_model.get(r["model"], 0.0) + r["cost_usd"]
            by_key[r["key_id"]] = by_key.get(r["key_id"], 0.0) + r["cost_usd"]
        assert len({r["charge_id"] for r in mine}) == len(mine)  # one charge each
        out = _cli(stack, "--tenant", tenant, "--since", "2h", "--json")
        assert out.returncode == 0, out.stderr
        ledger = json.loads(out.stdout)
        assert {row["model"]: row["cost_usd"] for row in ledger["rows"]}.keys() == by_model.keys()
        for row in ledger["rows"]:
            assert round(row["cost_usd"], 2) == round(by_model[row["model"]], 2)  # to the cent
            assert abs(row["cost_usd"] - by_model[row["model"]]) < 1e-6  # and closer
        assert ledger["total"]["requests"] == len(mine)
        by_key_ledger = spend(stack, tenant, by="key")["rows"]
        for row in by_key_ledger:
            assert abs(row["cost_usd"] - by_key[row["key_id"]]) < 1e-6
    # The sub-tenant's request: its own tenant in the log, billed to the gateway.
    (gw,) = [r for r in rows if r["account"] == "gateway"]
    assert gw["tenant"] == "gateway/team1" and gw["key_id"] == key_id(keys["gw"])


def test_spend_needs_the_admin_token(keyed: tuple[LedgerStack, dict[str, str]]) -> None:
    stack, _ = keyed
    assert spend(stack, "shop", token=None)["status"] == 401
    assert spend(stack, "shop", token="wrong")["status"] == 403
    code, _ = http_get(f"{stack.admin}/spend?tenant=shop&since=yesterday")
    assert code == 401  # refused before anything else is looked at
    req = urllib.request.Request(
        f"{stack.admin}/spend?tenant=shop&since=yesterday",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 400


def test_status_and_metrics_show_the_spend(
    keyed: tuple[LedgerStack, dict[str, str]], sent: dict[str, Any]
) -> None:
    stack, _ = keyed
    entries = {e["tenant"]: e for e in stack.status()["spend"]}
    shop = entries["shop"]
    assert shop["period"] == "day" and shop["requests"] == 5
    assert abs(shop["usd"] - sum(sent["costs"]["shop"])) < 1e-6
    assert abs(shop["budget_left_usd"] - (5 - shop["usd"])) < 1e-6
    assert entries["gateway"]["budget_left_usd"] is None  # no budget
    r = subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", "status", "--control", stack.control_addr],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "BUDGET LEFT" in r.stdout and "gateway" in r.stdout
    code, body = http_get(stack.admin + "/metrics")
    assert code == 200
    text = body.decode()
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("skyroute_control_spend_USD_total")
        and 'skyroute_tenant="shop"' in ln
        and 'gen_ai_request_model="cheap-model"' in ln
    )
    assert abs(float(line.split()[-1]) - sent["by_model"]["cheap-model"]) < 1e-6


def _outcome(status: dict[str, Any], charge: str, account: str, key: str) -> Any:
    return distribution_pb2.Outcome(
        request_id=f"req-{charge}",
        policy="shop",
        snapshot_version=status["version"],
        policy_version=status["policies"]["shop"],
        pool="base",
        model="base-model",
        cost_usd=0.25,
        prompt_tokens=10,
        completion_tokens=20,
        unix_ms=int(time.time() * 1000),
        tenant=account,
        account=account,
        key_id=key,
        charge_id=charge,
    )


def _report(address: str, node: str, *outcomes: Any) -> int:
    """Subscribe as ``node`` (a real gRPC stream), then report ``outcomes`` in one batch."""
    channel = grpc.insecure_channel(address)
    stub = distribution_pb2_grpc.PolicyDistributionStub(channel)
    outbox: queue.Queue[distribution_pb2.SnapshotRequest | None] = queue.Queue()
    me = distribution_pb2.Node(id=node, hostname="test")
    outbox.put(distribution_pb2.SnapshotRequest(node=me))
    responses = stub.StreamSnapshots(iter(outbox.get, None))
    try:
        first = next(responses)
        outbox.put(
            distribution_pb2.SnapshotRequest(
                node=me, version_info=first.version_info, response_nonce=first.nonce
            )
        )
        batch = distribution_pb2.OutcomeBatch(node=me, outcomes=list(outcomes))
        return int(stub.ReportOutcomes(iter([batch]), timeout=10).received)
    finally:
        outbox.put(None)
        responses.cancel()
        channel.close()


def test_a_report_sent_twice_counts_once_and_survives_a_restart(
    keyed: tuple[LedgerStack, dict[str, str]], sent: dict[str, Any]
) -> None:
    stack, keys = keyed
    status = stack.status()
    before = spend(stack, "shop")["total"]
    kid = key_id(keys["shop-a"])
    dup = _outcome(status, "charge-dup-1", "shop", kid)
    assert _report(stack.control_addr, "peer-1", dup) == 1
    assert _report(stack.control_addr, "peer-1", dup) == 1  # accepted, not charged
    after = spend(stack, "shop")
    assert after["total"]["requests"] == before["requests"] + 1
    assert after["total"]["cost_nano_usd"] == before["cost_nano_usd"] + 250_000_000
    assert after["duplicates"] >= 1
    # Charges the snapshot cannot have are refused: an unknown tenant, another tenant's key.
    wrong = [
        _outcome(status, "charge-x", "nobody", ""),
        _outcome(status, "charge-y", "gateway", kid),
    ]
    assert _report(stack.control_addr, "peer-1", *wrong) == 0
    rejected = stack.status()["rejected"]
    assert int(rejected.get("unknown_tenant", 0)) >= 1
    assert int(rejected.get("unknown_key", 0)) >= 1
    assert spend(stack, "gateway")["total"]["requests"] == 1

    # Restart the control plane: the ledger (and what it already counted) is back.
    stack.control.stop()
    assert stack.state.with_name("state.json.spend").is_file()
    stack.control.start()
    wait_until(lambda: http_get(stack.admin + "/healthz")[0] == 200, what="control back")
    restarted = spend(stack, "shop")
    assert restarted["total"] == after["total"]
    assert restarted["rows"] == after["rows"]
    wait_until(
        lambda: any(r["node"]["id"] == "router-0" for r in stack.status()["routers"]),
        what="the router reconnected",
    )
    status = stack.status()
    again = _outcome(status, "charge-dup-1", "shop", kid)
    assert _report(stack.control_addr, "peer-2", again) == 1
    assert spend(stack, "shop")["total"] == after["total"]  # counted before the restart
    # And new requests keep adding, exactly.
    c = ask(stack, keys["shop-b"], "one more after the restart")
    wait_until(
        lambda: spend(stack, "shop")["total"]["requests"] == after["total"]["requests"] + 1,
        what="the new request counted",
    )
    total = spend(stack, "shop")["total"]["cost_usd"]
    assert abs(total - (after["total"]["cost_usd"] + c)) < 1e-6


def test_a_stream_cut_midway_is_charged_for_what_arrived(
    keyed: tuple[LedgerStack, dict[str, str]],
) -> None:
    """No usage report: the prompt and the text received, as the door settles it (not $0)."""
    stack, keys = keyed
    client = openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1",
        api_key=keys["cut"],
        max_retries=0,
        default_headers={"x-skyroute-locale": "cu"},
    )
    text = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "stream me"}], stream=True
        ):
            text.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(text), "some text arrived before the cut"
    wait_until(
        lambda: spend(stack, "streamer")["total"]["requests"] == 1, what="the cut stream counted"
    )
    (row,) = spend(stack, "streamer")["rows"]
    assert row["model"] == "cut-model"
    # At $1000 per million output tokens, the received text's tokens dominate the cost.
    received = tokens.received_tokens("".join(text))
    assert received > 0
    assert received * 1000 / 1e6 <= row["cost_usd"] < (received * 1000 + 100) / 1e6


def test_a_router_stopped_right_after_its_requests_loses_no_charge(
    keyed: tuple[LedgerStack, dict[str, str]],
) -> None:
    """SIGTERM just after the last answer: the stopping router sends its buffered charges
    (its outcome reporter batches every 0.25 s) before it exits; the restarted one goes on."""
    stack, keys = keyed
    before = spend(stack, "shop")["total"]
    costs = [
        ask(stack, keys["shop-a"], f"a question before the stop, number {i}") for i in range(4)
    ]
    router = stack.routers[0][0]
    router.stop()  # at once: the last outcomes are still in the reporter's buffer
    assert "outcomes_unsent_at_stop" not in router.output()
    wait_until(
        lambda: spend(stack, "shop")["total"]["requests"] == before["requests"] + 4,
        what="the stopped router's last charges counted",
    )
    router.start()
    wait_until(lambda: http_get(stack.routers[0][2] + "/readyz")[0] == 200, what="router back")
    costs.append(ask(stack, keys["shop-a"], "a question after the router came back"))
    wait_until(
        lambda: spend(stack, "shop")["total"]["requests"] == before["requests"] + 5,
        what="the restarted router's charge counted",
    )
    total = spend(stack, "shop")["total"]["cost_usd"]
    assert abs(total - (before["cost_usd"] + sum(costs))) < 1e-6
