"""Invalidation through the CLI and a real router's admin listener, across replicas.

Two real router processes share a real redis-server as their cache and
have an admin token. ``skyroute cache invalidate`` sent to router-0 (by
tenant, by the entry id a hit carried, by policy version, by intent) makes
router-1 miss what was named and keep serving the rest; a missing or wrong
token is refused (401/403) and removes nothing; the routers' stats count it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_cache_routers import POLICY, POOLS, SCENARIO, post, upstream_calls

from harness import Proc, Stack, wait_until
from redis_server import RedisProcess

REPO = Path(__file__).resolve().parents[2]
TOKEN = "t0ken-for-the-router-admin-port"


def skyroute(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    f = tmp_path / "admin.token"
    f.write_text(TOKEN + "\n")
    return f


@pytest.fixture
def shared(
    procs: list[Proc], tmp_path: Path, redis_server: RedisProcess, token_file: Path
) -> Stack:
    return Stack(
        procs,
        tmp_path,
        {"pools.yaml": POOLS, "policy.yaml": POLICY},
        SCENARIO,
        routers=2,
        router_args=["--cache-redis", redis_server.url, "--admin-token-file", str(token_file)],
    )


def cache_state(url: str, text: str, tenant: str = "acme") -> str:
    return post(url, text, tenant)[1]["x-skyroute-cache"]


def invalidate(stack: Stack, token_file: Path, *selector: str) -> subprocess.CompletedProcess[str]:
    admin = stack.router_admins[0].removeprefix("http://")
    return skyroute(
        "cache", "invalidate", "--router", admin, "--admin-token-file", str(token_file), *selector
    )


def test_invalidation_on_one_router_reaches_the_other(shared: Stack, token_file: Path) -> None:
    r0, r1 = shared.routers[0][2], shared.routers[1][2]
    questions = ("How do I reset my password?", "How do I delete my account?")
    for tenant in ("acme", "globex"):
        for q in questions:
            assert cache_state(r0, q, tenant) == "miss"
    for tenant in ("acme", "globex"):
        for q in questions:
            wait_until(
                lambda q=q, tenant=tenant: cache_state(r1, q, tenant) == "hit",
                timeout=5,
                what=f"router-1 serving {tenant}'s {q!r}",
            )

    # Without the token, or with a wrong one: refused, nothing removed.
    url = shared.router_admins[0] + "/cache/invalidate"
    for headers, code in (({}, 401), ({"Authorization": "Bearer wrong-token-0123456789"}, 403)):
        req = urllib.request.Request(
            url, data=b'{"tenant": "acme"}', method="POST", headers=headers
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == code
        assert json.loads(err.value.read())["error"]["message"]
    assert cache_state(r1, questions[0]) == "hit"
    bad = invalidate(shared, token_file, "--entry", "nope")
    assert bad.returncode == 1 and "entry id" in bad.stderr

    # By tenant: acme's answers go on both routers, globex's stay.
    done = invalidate(shared, token_file, "--tenant", "acme")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 cached answers removed (tenant=acme)"), done.stdout
    assert "backend redis" in done.stdout
    for q in questions:
        assert cache_state(r1, q) == "miss"  # and stored again
        assert cache_state(r1, q, "globex") == "hit"

    # By the entry id the hit carried: only that answer.
    _, h, _ = post(r1, "How can I reset my password?", "globex")
    assert h["x-skyroute-cache"] == "hit"
    entry, version = h["x-skyroute-cache-entry"], h["x-skyroute-policy-version"]
    done = invalidate(shared, token_file, "--entry", entry, "--wrong")
    assert done.returncode == 0 and done.stdout.startswith("1 cached answers removed"), done
    assert cache_state(r1, questions[0], "globex") == "miss"
    assert cache_state(r1, questions[1], "globex") == "hit"

    # By policy version: everything the policy's current version stored.
    wait_until(lambda: cache_state(r0, questions[0]) == "hit", timeout=5, what="re-stored")
    done = invalidate(shared, token_file, "--policy-version", version)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) >= 3, done.stdout
    for tenant in ("acme", "globex"):
        for q in questions:
            assert cache_state(r1, q, tenant) == "miss"

    # By intent: all of it.
    for tenant in ("acme", "globex"):
        wait_until(
            lambda tenant=tenant: cache_state(r1, questions[1], tenant) == "hit",
            timeout=5,
            what="re-stored",
        )
    done = invalidate(shared, token_file, "--intent", "faq.account")
    assert done.returncode == 0 and int(done.stdout.split()[0]) >= 2, done
    assert cache_state(r0, questions[1]) == "miss"

    stats = shared.router_status(0)["cache"]["invalidations"]
    assert stats["requests_by_selector"] == {
        "entry": 1,
        "intent": 1,
        "policy_version": 1,
        "tenant": 1,
        "wrong": 1,
    }
    assert stats["entries_removed"] >= 8 and stats["failures"] == 0


def test_an_invalidation_reaches_every_worker_of_a_router(
    procs: list[Proc], tmp_path: Path, token_file: Path
) -> None:
    """--workers 2, in-process caches (one per worker): the worker that gets the call tells
    the other, so neither serves the answer after."""
    stack = Stack(
        procs,
        tmp_path,
        {"pools.yaml": POOLS, "policy.yaml": POLICY},
        SCENARIO,
        router_args=["--workers", "2", "--admin-token-file", str(token_file)],
    )
    url = stack.routers[0][2]
    q = "How do I reset my password?"

    def both_workers_cached() -> bool:
        for _ in range(8):
            post(url, q)
        return upstream_calls(stack) == 2  # each worker missed once, then hit

    wait_until(both_workers_cached, timeout=30, interval=0.1, what="both workers caching")
    done = invalidate(stack, token_file, "--intent", "faq.account")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 cached answers removed (intent=faq.account)"), done.stdout
    for _ in range(16):
        post(url, q)
    assert upstream_calls(stack) <= 4  # at most one miss per worker again
    # A wrong token is refused before any worker is told.
    bad = tmp_path / "bad.token"
    bad.write_text("not-the-token-0123456789")
    refused = invalidate(stack, bad, "--intent", "faq.account")
    assert refused.returncode == 1 and "403" in refused.stderr


def explain_cache(url: str, text: str) -> str:
    body = {"model": "support", "messages": [{"role": "user", "content": text}]}
    req = urllib.request.Request(
        url + "/v1/explain",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json", "x-skyroute-tenant": "acme"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        reasons = json.loads(r.read())["reasons"]
    return next(x for x in reasons if x.startswith(("cacheable", "not cacheable")))


def test_explain_and_status_show_the_threshold_and_the_observed_false_hits(
    shared: Stack, token_file: Path
) -> None:
    r0 = shared.routers[0][2]
    q = "How do I reset my password?"
    assert explain_cache(r0, q) == (
        "cacheable: threshold 0.90 (similarityThreshold), TTL 600 s, no semantic hits served yet"
    )
    assert explain_cache(r0, "write me a poem").startswith("not cacheable")
    post(r0, q)
    wait_until(lambda: cache_state(r0, q) == "hit", timeout=5, what="stored (exact hit)")
    _, h, _ = post(r0, "How can I reset my password?")
    assert h["x-skyroute-cache"] == "hit" and float(h["x-skyroute-cache-similarity"]) < 1.0
    done = invalidate(shared, token_file, "--entry", h["x-skyroute-cache-entry"], "--wrong")
    assert done.returncode == 0, done.stderr
    assert explain_cache(r0, q) == (
        "cacheable: threshold 0.90 (similarityThreshold), TTL 600 s, observed false hits "
        "1 of 1 semantic hits (100.0%, at most 100.0% at 95%)"
    )
    intent = shared.router_status(0)["cache"]["intents"]["faq.account"]
    assert intent["flagged_false_hits"] == 1 and intent["false_hit_estimate"] == 1.0
    assert intent["threshold"] == 0.9 and intent["max_false_hit_rate"] is None
