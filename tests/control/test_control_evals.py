"""``skyroute evals backfill``: means, min-samples, provenance, rewrite and bad input.

Every test runs on a private copy of the AcmeShop example (the ``acmeshop``
fixture), with samples small enough to check the means by hand, and ends by
compiling the rewritten folder: a backfill is only useful if the snapshot the
routers get carries the new scores.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from skyroute.control.learning.evals import backfill, main
from skyroute.control.learning.evalsample import EvalsError, read_sample
from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.errors import PolicyError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "acmeshop" / "evals-sample.jsonl"


def write_sample(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def run(sample: Path, pools: Path, **kwargs: Any) -> tuple[int, str]:
    buffer = io.StringIO()
    code = main(str(sample), str(pools), console=Console(file=buffer, width=200), **kwargs)
    return code, buffer.getvalue()


def models(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    docs = yaml.safe_load_all((folder / "pools.yaml").read_text())
    return {(d["metadata"]["name"], m["name"]): m for d in docs if d for m in d["spec"]["models"]}


def candidates(folder: Path) -> dict[tuple[str, str], dict[str, float]]:
    snap = compile_folder(folder)
    return {(p.name, c.model): dict(c.quality) for p in snap.pools for c in p.candidates}


# Hand-checkable: flash/faq.refund (0.5 + 1.0 + 0) / 3 = 0.5; gpt-5.2/support.general
# 3 of 4 correct = 0.75; opus/tools.invoice has 2 samples, below --min-samples 3.
SMALL = [
    {"intent": "faq.refund", "model": "gemini-3-flash", "score": 0.5},
    {"intent": "faq.refund", "model": "gemini-3-flash", "score": 1.0, "id": "r2"},
    {"intent": "faq.refund", "model": "gemini-3-flash", "pass": False, "grader": "human"},
    {"intent": "support.general", "model": "gpt-5.2", "correct": True},
    {"intent": "support.general", "model": "gpt-5.2", "correct": True, "meta": {"k": 1}},
    {"intent": "support.general", "model": "gpt-5.2", "correct": False},
    {"intent": "support.general", "model": "gpt-5.2", "correct": True, "pool": "balanced"},
    {"intent": "tools.invoice", "model": "claude-4.5-opus", "score": 0.1},
    {"intent": "tools.invoice", "model": "claude-4.5-opus", "score": 0.2},
]


def test_backfill_writes_means_and_provenance_and_compiles(acmeshop: Path, tmp_path: Path) -> None:
    sample = write_sample(tmp_path / "small.jsonl", SMALL)
    before = candidates(acmeshop)
    code, out = run(sample, acmeshop, eval_set="unit", date="2026-11-20", min_samples=3, write=True)
    assert code == 0, out
    assert "claude-4.5-opus / tools.invoice in quality: 2 samples < --min-samples 3" in out
    got = models(acmeshop)
    flash = got[("cost", "gemini-3-flash")]
    assert flash["quality"] == {"faq.*": 0.90, "lowrisk.*": 0.90, "*": 0.72, "faq.refund": 0.5}
    assert flash["evals"] == {
        "evalSet": "unit",
        "evaluatedAt": "2026-11-20",
        "samples": 3,
        "intentSamples": {"faq.refund": 3},
    }
    for pool in ("balanced", "baseline"):  # one model in two pools: both updated
        assert got[(pool, "gpt-5.2")]["quality"]["support.general"] == 0.75
        assert got[(pool, "gpt-5.2")]["evals"]["samples"] == 4
    opus = got[("quality", "claude-4.5-opus")]
    assert "evals" not in opus and "tools.invoice" not in opus["quality"]
    text = (acmeshop / "pools.yaml").read_text()
    assert text.startswith("# AcmeShop's model pools")  # comments kept
    assert "  # Repetitive FAQs and low-risk asks" in text

    after = candidates(acmeshop)
    assert after[("cost", "gemini-3-flash")]["faq.refund"] == pytest.approx(0.5)
    assert after[("cost", "gemini-3-flash")]["faq.pricing"] == pytest.approx(0.90)  # glob kept
    assert after[("baseline", "gpt-5.2")]["support.general"] == pytest.approx(0.75)
    assert before[("baseline", "gpt-5.2")]["support.general"] == pytest.approx(0.86)
    assert after[("quality", "claude-4.5-opus")] == before[("quality", "claude-4.5-opus")]


def test_dry_run_is_the_default_and_writes_nothing(acmeshop: Path, tmp_path: Path) -> None:
    sample = write_sample(tmp_path / "small.jsonl", SMALL)
    original = (acmeshop / "pools.yaml").read_bytes()
    code, out = run(sample, acmeshop, min_samples=3)
    assert code == 0
    assert "dry run: 1 file(s) would change" in out
    assert "0.75" in out and "0.86" in out  # old -> new in the table
    assert (acmeshop / "pools.yaml").read_bytes() == original


def test_a_second_run_replaces_the_provenance(acmeshop: Path, tmp_path: Path) -> None:
    sample = write_sample(tmp_path / "small.jsonl", SMALL)
    assert (
        run(sample, acmeshop, eval_set="first", date="2026-11-01", min_samples=3, write=True)[0]
        == 0
    )
    later = write_sample(tmp_path / "later.jsonl", SMALL[:2] * 2)  # flash: 0.5, 1.0, 0.5, 1.0
    assert run(later, acmeshop, date="2026-11-02", min_samples=3, write=True)[0] == 0
    flash = models(acmeshop)[("cost", "gemini-3-flash")]
    assert flash["quality"]["faq.refund"] == 0.75
    assert flash["evals"] == {
        "evalSet": "later",
        "evaluatedAt": "2026-11-02",
        "samples": 4,
        "intentSamples": {"faq.refund": 4},
    }
    assert (acmeshop / "pools.yaml").read_text().count("evals:") == 3  # flash + gpt-5.2 x2
    assert candidates(acmeshop)[("cost", "gemini-3-flash")]["faq.refund"] == pytest.approx(0.75)


def test_the_acmeshop_sample(acmeshop: Path) -> None:
    plan = backfill(SAMPLE, acmeshop, evaluated_at="2026-11-26")
    assert plan.eval_set == "evals-sample"
    assert len(plan.changes) == 27  # 24 pairs, gpt-5.2's 3 intents in two pools
    assert plan.notes == [
        "skip gemini-3-flash / safety.medical in cost: 5 samples < --min-samples 20"
    ]
    code, _ = run(SAMPLE, acmeshop, date="2026-11-26", write=True)
    assert code == 0
    after = candidates(acmeshop)
    flash = after[("cost", "gemini-3-flash")]
    assert flash["reasoning.compare"] == pytest.approx(0.55)
    assert flash["faq.refund"] == pytest.approx(0.80)
    assert flash["safety.medical"] == pytest.approx(0.72)  # skipped: the "*" prior stays
    assert after[("quality", "claude-4.5-opus")]["tools.invoice"] == pytest.approx(0.95)
    assert models(acmeshop)[("cost", "gemini-3-flash")]["evals"]["samples"] == 100


def test_bad_lines_are_reported_with_file_and_line(acmeshop: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"intent": "faq.refund", "model": "gemini-3-flash", "score": 0.5}\n'
        '{"intent": "faq.refund", "model": "gemini-3-flash", "scroe": 0.5}\n'
        "\n"
        '{"intent": "faq.refund", "model": "gemini-3-flash", "score": 85}\n'
        "not json\n"
        '{"intent": "FAQ", "model": "gemini-3-flash", "pass": "yes"}\n'
        '{"model": "gemini-3-flash", "score": 0.5, "correct": true}\n',
        encoding="utf-8",
    )
    with pytest.raises(EvalsError) as caught:
        read_sample(bad)
    problems = caught.value.problems
    assert f"{bad}:2: scroe: unknown field" in problems[0]
    assert f"{bad}:2: label: give exactly one of score, pass, correct" in problems
    assert f"{bad}:4: score: must be a number in [0, 1], got 85" in problems
    assert any(p.startswith(f"{bad}:5: not JSON") for p in problems)
    assert any(p.startswith(f"{bad}:6: intent: 'FAQ' does not match") for p in problems)
    assert f"{bad}:6: pass: must be true or false, got 'yes'" in problems
    assert f"{bad}:7: intent: required field missing" in problems
    assert (
        f"{bad}:7: label: give exactly one of score, pass, correct (got score, correct)" in problems
    )
    original = (acmeshop / "pools.yaml").read_bytes()
    code, out = run(bad, acmeshop, write=True)
    assert code == 1 and f"{bad}:4: score" in out
    assert (acmeshop / "pools.yaml").read_bytes() == original


def test_nothing_to_backfill_and_bad_options_fail(acmeshop: Path, tmp_path: Path) -> None:
    sample = write_sample(tmp_path / "small.jsonl", SMALL)
    code, out = run(sample, acmeshop, min_samples=10)
    assert code == 1 and "nothing to backfill" in out
    code, out = run(sample, acmeshop, date="2026-02-30")
    assert code == 1 and "not a calendar date" in out
    code, out = run(sample, tmp_path / "missing")
    assert code == 1 and "not found" in out


def test_provenance_is_validated_like_the_crd(acmeshop: Path) -> None:
    pools = acmeshop / "pools.yaml"
    anchor = '      quality: {"*": 0.86}\n'
    good = anchor + "      evals: {evalSet: nightly, evaluatedAt: 2026-11-20, samples: 7}\n"
    pools.write_text(pools.read_text().replace(anchor, good))
    compile_folder(acmeshop)  # an unquoted date (a YAML timestamp) is accepted
    # Quoted: PyYAML raises a bare ValueError on an impossible unquoted timestamp.
    pools.write_text(pools.read_text().replace("2026-11-20, samples: 7", '"2026-02-30", sample: 7'))
    with pytest.raises(PolicyError) as caught:
        compile_folder(acmeshop)
    text = str(caught.value)
    assert "spec.models[0].evals.evaluatedAt: not a calendar date (YYYY-MM-DD)" in text
    assert "spec.models[0].evals.sample: unknown field" in text


def test_the_cli_sub_command(acmeshop: Path, tmp_path: Path) -> None:
    sample = write_sample(tmp_path / "small.jsonl", SMALL)
    cmd = [
        sys.executable,
        "-m",
        "skyroute.cli.main",
        "evals",
        "backfill",
        "--sample",
        str(sample),
        "--pools",
        str(acmeshop / "pools.yaml"),
        "--min-samples",
        "3",
        "--eval-set",
        "cli",
        "--date",
        "2026-11-21",
        "--write",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert models(acmeshop)[("cost", "gemini-3-flash")]["evals"]["evalSet"] == "cli"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"intent": "faq.refund"}\n', encoding="utf-8")
    cmd[cmd.index(str(sample))] = str(bad)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert f"{bad}:1: model: required field missing" in done.stderr
