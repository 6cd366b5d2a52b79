"""Expand the hand-written seeds (``seeds_*.txt``) into labelled pairs (``pairs.jsonl``).

The cache's evaluation set, kept apart from its unit-test set
(``tests/cache/data``) and from anything downloaded: every question is
written by hand, or is a hand-written template filled with hand-chosen
values. Seed format, one item a line (``#`` comments, blank lines ignored):

- ``@ domain``: the domain of the groups that follow;
- ``Q text``: starts a group with its question; ``= text``: a paraphrase (the
  same answer serves it); ``! kind: text``: a hard negative (looks alike,
  needs another answer; kind is one of :data:`KINDS`);
- ``T kind``: starts a template group: its ``Q``/``=``/``!`` lines hold
  ``{x}``, and ``V a | b | ...`` lists the values. Each value makes a group;
  neighbouring values (the next two, cyclically) make ``kind`` negatives.

Pairs: every two variants (question, paraphrases) of a group are the same;
every negative against every variant of its group is different; template
values against their neighbours are different. Groups alternate between the
``tune`` split (used to build an embedder's calibration table) and the
``held`` split (reported apart, so a bound's threshold is checked on pairs
it was not chosen on).

Usage: ``python bench/data/cache_eval/expand.py [--check]`` (``--check``:
fail if ``pairs.jsonl`` is not what the seeds give).
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "pairs.jsonl"
KINDS = ("negation", "direction", "quantity", "entity", "wording")
NEIGHBOURS = 2


@dataclass
class Group:
    domain: str
    variants: list[str] = field(default_factory=list)
    negatives: list[tuple[str, str]] = field(default_factory=list)
    template: str = ""  # the kind of a template's cross-value negatives ("" if none)
    values: list[str] = field(default_factory=list)


def _kind(text: str, where: str) -> tuple[str, str]:
    kind, sep, rest = text.partition(":")
    if not sep or kind.strip() not in KINDS or not rest.strip():
        raise SystemExit(f"{where}: expected '! kind: text' with kind in {KINDS}")
    return kind.strip(), rest.strip()


def parse(paths: list[Path]) -> list[Group]:
    groups: list[Group] = []
    domain = ""
    for path in paths:
        for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            where = f"{path.name}:{n}"
            if not line or line.startswith("#"):
                continue
            tag, _, text = line.partition(" ")
            text = text.strip()
            if tag == "@":
                domain = text
            elif tag == "T":
                if text not in KINDS:
                    raise SystemExit(f"{where}: template kind {text!r} not in {KINDS}")
                groups.append(Group(domain, template=text))
            elif tag == "Q":
                if groups and groups[-1].template and not groups[-1].variants:
                    groups[-1].variants.append(text)
                else:
                    groups.append(Group(domain, [text]))
            elif tag in {"=", "!", "V"} and groups and groups[-1].variants and text:
                g = groups[-1]
                if tag == "=":
                    g.variants.append(text)
                elif tag == "!":
                    g.negatives.append(_kind(text, where))
                elif g.template:
                    g.values = [v.strip() for v in text.split("|") if v.strip()]
                else:
                    raise SystemExit(f"{where}: 'V' outside a template")
            else:
                raise SystemExit(f"{where}: cannot read {line!r}")
    for g in groups:
        if len(g.variants) < 2 or (g.template and len(g.values) <= NEIGHBOURS):
            raise SystemExit(f"group {g.variants[:1]}: too few paraphrases or values")
    return groups


def _fill(texts: list[str], value: str) -> list[str]:
    return [t.replace("{x}", value) for t in texts]


def expand(groups: list[Group]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    index = {"n": 0}

    def emit(domain: str, variants: list[str], negatives: list[tuple[str, str]]) -> str:
        split = "tune" if index["n"] % 2 == 0 else "held"
        gid = f"g{index['n']:03d}"
        index["n"] += 1
        for a, b in itertools.combinations(variants, 2):
            rows.append(_row(a, b, True, "paraphrase", domain, split, gid))
        for kind, neg in negatives:
            for v in variants:
                rows.append(_row(v, neg, False, kind, domain, split, gid))
        return split

    for g in groups:
        if not g.template:
            emit(g.domain, g.variants, g.negatives)
            continue
        splits = []
        for value in g.values:
            negs = [(k, t.replace("{x}", value)) for k, t in g.negatives]
            splits.append(emit(g.domain, _fill(g.variants, value), negs))
        n = len(g.values)
        for i, value in enumerate(g.values):
            mine = _fill(g.variants, value)
            for step in range(1, NEIGHBOURS + 1):
                other = _fill(g.variants, g.values[(i + step) % n])
                for k, text in enumerate(mine):
                    b = other[(k + step) % len(other)]
                    rows.append(_row(text, b, False, g.template, g.domain, splits[i], "x"))
    return rows


def _row(
    a: str, b: str, same: bool, kind: str, domain: str, split: str, gid: str
) -> dict[str, object]:
    return {
        "a": a,
        "b": b,
        "same": same,
        "kind": kind,
        "domain": domain,
        "split": split,
        "group": gid,
    }


def render() -> str:
    rows = expand(parse(sorted(HERE.glob("seeds_*.txt"))))
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.name} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    same = sum(r["same"] for r in rows)
    print(f"wrote {OUT.name}: {len(rows)} pairs, {same} same, {len(rows) - same} different")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
