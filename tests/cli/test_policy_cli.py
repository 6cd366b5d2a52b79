"""``skyroute policy test`` and ``skyroute policy diff`` as CI runs them: subprocesses.

Exit codes are the contract for CI (0 pass, 1 a case fails, 2 invalid input),
and the output must name what failed where without a terminal (no colours,
no cut lines). The diff is checked on a hand-built sample whose routing is
known request by request, so its counts can be asserted exactly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "acmeshop"
PASSWORD_CASE = 'spec.tests[0]: test "password reset is a cached FAQ on the cheap model" failed'


def skyroute(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def copy_example(folder: Path) -> Path:
    folder.mkdir()
    for name in ("pools.yaml", "policy.yaml"):
        shutil.copy(EXAMPLE / name, folder / name)
    return folder


def edit_policy(folder: Path, change: Any) -> None:
    """Apply ``change(acmeshop_spec)`` to the copy's acmeshop policy, keeping the rest."""
    docs = [d for d in yaml.safe_load_all((folder / "policy.yaml").read_text()) if d]
    change(next(d for d in docs if d["metadata"]["name"] == "acmeshop")["spec"])
    (folder / "policy.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))


def faq_to_balanced(spec: dict[str, Any]) -> None:
    spec["rules"][3]["pool"] = "balanced"


# --- policy test -------------------------------------------------------------------------


def test_the_example_passes() -> None:
    result = skyroute("policy", "test", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 10 tests passed in 2 policies" in result.stdout
    assert "RoutingPolicy default/acmeshop" in result.stdout and "FAIL" not in result.stdout
    assert "\x1b[" not in result.stdout  # no colour codes in a pipe
    as_json = json.loads(skyroute("policy", "test", str(EXAMPLE), "--json").stdout)
    assert (as_json["ok"], as_json["tests"], as_json["failed"]) == (True, 10, 0)
    first = as_json["policies"][0]["cases"][0]
    assert first["got"]["pool"] == "cost" and first["got"]["chain"][0] == "gemini-3-flash"


def test_a_failing_case_exits_1_and_is_named(tmp_path: Path) -> None:
    folder = copy_example(tmp_path / "acme")
    edit_policy(folder, faq_to_balanced)
    # Files may be given one by one, as well as folders.
    result = skyroute("policy", "test", str(folder / "policy.yaml"), str(folder / "pools.yaml"))
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if PASSWORD_CASE in x)
    assert line.startswith(f"{folder / 'policy.yaml'}: RoutingPolicy default/acmeshop: ")
    assert (
        # Sonnet: its 6 quality points on FAQs outweigh gpt-5.2's 7% lower cost (issue 17).
        'expected pool "cost" and model "gemini-3-flash", got pool "balanced" and model '
        '"claude-4.5-sonnet" (intent "faq.password" from keyword:reset my password, rule '
        '"faq-and-low-risk")'
    ) in line
    assert "3 of 10 tests failed" in result.stdout
    as_json = json.loads(skyroute("policy", "test", str(folder), "--json").stdout)
    assert (as_json["ok"], as_json["failed"]) == (False, 3)
    assert [p["path"] for p in as_json["problems"]] == [
        "spec.tests[0]",
        "spec.tests[6]",
        "spec.tests[7]",
    ]


def test_invalid_input_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    folder = copy_example(tmp_path / "acme")

    def typo(spec: dict[str, Any]) -> None:
        spec["tests"][1]["expect"]["pol"] = spec["tests"][1]["expect"].pop("pool")

    edit_policy(folder, typo)
    result = skyroute("policy", "test", str(folder))
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"{folder / 'policy.yaml'}: RoutingPolicy default/acmeshop: "
        "spec.tests[1].expect.pol: unknown field (line "
    ) in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: skyroute.io/v1alpha1\nkind: RoutingPolicy\nspec: [\n")
    result = skyroute("policy", "test", str(broken))
    assert result.returncode == 2 and f"{broken}:4: YAML syntax error" in result.stderr
    result = skyroute("policy", "test", str(tmp_path / "missing.yaml"), "--json")
    assert result.returncode == 2
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem["file"].endswith("missing.yaml") and "no such file" in problem["message"]


# --- policy diff -------------------------------------------------------------------------

REFUNDS = [
    "Can I still get a refund after 30 days?",
    "How does the refund work for a gift?",
    "I want a refund for my broken kettle",
]
HOURS = ["What are your opening hours on Sunday?", "When are your store hours during the holidays?"]
OTHERS = [
    ("I forgot my password", "faq.password"),
    ("Please reset my password", "faq.password"),
    ("Is this rash a side effect of the cream?", "safety.medical"),
]


def sample(path: Path) -> Path:
    rows = [(p, "faq.refund") for p in REFUNDS] + [(p, "faq.store-hours") for p in HOURS] + OTHERS
    lines = [
        json.dumps(
            {
                "body": {
                    "model": "acmeshop",
                    "messages": [
                        {"role": "system", "content": "You are AcmeShop's support copilot."},
                        {"role": "user", "content": text},
                    ],
                },
                "intent": label,
                "locale": "en-GB",
                "tenant": "acmeshop-web",
                "user_tier": "free",
            }
        )
        for text, label in rows
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def new_version(spec: dict[str, Any]) -> None:
    """Refunds leave the cost pool; store-hours questions are taken by the gift-card intent."""
    rule = spec["rules"][3]
    names = [i["name"] for i in spec["intents"] if i["name"].startswith("faq.")]
    rule["match"]["intents"] = [n for n in names if n != "faq.refund"] + ["lowrisk.*"]
    gift = next(i for i in spec["intents"] if i["name"] == "faq.giftcard")
    gift["keywords"] += ["opening hours", "store hours"]
    spec["tests"] = []


def test_diff_counts_every_routing_change_exactly(tmp_path: Path) -> None:
    new = copy_example(tmp_path / "new")
    edit_policy(new, new_version)
    traffic = sample(tmp_path / "sample.jsonl")
    result = skyroute("policy", "diff", str(EXAMPLE), str(new), "--sample", str(traffic), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] == 8
    assert report["changed"] == {"intent": 2, "pool": 3, "model": 3, "routing": 3}
    assert report["transitions"] == [
        {
            "from": {"pool": "cost", "model": "gemini-3-flash"},
            # Sonnet: 6 quality points on FAQs outweigh gpt-5.2's 7% lower cost (issue 17).
            "to": {"pool": "balanced", "model": "claude-4.5-sonnet"},
            "count": 3,
            "examples": REFUNDS,
        }
    ]
    assert report["intent_transitions"] == [
        {"from": "faq.store-hours", "to": "faq.giftcard", "count": 2, "examples": HOURS}
    ]
    assert report["labelled"] == 8 and report["label_matches"] == {"old": 8, "new": 6}
    text = skyroute(
        "policy", "diff", str(EXAMPLE), str(new), "--sample", str(traffic), "--examples", "1"
    )
    assert text.returncode == 0
    row = next(x for x in text.stdout.splitlines() if "cost / gemini-3-flash" in x)
    assert "balanced / claude-4.5-sonnet" in row and " 3 " in row and REFUNDS[0] in row
    assert REFUNDS[1] not in text.stdout  # --examples 1
    assert "3 (37.5%)" in text.stdout
    # One policy for every request: baseline routes all of it the same in both versions.
    same = json.loads(
        skyroute(
            "policy",
            "diff",
            str(EXAMPLE),
            str(new),
            "--sample",
            str(traffic),
            "--policy",
            "baseline",
            "--json",
        ).stdout
    )
    assert same["changed"] == {"intent": 0, "pool": 0, "model": 0, "routing": 0}


def test_diff_names_a_malformed_sample_line(tmp_path: Path) -> None:
    traffic = sample(tmp_path / "sample.jsonl")
    traffic.write_text(traffic.read_text() + '{"body": {"messages": "hi"}}\n')
    result = skyroute("policy", "diff", str(EXAMPLE), str(EXAMPLE), "--sample", str(traffic))
    assert result.returncode == 2
    assert f"{traffic}:9: body.messages: must be a non-empty list" in result.stderr
