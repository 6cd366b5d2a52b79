"""Learned state survives a restart: fleet figures and priors saved, restored, aged."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

from test_control_learning import POLICY, POOLS, Clock, _setup, _stats

from skyroute.control.learning.loop import Learner
from skyroute.control.learning.persist import LearnedStateFile, dump, restore
from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.store import SnapshotStore
from skyroute.control.server import ControlPlane

T0_MS = 1_800_000_000_000


def _fresh(tmp_path: Path, t: float) -> tuple[SnapshotStore, Learner, Clock]:
    store = SnapshotStore(str(tmp_path))
    clock = Clock()
    clock.t = t
    return store, Learner(store, clock=clock), clock


def test_a_restored_learner_carries_on_where_it_stopped_aged_by_the_downtime(
    tmp_path: Path,
) -> None:
    _, learner, _, _ = _setup(tmp_path)
    learner.record([_stats("a", [100.0] * 80), _stats("b", [300.0] * 80, failures=20)])
    learner.record([_stats("a", [120.0] * 40, intent="faq")])
    assert learner.tick()
    before = learner.figures()
    doc = json.loads(json.dumps(dump(learner, wall_ms=T0_MS)))  # through JSON, as on disk

    # Another process: its monotonic clock starts elsewhere; 10 s (one half-life) passed.
    store, again, _ = _fresh(tmp_path, t=7.0)
    got = restore(again, doc, wall_ms=T0_MS + 10_000)
    assert not got.error and got.skipped == 0
    assert got.series == len(learner.models) + len(learner.by_intent) == 5  # 2 + 3
    # The first snapshot the restarted control plane publishes already has the priors.
    store.publish(compile_folder(tmp_path))
    after = again.figures()  # at the policy's half-life, now known
    for model in ("a", "b"):
        assert math.isclose(after[model].requests, before[model].requests / 2, rel_tol=1e-9)
        assert after[model].p95_ms == before[model].p95_ms  # decay keeps the shape
        assert math.isclose(after[model].failure_rate or 0, before[model].failure_rate or 0)
    assert again.priors == learner.priors and again.intent_priors == learner.intent_priors
    assert again.baselines == learner.baselines
    snap = store.snapshot
    assert snap is not None
    a, b = snap.pools[0].candidates
    assert abs(a.observed_p95_ms - learner.priors["a"][0]) < 1e-3
    assert b.observed_failure_rate > 0


def test_a_malformed_series_is_skipped_and_counted_the_rest_restored(tmp_path: Path) -> None:
    _, learner, _, _ = _setup(tmp_path)
    learner.record([_stats("a", [100.0] * 50), _stats("b", [200.0] * 50)])
    doc = dump(learner, wall_ms=T0_MS)
    doc["models"]["b"]["requests"] = float("inf")
    doc["models"]["evil"] = {"bins": [[10**9, 1.0]]}  # a bin key far out of range
    doc["by_intent"].append(["a", "x", {"failures": 5, "requests": 1}])
    doc["priors"]["c"] = [1.0, 7.0, 3.0]  # a failure rate above 1
    _, again, _ = _fresh(tmp_path, t=0.0)
    got = restore(again, doc, wall_ms=T0_MS)
    assert got.skipped == 4 and not got.error
    assert set(again.models) == {"a"} and "c" not in again.priors


def test_an_unreadable_file_restores_nothing_and_never_raises(tmp_path: Path) -> None:
    (tmp_path / "pools.yaml").write_text(POOLS)
    (tmp_path / "policy.yaml").write_text(POLICY.replace("ENABLED", "true"))
    path = tmp_path / "state.json.learned"
    for body, why in [
        (b"{not json", "unreadable"),
        (b'{"format": 99}', "format 1"),
        (b"[1, 2]", "format 1"),
        (b'{"format": 1, "saved_unix_ms": "soon"}', "saved_unix_ms"),
    ]:
        path.write_bytes(body)
        _, learner, _ = _fresh(tmp_path, t=0.0)
        got = LearnedStateFile(path).load(learner)
        assert why in got.error and not learner.models
    _, learner, _ = _fresh(tmp_path, t=0.0)
    missing = LearnedStateFile(tmp_path / "none.learned").load(learner)
    assert not missing.error and missing.series == 0


def test_the_control_plane_saves_on_stop_and_restores_on_start(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "pools.yaml").write_text(POOLS)
    (folder / "policy.yaml").write_text(POLICY.replace("ENABLED", "true"))
    state = str(tmp_path / "state.json")

    async def first() -> dict[str, tuple[float, float, float]]:
        plane = ControlPlane(str(folder), "127.0.0.1:0", state=state, insecure=True)
        await plane.start()
        plane.learner.record([_stats("a", [150.0] * 60), _stats("b", [400.0] * 60)])
        assert plane.learner.tick()
        priors = dict(plane.learner.priors)
        await plane.stop(grace=0.1)
        return priors

    async def second() -> tuple[dict[str, object], float]:
        plane = ControlPlane(str(folder), "127.0.0.1:0", state=state, insecure=True)
        await plane.start()
        restored = plane.learner.as_dict()["restored"]
        snap = plane.store.snapshot
        await plane.stop(grace=0.1)
        assert snap is not None
        return restored, snap.pools[0].candidates[1].observed_p95_ms  # type: ignore[return-value]

    priors = asyncio.run(first())
    assert Path(state + ".learned").is_file()
    restored, b_p95 = asyncio.run(second())
    assert restored["series"] == 4 and not restored["error"], restored  # 2 models, 2 intents
    assert abs(b_p95 - priors["b"][0]) < 1e-3
