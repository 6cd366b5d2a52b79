"""``skyroute outcomes export --format evals``: ratings as the evals sample, nothing else."""

from __future__ import annotations

from skyroute.cli.outcomes import graded


def test_only_boolean_and_score_ratings_of_outcomes_with_model_and_intent_become_lines() -> None:
    rows: list[dict[str, object]] = [
        {
            "request_id": "r1",
            "model": "m",
            "intent": "faq",
            "pool": "p",
            "feedback": [
                {"source": "user", "kind": "good", "value": True},
                {"source": "evaluator", "kind": "score", "value": 0.25},
                {"source": "user", "kind": "comment", "value": "meh"},
                "not a piece",
            ],
        },
        {"request_id": "r2", "model": "", "intent": "faq", "feedback": [{"kind": "good"}]},
        {"request_id": "r3", "model": "m", "intent": "faq", "feedback": "oops"},
        {"request_id": "r4", "model": "m", "intent": "faq", "feedback": []},
    ]
    assert graded(rows) == [
        {"id": "r1", "model": "m", "intent": "faq", "pool": "p", "grader": "user", "pass": True},
        {
            "id": "r1",
            "model": "m",
            "intent": "faq",
            "pool": "p",
            "grader": "evaluator",
            "score": 0.25,
        },
    ]
