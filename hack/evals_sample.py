"""Write examples/acmeshop/evals-sample.jsonl: a small, deterministic labelled sample.

The AcmeShop example needs a labelled traffic sample so that ``skyroute evals
backfill`` can be tried (and tested) without real graded traffic. Each
(model, intent) pair gets exactly ``PER_PAIR`` graded requests whose mean is
the pair's target, so the backfilled scores can be checked by hand: FAQ and
low-risk intents are graded pass/fail (``pass`` or ``correct``), reasoning,
tool and safety intents get graded ``score`` values spread symmetrically
around the target. The cheap models are also graded on ``reasoning.compare``,
where they are poor: that is what keeps complex intents off them. One pair
has too few samples on purpose, to show ``--min-samples`` skipping it.

Run from the repository root: ``.venv/bin/python hack/evals_sample.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PER_PAIR = 20
OUT = Path(__file__).resolve().parents[1] / "examples" / "acmeshop" / "evals-sample.jsonl"
# (model, intent) -> target mean, a multiple of 1/PER_PAIR so pass/fail means are exact.
TARGETS: dict[tuple[str, str], float] = {
    ("gemini-3-flash", "faq.password"): 0.95,
    ("gemini-3-flash", "faq.pricing"): 0.85,
    ("gemini-3-flash", "faq.refund"): 0.80,
    ("gemini-3-flash", "lowrisk.order-status"): 0.90,
    ("gemini-3-flash", "reasoning.compare"): 0.55,
    ("claude-4.5-haiku", "faq.password"): 0.95,
    ("claude-4.5-haiku", "faq.pricing"): 0.90,
    ("claude-4.5-haiku", "faq.refund"): 0.85,
    ("claude-4.5-haiku", "lowrisk.order-status"): 0.90,
    ("claude-4.5-haiku", "reasoning.compare"): 0.60,
    ("claude-4.5-sonnet", "support.general"): 0.90,
    ("claude-4.5-sonnet", "faq.refund"): 0.95,
    ("claude-4.5-sonnet", "reasoning.compare"): 0.85,
    ("gpt-5.2", "support.general"): 0.85,
    ("gpt-5.2", "faq.refund"): 0.90,
    ("gpt-5.2", "reasoning.compare"): 0.80,
    ("gpt-5.2-high", "reasoning.compare"): 0.95,
    ("gpt-5.2-high", "reasoning.plan"): 0.90,
    ("gpt-5.2-high", "tools.invoice"): 0.90,
    ("gpt-5.2-high", "safety.medical"): 0.90,
    ("claude-4.5-opus", "reasoning.compare"): 0.95,
    ("claude-4.5-opus", "reasoning.plan"): 0.90,
    ("claude-4.5-opus", "tools.invoice"): 0.95,
    ("claude-4.5-opus", "safety.medical"): 0.95,
}
SCARCE = ("gemini-3-flash", "safety.medical", 5)  # below the default --min-samples (20)
GRADED = ("reasoning.", "tools.", "safety.")


def records() -> list[dict[str, object]]:
    rng = random.Random(20261126)
    out: list[dict[str, object]] = []
    for (model, intent), target in TARGETS.items():
        if intent.startswith(GRADED):
            spread = min(target, 1 - target)
            for j in range(PER_PAIR // 2):
                d = round(spread * (j % 5) / 5, 2)
                for score in (target + d, target - d):
                    out.append(
                        {
                            "intent": intent,
                            "model": model,
                            "score": round(score, 2),
                            "grader": "rubric-v3",
                        }
                    )
        else:
            passes = round(target * PER_PAIR)
            key = "pass" if model.startswith("gemini") or "haiku" in model else "correct"
            for j in range(PER_PAIR):
                out.append({"intent": intent, "model": model, key: j < passes, "grader": "human"})
    model, intent, n = SCARCE
    out.extend(
        {"intent": intent, "model": model, "score": 0.4, "grader": "rubric-v3"} for _ in range(n)
    )
    rng.shuffle(out)
    return [{"id": f"ev-{i + 1:04d}", **r} for i, r in enumerate(out)]


def main() -> None:
    lines = [json.dumps(r, separators=(", ", ": ")) for r in records()]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} lines to {OUT}")


if __name__ == "__main__":
    main()
