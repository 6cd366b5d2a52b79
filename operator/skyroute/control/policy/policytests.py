"""Routing cases written in the policy, run by the router's own decision code.

A RoutingPolicy is code: keyword lists, patterns, rule order and pool
prices decide where a customer's question goes, and a harmless-looking edit
(a new keyword on an earlier intent, a cheaper model in a pool, a rule moved
up) silently sends refunds to the expensive pool or medical questions to the
cheap one. ``spec.tests`` pins the cases that matter: a request (the prompt
and the signals a router would see) and what the decision must be (pool,
first model, intent, cacheable; only the given fields are checked).

The tests only mean something if they run the code routers run. A second,
simplified "expected routing" implementation in the control plane would
drift from the router's and pass tests the fleet then fails. So this is the
one control-plane module allowed to import the data plane, and only its
pure decision library (``skyroute.router.table`` and ``skyroute.router.
decide``: no I/O, no network, no provider clients). tests/test_contract.py
enforces that exception and no other.

Decisions here are deterministic on purpose: no live statistics (the
snapshot's static prices and quality evals only), and the exploration coin
always lands on "exploit". A test states what a policy version does by
design, not what one router happened to do under load.

Each policy is decided on its own routing table, built from a copy of the
snapshot holding that policy and the pools it references, with every API key
reference removed: the control plane never reads a key, not even into a
throw-away table. Results are cached by the policy's content version plus its
tests (the version hashes the policy with its pools, which is everything a
decision depends on), so an operator re-checking the same objects on every
event pays for a table only when something it depends on changed.

The router modules are imported on first use, not at import time: most
compiles have no tests, and ``skyroute control`` should not load the data
plane's dependencies for nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skyroute.control.policy.errors import Problem
from skyroute.control.policy.model import (
    KIND_POLICY,
    PolicyTest,
    PolicyTestExpect,
    PolicyTestRequest,
    RoutingPolicy,
)
from skyroute.control.policy.validate import Parsed
from skyroute.v1 import snapshot_pb2

if TYPE_CHECKING:
    from skyroute.router.decide import Signals
    from skyroute.router.table import PolicyTable

EXPECT_FIELDS = ("pool", "model", "intent", "cacheable")


def _never_explore() -> float:
    # decide() explores when draw() < exploration, and exploration is at most 0.5.
    return 1.0


def _shown(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if value else "(none)"


@dataclass(frozen=True, slots=True)
class Decided:
    """The parts of a router decision a test can check, and how the router got there."""

    intent: str
    intent_source: str
    confidence: float
    rule: str
    pool: str
    chain: tuple[str, ...]
    cacheable: bool

    @property
    def model(self) -> str:
        """The first model of the chain ('' when no candidate can serve the request)."""
        return self.chain[0] if self.chain else ""

    def value(self, field: str) -> str | bool:
        if field == "cacheable":
            return self.cacheable
        return {"pool": self.pool, "model": self.model, "intent": self.intent}[field]

    def why(self) -> str:
        return f'intent "{self.intent}" from {self.intent_source}, rule "{self.rule}"'

    def as_dict(self) -> dict[str, object]:
        return {
            "intent": self.intent,
            "intent_source": self.intent_source,
            "confidence": round(self.confidence, 4),
            "rule": self.rule,
            "pool": self.pool,
            "model": self.model,
            "chain": list(self.chain),
            "cacheable": self.cacheable,
        }


def expected(expect: PolicyTestExpect) -> list[tuple[str, str | bool]]:
    """The fields a test checks, in a fixed order, with their expected values."""
    out: list[tuple[str, str | bool]] = []
    for field in EXPECT_FIELDS:
        value = getattr(expect, field)
        if value is not None:
            out.append((field, value))
    return out


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One test of one policy: what was expected, what the router decided."""

    policy: str  # namespace/name
    index: int
    test: PolicyTest
    got: Decided
    failed: tuple[str, ...]  # expect fields that do not hold, in EXPECT_FIELDS order

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def name(self) -> str:
        return self.test.name

    def expected_text(self) -> str:
        return ", ".join(f"{f} {_shown(v)}" for f, v in expected(self.test.expect))

    def got_text(self) -> str:
        return ", ".join(f"{f} {_shown(self.got.value(f))}" for f, _ in expected(self.test.expect))

    def message(self) -> str:
        """``test "x" failed: expected pool "a", got pool "b" (intent ... rule ...)``."""
        if self.passed:
            return f'test "{self.name}" passed'
        want = " and ".join(
            f"{f} {_shown(v)}" for f, v in expected(self.test.expect) if f in self.failed
        )
        got = " and ".join(f"{f} {_shown(self.got.value(f))}" for f in self.failed)
        return f'test "{self.name}" failed: expected {want}, got {got} ({self.got.why()})'

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "name": self.name,
            "passed": self.passed,
            "expected": {f: v for f, v in expected(self.test.expect)},
            "failed": list(self.failed),
            "got": self.got.as_dict(),
            "message": self.message(),
        }


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """All tests of one policy; ``error`` when its routing table could not be built."""

    policy: str  # namespace/name
    cases: tuple[CaseResult, ...]
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and all(c.passed for c in self.cases)


class ResultCache:
    """Policy runs by (policy version, tests): the same inputs decide the same way."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._runs: OrderedDict[tuple[str, tuple[PolicyTest, ...]], PolicyRun] = OrderedDict()

    def get(self, key: tuple[str, tuple[PolicyTest, ...]]) -> PolicyRun | None:
        run = self._runs.get(key)
        if run is not None:
            self._runs.move_to_end(key)
        return run

    def put(self, key: tuple[str, tuple[PolicyTest, ...]], run: PolicyRun) -> None:
        self._runs[key] = run
        self._runs.move_to_end(key)
        while len(self._runs) > self._size:
            self._runs.popitem(last=False)


def keyless_snapshot(
    snapshot: snapshot_pb2.Snapshot, policies: Iterable[str] | None = None
) -> snapshot_pb2.Snapshot:
    """A copy without API key references, optionally only ``policies`` and their pools."""
    out = snapshot_pb2.Snapshot(version=snapshot.version or "unversioned")
    wanted = None if policies is None else set(policies)
    used: set[str] = set()
    for policy in snapshot.policies:
        if wanted is None or policy.name in wanted:
            out.policies.append(policy)
            used.update(r.pool for r in policy.rules)
            used.add(policy.default_pool)
    for pool in snapshot.pools:
        if wanted is None or pool.name in used:
            copy = out.pools.add()
            copy.CopyFrom(pool)
            for candidate in copy.candidates:
                candidate.api_key_env = ""
                candidate.api_key_file = ""
                for site in candidate.endpoints:
                    site.api_key_env = site.api_key_file = ""
    if wanted is None and snapshot.default_policy:
        out.default_policy = snapshot.default_policy
    return out


def routing_tables(snapshot: snapshot_pb2.Snapshot) -> dict[str, PolicyTable]:
    """Every policy's router table (keys removed); raises the router's SnapshotError."""
    from skyroute.router.table import build_table

    return build_table(keyless_snapshot(snapshot)).policies


def signals(request: PolicyTestRequest) -> Signals:
    """What a router sees for this request: the prompt as the last user message."""
    from skyroute.router.decide import signals_from_messages

    s = signals_from_messages(
        [{"role": "user", "content": request.prompt}],
        request.tools,
        locale=request.locale or "",
        user_tier=request.user_tier or "",
        tenant=request.tenant or "",
        declared_intent=request.intent or "",
    )
    if request.prompt_tokens is not None:
        s.prompt_tokens = request.prompt_tokens
    return s


def decide_request(table: PolicyTable, s: Signals) -> Decided:
    """The router's decision, deterministic: no live statistics, no exploration."""
    from skyroute.router.decide import decide

    d = decide(table, s, stats=None, draw=_never_explore)
    return Decided(
        intent=d.intent,
        intent_source=d.intent_source,
        confidence=d.confidence,
        rule=d.rule,
        pool=d.pool,
        chain=tuple(c.model for c in d.chain),
        cacheable=d.cacheable,
    )


def check(policy: str, index: int, test: PolicyTest, table: PolicyTable) -> CaseResult:
    got = decide_request(table, signals(test.request))
    failed = tuple(f for f, want in expected(test.expect) if got.value(f) != want)
    return CaseResult(policy=policy, index=index, test=test, got=got, failed=failed)


def _run_one(snapshot: snapshot_pb2.Snapshot, policy: RoutingPolicy) -> PolicyRun:
    from skyroute.router.table import SnapshotError, build_table

    ref = policy.ref
    name = policy.metadata.name
    if not any(p.name == name for p in snapshot.policies):
        return PolicyRun(ref, (), f'policy "{name}" is not in the compiled snapshot')
    try:
        table = build_table(keyless_snapshot(snapshot, [name])).policies[name]
    except SnapshotError as exc:
        return PolicyRun(ref, (), f"a router would refuse this policy: {exc}")
    return PolicyRun(ref, tuple(check(ref, i, t, table) for i, t in enumerate(policy.spec.tests)))


def run_policies(
    snapshot: snapshot_pb2.Snapshot,
    policies: Iterable[RoutingPolicy],
    cache: ResultCache | None = None,
) -> list[PolicyRun]:
    """Run the tests of every policy that has some, against ``snapshot``, in the given order."""
    versions = {p.name: p.version for p in snapshot.policies}
    runs: list[PolicyRun] = []
    for policy in policies:
        if not policy.spec.tests:
            continue
        key = (versions.get(policy.metadata.name, ""), tuple(policy.spec.tests))
        run = cache.get(key) if cache is not None and key[0] else None
        if run is None:
            run = _run_one(snapshot, policy)
            if cache is not None and key[0]:
                cache.put(key, run)
        runs.append(run)
    return runs


def _policy_of(item: RoutingPolicy | Parsed) -> RoutingPolicy | None:
    obj = item.obj if isinstance(item, Parsed) else item
    return obj if isinstance(obj, RoutingPolicy) else None


def problems_of(
    runs: Iterable[PolicyRun],
    policies: Sequence[RoutingPolicy | Parsed],
    file_of: Mapping[str, str] | None = None,
) -> list[Problem]:
    """One problem per failing case (``spec.tests[i]``), located like validation problems.

    A ``Parsed`` policy is located by its document (file and line); a bare
    ``RoutingPolicy`` by ``file_of[namespace/name]`` (or ``file_of[name]``).
    """
    docs = {p.obj.ref: p for p in policies if isinstance(p, Parsed)}
    files = file_of or {}
    problems: list[Problem] = []
    for run in runs:
        parsed = docs.get(run.policy)
        if run.error:
            problems.append(
                _locate(run.policy, parsed, files, None, f"cannot run the tests: {run.error}")
            )
        problems.extend(
            _locate(run.policy, parsed, files, c.index, c.message())
            for c in run.cases
            if not c.passed
        )
    return problems


def _locate(
    ref: str, parsed: Parsed | None, files: Mapping[str, str], index: int | None, message: str
) -> Problem:
    path: tuple[str | int, ...] = ("spec", "tests") if index is None else ("spec", "tests", index)
    if parsed is not None:
        return parsed.doc.problem(path, message)
    name = ref.split("/", 1)[-1]
    return Problem(
        file=files.get(ref, files.get(name, "<objects>")),
        obj=f"{KIND_POLICY} {ref}",
        path="spec.tests" if index is None else f"spec.tests[{index}]",
        message=message,
    )


def run_policy_tests(
    snapshot: snapshot_pb2.Snapshot,
    policies: Sequence[RoutingPolicy | Parsed],
    file_of: Mapping[str, str] | None = None,
    cache: ResultCache | None = None,
) -> list[Problem]:
    """Every failing test of ``policies`` against ``snapshot``, as problems (empty: all pass)."""
    objs = [p for p in (_policy_of(item) for item in policies) if p is not None]
    return problems_of(run_policies(snapshot, objs, cache), policies, file_of)
