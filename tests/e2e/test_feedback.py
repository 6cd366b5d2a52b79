"""Feedback end to end: real router, control plane and provider simulator.

- Every answer carries a signed feedback id (header, gRPC field); ``POST
  /v1/feedback`` and ``Router.Feedback`` accept it with a boolean, a score in
  a declared range or a comment, and refuse an unknown, altered or malformed
  id, a bad range or a bad source with an OpenAI-shaped error (gRPC status).
- Quality learned from feedback: two models, two intents, a hidden quality
  per (model, intent) that the offline evals get wrong by a known amount
  (each eval says the truly worse model is better by 0.3). Feedback drawn
  from the hidden quality, through the real router and control plane, makes
  the truly better model take over each intent: its share over the last
  ``WINDOW`` requests of the intent exceeds ``SHARE`` within ``BUDGET``
  feedback events, and Explain shows the prior, n and the posterior.
- ``skyroute outcomes export`` (the real CLI, behind the admin token) writes
  every outcome as a JSON line joined with its feedback (boolean, score,
  comment), no prompt text; ``--since`` filters, a missing token is refused.
- ``skyroute status`` (table and ``--json``) shows the posterior per (model,
  intent): the prior, its weight, the counts and the posterior mean.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
import yaml

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Proc, Stack, control_status, http_get, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

# Hidden quality per (model, intent) and the error of the offline evals: the replay bench's.
from feedback_replay import EVAL_ERROR, HIDDEN
from feedback_replay import SCENARIO as _SCENARIO

BUDGET = 400  # feedback events (both intents together)
WINDOW = 40  # the last requests of an intent the share is measured on
SHARE = 0.7  # the truly better model's share of them (exploration 0.1 caps it near 0.9)

_POOL = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: fb}
spec:
  models:
    - {name: qa, provider: openai, endpoint: "{SIM}/openai/v1", family: fam-a,
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}, quality: {code: QA_CODE, chat: QA_CHAT}}
    - {name: qb, provider: openai, endpoint: "{SIM}/openai/v1", family: fam-b,
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}, quality: {code: QB_CODE, chat: QB_CHAT}}
"""
_POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: fb}
spec:
  default: true
  defaultPool: fb
  intents:
    - {name: code, keywords: ["python"]}
    - {name: chat, keywords: ["hello"]}
  weights: {cost: 0, latency: 0, success: 0, quality: 1.0}
  selection: {mode: scored}
  adaptation: {enabled: true, exploration: 0.1, intervalS: 1, minSamples: 1000000,
               driftLatencyRatio: 0, driftCostRatio: 0, qualityPriorWeight: 5}
"""
_PROMPT = {"code": "write python to sort a list", "chat": "hello, how are you"}


def _files() -> dict[str, str]:
    def wrong(model: str, intent: str) -> str:
        better = HIDDEN[(model, intent)] > 0.6
        return f"{HIDDEN[(model, intent)] + (-EVAL_ERROR if better else EVAL_ERROR):.2f}"

    pool = _POOL
    for m, i in HIDDEN:
        pool = pool.replace(f"{m.upper()}_{i.upper()}", wrong(m, i))
    return {"pools.yaml": pool, "policy.yaml": _POLICY}


@pytest.fixture
def stack(procs: list[Proc], tmp_path: Path) -> Iterator[Stack]:
    yield Stack(procs, tmp_path, _files(), _SCENARIO)


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def _ask(url: str, intent: str) -> tuple[str, str, str]:
    """One completion: (model, intent the router saw, feedback id)."""
    body = {"model": "fb", "messages": [{"role": "user", "content": _PROMPT[intent]}]}
    code, headers, data = _post(url + "/v1/chat/completions", body)
    assert code == 200, data
    h = {k.lower(): v for k, v in headers.items()}
    assert data["id"].startswith("chatcmpl-")
    return h["x-skyroute-model"], h["x-skyroute-intent"], h["x-skyroute-feedback-id"]


def _explain(url: str, intent: str) -> dict[str, Any]:
    """Explain's score parts per candidate for a request of ``intent``."""
    body = {"model": "fb", "messages": [{"role": "user", "content": _PROMPT[intent]}]}
    code, _, d = _post(url + "/v1/explain", body)
    assert code == 200, d
    return {s["model"]: s for s in d["scores"]}


def test_feedback_api_accepts_signed_ids_and_refuses_the_rest(stack: Stack) -> None:
    url = stack.routers[0][2]
    model, intent, fid = _ask(url, "code")
    assert intent == "code"
    fb = url + "/v1/feedback"
    code, _, ok = _post(fb, {"request_id": fid, "value": True, "source": "evaluator"})
    assert code == 200, ok
    assert (ok["model"], ok["intent"]) == (model, "code")
    code, _, ok = _post(fb, {"request_id": fid, "value": 7, "range": [1, 10]})
    assert code == 200, ok
    assert _post(fb, {"request_id": fid, "value": "too terse"})[0] == 200

    def refused(body: dict[str, Any], status: int, param: str) -> str:
        code, _, data = _post(fb, body)
        assert code == status, data
        err = data["error"]
        assert err["param"] == param and err["type"], err
        return str(err["message"])

    forged = fid[:-2] + ("AA" if not fid.endswith("AA") else "BB")
    assert "not issued" in refused({"request_id": forged, "value": True}, 404, "request_id")
    assert "not a feedback id" in refused({"request_id": "abc", "value": True}, 404, "request_id")
    assert "outside" in refused({"request_id": fid, "value": 11, "range": [1, 10]}, 400, "value")
    refused({"request_id": fid, "value": 1, "range": [2, 1]}, 400, "range")
    refused({"request_id": fid, "value": True, "source": "robot"}, 400, "source")
    refused({"request_id": fid, "value": None}, 400, "value")
    refused({"request_id": fid, "value": "x" * 5000}, 400, "value")
    code, _, data = _post(fb, {"request_id": "x" * 20_000, "value": True})
    assert code == 400 and data["error"]["param"] == "body"

    # gRPC: the same answer's id from the CompletionResponse field, and the same refusals.
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        resp = stub.Complete(
            router_pb2.CompletionRequest(
                policy="fb", messages=[router_pb2.Message(role="user", content=_PROMPT["chat"])]
            )
        )
        assert resp.feedback_id.startswith("fb1.")
        got = stub.Feedback(router_pb2.FeedbackRequest(request_id=resp.feedback_id, good=False))
        assert (got.model, got.intent) == (resp.model, "chat")
        with pytest.raises(grpc.RpcError) as e:
            stub.Feedback(router_pb2.FeedbackRequest(request_id=forged, good=True))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e:
            stub.Feedback(router_pb2.FeedbackRequest(request_id=resp.feedback_id))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    def arrived() -> bool:
        q = json.loads(http_get(stack.admin + "/debug/learning")[1])["quality"]
        return bool(q["received"] == 4)

    wait_until(arrived, timeout=10, what="feedback at the control plane")
    q = json.loads(http_get(stack.admin + "/debug/learning")[1])["quality"]["by_model_intent"]
    code_fb = q[f"{model}/code"]
    assert (code_fb["good"], code_fb["scores"], code_fb["comments"]) == (1, 1, 1)
    assert code_fb["score_mean"] == pytest.approx(6 / 9)

    # skyroute status (the real CLI over gRPC) shows the same posteriors: prior, n, posterior.
    rows = {
        (r["model"], r["intent"]): r for r in json.loads(control_status(stack, "--json"))["quality"]
    }
    row = rows[(model, "code")]
    prior = HIDDEN[(model, "code")] + (-EVAL_ERROR if HIDDEN[(model, "code")] > 0.6 else EVAL_ERROR)
    assert (row["good"], row["bad"], row["scores"], row["n"]) == (1, 0, 1, 2)
    assert (row["prior"], row["prior_weight"]) == (pytest.approx(prior), 5)
    assert row["posterior"] == pytest.approx((5 * prior + 1 + 6 / 9) / (5 + 2), abs=1e-5)
    other = rows[(resp.model, "chat")]
    assert (other["good"], other["bad"], other["n"]) == (0, 1, 1)
    assert other["posterior"] < other["prior"]
    table = control_status(stack)
    assert "Quality (feedback posteriors)" in table
    line = next(ln for ln in table.splitlines() if ln.split()[:2] == [model, "code"])
    assert line.split()[2:] == [f"{prior:.3f}", "5", "2", "1", "0", "1", f"{row['posterior']:.3f}"]


def test_feedback_moves_each_intent_to_its_truly_better_model(stack: Stack) -> None:
    url = stack.routers[0][2]
    rng = random.Random(11)
    better = {i: max(("qa", "qb"), key=lambda m: HIDDEN[(m, i)]) for i in ("code", "chat")}
    served: dict[str, list[str]] = {"code": [], "chat": []}

    def share(intent: str) -> float:
        last = served[intent][-WINDOW:]
        return last.count(better[intent]) / len(last) if len(last) == WINDOW else 0.0

    # Before any feedback the wrong evals score each intent's truly worse model best.
    for intent in served:
        scores = _explain(url, intent)
        worse = next(m for m in scores if m != better[intent])
        assert scores[worse].get("score", 0.0) < scores[better[intent]].get("score", 0.0), scores
    events = 0
    while events < BUDGET and not all(share(i) > SHARE for i in served):
        intent = ("code", "chat")[events % 2]
        model, seen, fid = _ask(url, intent)
        assert seen == intent
        served[intent].append(model)
        good = rng.random() < HIDDEN[(model, intent)]
        code, _, data = _post(url + "/v1/feedback", {"request_id": fid, "value": good})
        assert code == 200, data
        events += 1
    shares = {i: share(i) for i in served}
    print(f"after {events} feedback events: share of the truly better model {shares}")
    assert all(s > SHARE for s in shares.values()), (shares, events)

    # Explain shows the offline prior, the observations and the posterior in use.
    scores = _explain(url, "code")
    top = scores[better["code"]]
    # Said on failure: what the router answered and what the control plane had learned
    # (this assertion failed once in a full run and never alone; the next failure names why).
    seen = (scores, http_get(stack.admin + "/debug/learning")[1][:4000])
    assert top["quality_prior"] == pytest.approx(HIDDEN[(better["code"], "code")] - EVAL_ERROR), (
        seen
    )
    assert top.get("quality_n", 0) > 0, seen
    assert top["quality"] > top["quality_prior"], seen


class TokenStack(Stack):
    """The feedback stack with an admin token (``GET /outcomes`` is behind it)."""

    token_file: Path

    def control_args(self) -> list[str]:
        return [*super().control_args(), "--admin-token-file", str(self.token_file)]


def _export(stack: TokenStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "outcomes",
            "export",
            "--admin",
            stack.admin.removeprefix("http://"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_outcomes_export_joins_feedback_as_json_lines(procs: list[Proc], tmp_path: Path) -> None:
    TokenStack.token_file = tmp_path / "admin.token"
    TokenStack.token_file.write_text("export-token-123\n")
    stack = TokenStack(procs, tmp_path, _files(), _SCENARIO)
    url = stack.routers[0][2]
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    sent: dict[str, tuple[str, str, str]] = {}  # request id -> (model, intent, feedback id)
    for n in range(6):
        intent = ("code", "chat")[n % 2]
        raw = client.chat.completions.with_raw_response.create(
            model="fb",
            messages=[{"role": "user", "content": _PROMPT[intent]}],
            extra_headers={"x-request-id": f"exp-{n}"},
        )
        h = raw.headers
        sent[f"exp-{n}"] = (
            h["x-skyroute-model"],
            h["x-skyroute-intent"],
            h["x-skyroute-feedback-id"],
        )
    given = {"exp-0": True, "exp-1": False, "exp-2": 0.8, "exp-3": "needs more detail"}
    for rid, value in given.items():
        code, _, data = _post(url + "/v1/feedback", {"request_id": sent[rid][2], "value": value})
        assert code == 200, data

    token = ["--admin-token-file", str(TokenStack.token_file)]
    out = tmp_path / "outcomes.jsonl"

    def exported() -> list[dict[str, Any]]:
        done = _export(stack, "--since", "1h", "--format", "jsonl", "--out", str(out), *token)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in out.read_text().splitlines()]

    def complete() -> bool:
        rows = exported()
        return len(rows) == 6 and sum(bool(r["feedback"]) for r in rows) == 4

    wait_until(complete, timeout=15, what="six outcomes and four feedback pieces in the export")
    rows = {r["request_id"]: r for r in exported()}
    assert set(rows) == set(sent)
    for rid, (model, intent, _) in sent.items():
        r = rows[rid]
        assert (r["model"], r["intent"], r["policy"], r["pool"]) == (model, intent, "fb", "fb")
        assert r["success"] is True and r["error_class"] == ""
        assert r["latency_ms"] > 0 and r["cost_usd"] > 0 and r["completion_tokens"] > 0
        assert r["policy_version"] and r["unix_ms"] > 0
        assert "messages" not in r and "prompt" not in r
    kinds = {
        rid: [(f["kind"], f["value"], f["source"]) for f in rows[rid]["feedback"]] for rid in given
    }
    assert kinds == {
        "exp-0": [("good", True, "user")],
        "exp-1": [("good", False, "user")],
        "exp-2": [("score", pytest.approx(0.8), "user")],
        "exp-3": [("comment", "needs more detail", "user")],
    }
    assert rows["exp-4"]["feedback"] == [] and rows["exp-5"]["feedback"] == []

    # --format evals: one graded line per rating, which skyroute evals backfill reads as is.
    sample = tmp_path / "graded.jsonl"
    done = _export(stack, "--format", "evals", "--out", str(sample), *token)
    assert done.returncode == 0 and "3 ratings of 6 outcomes" in done.stderr, done.stderr
    lines = [json.loads(x) for x in sample.read_text().splitlines()]
    assert sorted((x["id"], "pass" in x) for x in lines) == [
        ("exp-0", True),
        ("exp-1", True),
        ("exp-2", False),
    ]
    assert all(x["grader"] == "user" and x["pool"] == "fb" for x in lines)
    pools = tmp_path / "pools-copy"
    pools.mkdir()
    # The same pool, in the block style backfill rewrites in place.
    block = yaml.safe_load((stack.source / "pools.yaml").read_text())
    (pools / "pools.yaml").write_text(yaml.safe_dump(block, sort_keys=False))
    backfill = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "evals",
            "backfill",
            "--sample",
            str(sample),
            "--pools",
            str(pools),
            "--min-samples",
            "1",
            "--write",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    want: dict[tuple[str, str], list[float]] = {}
    for rid, value in (("exp-0", 1.0), ("exp-1", 0.0), ("exp-2", 0.8)):
        want.setdefault((sent[rid][0], sent[rid][1]), []).append(value)
    models = {
        m["name"]: m for m in yaml.safe_load((pools / "pools.yaml").read_text())["spec"]["models"]
    }
    for (model, intent), values in want.items():
        assert models[model]["quality"][intent] == pytest.approx(
            sum(values) / len(values), abs=0.01
        )

    # stdout by default; --since in the future exports nothing; the token is required.
    done = _export(stack, *token)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 6, done.stderr
    assert "6 outcomes exported" in done.stderr
    done = _export(stack, "--since", str(int(time.time() * 1000) + 3_600_000), *token)
    assert done.returncode == 0 and done.stdout == "", done.stderr
    done = _export(stack)
    assert done.returncode == 1 and "401" in done.stderr
    done = _export(stack, "--since", "yesterday-ish", *token)
    assert done.returncode == 1 and "--since" in done.stderr
    code, body = http_get(stack.admin + "/outcomes?since=abc")
    assert code == 401, body
    for query, param in (("since=abc", "since"), ("limit=0", "limit")):
        req = urllib.request.Request(
            f"{stack.admin}/outcomes?{query}", headers={"Authorization": "Bearer export-token-123"}
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 400 and param in json.loads(e.value.read())["error"]


def test_outcomes_carry_prompt_text_only_when_the_policy_opts_in(
    procs: list[Proc], tmp_path: Path
) -> None:
    TokenStack.token_file = tmp_path / "admin.token"
    TokenStack.token_file.write_text("export-token-456\n")
    files = _files()
    files["policy.yaml"] = files["policy.yaml"].replace(
        "  selection: {mode: scored}\n",
        "  selection: {mode: scored}\n  outcomes: {promptText: true}\n",
    )
    stack = TokenStack(procs, tmp_path, files, _SCENARIO)
    client = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0)
    asked = {
        "as-written": "Write PYTHON to sort a list, Please",
        "long": "hello " + "x" * 3000,
    }
    for rid, prompt in asked.items():
        client.chat.completions.create(
            model="fb",
            messages=[{"role": "user", "content": prompt}],
            extra_headers={"x-request-id": rid},
        )
    out = tmp_path / "with-prompts.jsonl"

    def rows() -> dict[str, Any]:
        done = _export(stack, "--out", str(out), "--admin-token-file", str(TokenStack.token_file))
        assert done.returncode == 0, done.stderr
        return {r["request_id"]: r for r in map(json.loads, out.read_text().splitlines())}

    wait_until(lambda: len(rows()) == 2, timeout=15, what="two outcomes in the export")
    got = rows()
    assert got["as-written"]["prompt"] == asked["as-written"]  # as written, not lower-cased
    assert got["long"]["prompt"] == asked["long"][:2000]
