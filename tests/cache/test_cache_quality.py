"""Hit rate and false-hit rate on the checked-in paraphrase set, at the default threshold.

``data/same_meaning.tsv`` holds 385 pairs of support questions that want the
same answer (light edits, reorderings, synonyms, typos, terse and chatty
forms, full rewordings); ``data/different_meaning.tsv`` holds 327 pairs that
look alike but want different answers (one object, action, direction,
number, negation or time word changed). Each pair is evaluated in its own
partition, through the same path a router request takes (guard, probe,
exact layer, semantic layer, meaning check), at the rule a policy gets with
the CRD's default threshold (0.9) for a ``faq.*`` intent.

The data were written before the embedder's word tables were tuned, and the
tuning looked only at the even-numbered pairs: the odd-numbered half, held
out, scores 65.6% hits and 0 false hits at 0.9 (1.2% false hits at 0.85,
which is why 0.85 is the floor, not the default).

Stated floors: false-hit rate under 1% (measured: 0 of 327) and hit rate at
least 60% (measured: 65.2%, 251 of 385). For comparison, GPTCache reports 5.6-8.7%
false hits; all-MiniLM-L6-v2 cosine alone gives 7.3% false hits at 0.9 on
this set (bench/cache_bench.py --minilm).
"""

from __future__ import annotations

import asyncio

from cachekit import default_rule, pairs, probe, result, scope

from skyroute.router.cache import ResponseCache, personal_data

HIT_RATE_FLOOR = 0.60
FALSE_HIT_CEILING = 0.01


def rates(rows: list[tuple[str, str]]) -> tuple[float, list[tuple[str, str, float]]]:
    async def run() -> tuple[float, list[tuple[str, str, float]]]:
        cache = ResponseCache()
        rule = default_rule()
        hits: list[tuple[str, str, float]] = []
        for i, (a, b) in enumerate(rows):
            sc = scope(tenant=f"pair-{i}")
            cache.store(probe(cache, a, sc), rule, result(a), "m")
            hit = await cache.lookup(probe(cache, b, sc), rule)
            if hit is not None:
                assert hit.answer.content == a
                hits.append((a, b, hit.similarity))
        return len(hits) / len(rows), hits

    return asyncio.run(run())


def test_data_set_is_large_clean_and_distinct() -> None:
    same, diff = pairs("same_meaning.tsv"), pairs("different_meaning.tsv")
    assert len(same) >= 200 and len(diff) >= 200
    assert len(set(same)) == len(same) and len(set(diff)) == len(diff)
    for a, b in same + diff:
        assert a != b
        assert personal_data(a) is None and personal_data(b) is None, (a, b)


def test_false_hit_rate_under_one_percent() -> None:
    rate, hits = rates(pairs("different_meaning.tsv"))
    print(f"\nfalse-hit rate {rate:.4f} ({len(hits)} false hits)")
    assert rate < FALSE_HIT_CEILING, hits


def test_hit_rate_above_floor() -> None:
    rate, hits = rates(pairs("same_meaning.tsv"))
    print(f"\nhit rate {rate:.4f} ({len(hits)} hits)")
    assert rate >= HIT_RATE_FLOOR
