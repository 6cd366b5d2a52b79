"""``skyroute cache calibrate``: hit and false-hit rates per threshold on labelled pairs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from skyroute.cli.main import main
from skyroute.router.cache import ResponseCache
from skyroute.router.cache.calibrate import (
    Pair,
    PairsError,
    curve,
    load_pairs,
    pick,
    score_pairs,
    thresholds,
)

DATA = Path(__file__).resolve().parents[1] / "cache" / "data"


def write_pairs(path: Path, limit: int = 120) -> Path:
    rows = []
    for name, same in (("same_meaning.tsv", True), ("different_meaning.tsv", False)):
        with (DATA / name).open(newline="") as f:
            for a, b in list(csv.reader(f, delimiter="\t"))[:limit]:
                rows.append({"a": a, "b": b, "same": same})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_calibrate_prints_the_threshold_that_meets_the_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pairs(tmp_path / "pairs.jsonl")
    assert main(["cache", "calibrate", "--pairs", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pairs"] == {"same": 120, "different": 120}
    chosen = doc["threshold"]
    assert chosen is not None and chosen >= doc["floor"]
    by_t = {p["threshold"]: p for p in doc["curve"]}
    assert by_t[chosen]["fhr"] <= 0.01
    # The lowest such threshold: one step lower breaks the bound or the floor.
    lower = round(chosen - 0.01, 4)
    assert lower < doc["floor"] or by_t[lower]["fhr"] > 0.01
    # Rates fall as the threshold rises.
    hits = [p["hit_rate"] for p in doc["curve"]]
    assert hits == sorted(hits, reverse=True) and hits[0] > hits[-1]

    assert main(["cache", "calibrate", "--pairs", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"set cache.similarityThreshold: {chosen:.2f}" in out and "<- threshold" in out
    # Declaring the bound: at 95% confidence the threshold is never below the point pick.
    assert doc["threshold_95"] >= chosen
    assert doc["shipped_table_threshold"] is not None
    assert doc["shipped_table_threshold"] >= doc["floor"]
    assert f"on these pairs, within the bound at 95% confidence: {doc['threshold_95']:.2f}" in out
    assert "from the table shipped with hashing-512" in out


def test_scores_follow_the_lookup_path() -> None:
    cache = ResponseCache()
    pairs = [
        Pair("How do I reset my password?", "how do i reset my password", True),
        Pair("Can I ship to the UK?", "Can I ship from the UK?", False),
        Pair("How do I reset my password?", "Where is my parcel?", False),
    ]
    exact, direction, unrelated = score_pairs(pairs, cache)
    assert exact == 1.0
    assert direction == float("-inf")  # the meaning check refuses it at any threshold
    assert unrelated < 0.85
    points = curve(pairs, [exact, direction, unrelated], thresholds(0.5, 1.0, 0.1))
    assert all(p.hit_rate == 1.0 and p.false_hit_rate == 0.0 for p in points)
    assert pick(points, 0.0, 0.85) == points[4]  # 0.9: the first step at or above the floor


def test_bad_pairs_files_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x", "b": "y", "same": true}\n{"a": "x", "b": "y", "same": "yes"}\n')
    with pytest.raises(PairsError, match=r"bad.jsonl:2: 'same' must be true or false"):
        load_pairs(bad)
    assert main(["cache", "calibrate", "--pairs", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    bad.write_text("not json\n")
    with pytest.raises(PairsError, match=r":1: not JSON"):
        load_pairs(bad)
    bad.write_text('{"a": "x", "b": "y", "same": true}\n')
    with pytest.raises(PairsError, match="both same-meaning and different-meaning"):
        load_pairs(bad)
    assert main(["cache", "calibrate", "--pairs", str(tmp_path / "missing.jsonl")]) == 2
