"""``skyroute cache replay --traffic FILE``: what the cache would have served, per intent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyroute.cli.main import main

ROWS = [
    # faq.account: a miss, a paraphrase hit and an exact repeat, all wanting answer A.
    {"messages": [{"role": "user", "content": "How do I reset my password?"}], "label": "A"},
    {"prompt": "How can I reset my password?", "label": "A"},
    {"prompt": "how do I reset my password", "label": "A"},
    # The same words, but the log says it wanted another answer: a false hit.
    {"prompt": "How do I reset my password?", "label": "B"},
    # Another tenant's partition: a miss; then a repeat there, unlabelled.
    {"prompt": "How do I reset my password?", "tenant": "globex", "label": "A"},
    {"prompt": "How do I reset my password?", "tenant": "globex"},
    # Personal data and tools: refused by the guard, as live.
    {"prompt": "How do I reset my password? I am jo@example.com", "label": "A"},
    {"prompt": "How do I reset my password?", "tools": [{"type": "function"}]},
]
ROWS = [{**r, "intent": "faq.account"} for r in ROWS] + [
    {"prompt": "write me a poem", "intent": "chat.other"},
    {"prompt": "write me a poem", "intent": "chat.other"},
]


def traffic(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "traffic.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_replay_counts_hits_false_hits_and_refusals_per_intent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = traffic(tmp_path, ROWS)
    args = ["cache", "replay", "--traffic", str(path), "--intents", "faq.*"]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    account = doc["intents"]["faq.account"]
    assert account["requests"] == 8 and account["refused"] == 2
    assert (account["exact_hits"], account["semantic_hits"]) == (3, 1)
    assert (account["labelled_hits"], account["false_hits"]) == (3, 1)
    assert account["false_hit_share"] == pytest.approx(1 / 3, abs=1e-3)
    assert doc["intents"]["chat.other"] == {**doc["intents"]["chat.other"], "off": 2}
    assert doc["refusals"] == {"personal_data": 1, "tools": 1}
    assert doc["total"]["requests"] == 10 and doc["threshold"] == 0.9

    # A stricter threshold: the paraphrase no longer hits, the exact repeats still do.
    assert main([*args, "--json", "--threshold", "1.0"]) == 0
    strict = json.loads(capsys.readouterr().out)["intents"]["faq.account"]
    assert (strict["exact_hits"], strict["semantic_hits"]) == (3, 0)

    # Every intent served: the repeated poem hits too.
    assert main(["cache", "replay", "--traffic", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["intents"]["chat.other"]["exact_hits"] == 1

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "10 requests, embedder hashing-512, threshold 0.90" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("faq.account"))
    assert line.split() == ["faq.account", "8", "0", "2", "3", "1", "50.0%", "3", "1", "33.3%"]
    assert "refused by the guard: personal_data 1, tools 1" in out


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("not json", ":1: not JSON"),
        ('{"intent": "faq"}', ":1: 'messages' must be a list"),
        ('{"prompt": "hi", "tenant": 3}', ":1: 'tenant' must be a string"),
        ('{"prompt": "hi", "label": [1]}', ":1: 'label' must be a string or an integer"),
    ],
)
def test_a_bad_traffic_file_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, why: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    assert main(["cache", "replay", "--traffic", str(path)]) == 2
    assert why in capsys.readouterr().err
