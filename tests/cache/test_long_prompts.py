"""A prompt past EMBED_CHARS costs the cache one pass: no word analysis, exact layer only."""

from __future__ import annotations

from skyroute.router.cache import ResponseCache, Scope
from skyroute.router.embed import EMBED_CHARS


def test_a_long_question_is_not_analysed_and_keys_exactly() -> None:
    cache = ResponseCache()
    scope = Scope("p", "t", "en", "", "faq.x")
    huge = "how do returns work for shoes " * (1_000_000 // 30)  # about 1 MB
    a = cache.probe(scope, [{"role": "user", "content": huge}], {}, [])
    b = cache.probe(scope, [{"role": "user", "content": huge + " and hats"}], {}, [])
    short = cache.probe(scope, [{"role": "user", "content": huge[:EMBED_CHARS]}], {}, [])
    assert a is not None and b is not None and short is not None
    assert a.tokens == [] and not a.vector().any()
    assert short.tokens  # a question that fits is analysed as before
    assert a.text_key != b.text_key  # the exact key still reads the whole question
