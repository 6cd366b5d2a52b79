"""The simulator honours the parameters that change an answer, and the official SDKs parse it.

So a router test can tell a parameter it passed from one it dropped: ``seed``
picks the text (same seed, same text; another seed, other text), a stop
sequence cuts the text before it (``finish_reason: stop``; Anthropic's
``stop_reason: stop_sequence``; Gemini's ``stopSequences``), ``n`` answers
that many choices and ``logprobs`` / ``top_logprobs`` put OpenAI's
``logprobs.content`` on each, unary and streamed. Malformed values are the
provider's own 400.
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Iterator

import anthropic
import openai
import pytest

from skyroute.simulator.harness import SimulatorThread

MSGS = [{"role": "user", "content": "tell me about shipping"}]


@pytest.fixture(scope="module")
def oai(sim: SimulatorThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=sim.url + "/openai/v1", api_key="sk-test", max_retries=0, timeout=5
    ) as c:
        yield c


def _text(c: openai.OpenAI, **kw: object) -> str:
    r = c.chat.completions.create(model="gpt-5.2", messages=MSGS, **kw)  # type: ignore[call-overload]
    return str(r.choices[0].message.content)


def test_seed_picks_the_text(oai: openai.OpenAI) -> None:
    plain, one, again, other = (
        _text(oai),
        _text(oai, seed=1),
        _text(oai, seed=1),
        _text(oai, seed=2),
    )
    assert one == again  # determinism
    assert len({plain, one, other}) == 3  # a seed that was dropped would give `plain`


def test_stop_cuts_before_the_sequence(oai: openai.OpenAI) -> None:
    full = _text(oai, max_completion_tokens=40)
    word = full.split()[5]  # a word the answer holds, well inside it
    r = oai.chat.completions.create(
        model="gpt-5.2", messages=MSGS, max_completion_tokens=40, stop=["zzz-none", word]
    )  # type: ignore[call-overload]
    cut = r.choices[0].message.content or ""
    assert cut == full[: full.index(word)] and word not in cut
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens < 40
    stream = oai.chat.completions.create(
        model="gpt-5.2", messages=MSGS, max_completion_tokens=40, stop=word, stream=True
    )  # type: ignore[call-overload]
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == cut


def test_n_answers_that_many_choices(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="gpt-5.2", messages=MSGS, n=3, seed=4)  # type: ignore[call-overload]
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert len(set(texts)) == 3 and all(t and t.startswith("[gpt-5.2] ") for t in texts)
    assert texts[0] == _text(oai, seed=4)  # choice 0 is the n=1 answer
    assert r.usage is not None
    assert r.usage.completion_tokens == 3 * _usage(oai, seed=4)
    stream = oai.chat.completions.create(
        model="gpt-5.2",
        messages=MSGS,
        n=3,
        seed=4,
        stream=True,
        stream_options={"include_usage": True},
    )  # type: ignore[call-overload]
    got = ["", "", ""]
    finish = [None, None, None]
    usage = None
    for chunk in stream:
        for c in chunk.choices:
            got[c.index] += c.delta.content or ""
            finish[c.index] = c.finish_reason or finish[c.index]
        usage = chunk.usage or usage
    assert got == texts and finish == ["stop"] * 3
    assert usage is not None and usage.completion_tokens == r.usage.completion_tokens


def _usage(c: openai.OpenAI, **kw: object) -> int:
    r = c.chat.completions.create(model="gpt-5.2", messages=MSGS, **kw)  # type: ignore[call-overload]
    assert r.usage is not None
    return r.usage.completion_tokens


def test_logprobs_and_top_logprobs_parse_unary_and_streamed(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="gpt-5.2", messages=MSGS, logprobs=True, top_logprobs=3, n=2
    )  # type: ignore[call-overload]
    for choice in r.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        content = choice.logprobs.content
        assert "".join(t.token for t in content) == choice.message.content
        for t in content:
            assert t.logprob < 0 and t.bytes == list(t.token.encode())
            assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token
            assert all(a.logprob <= t.logprob for a in t.top_logprobs)
            assert all(math.isfinite(a.logprob) for a in t.top_logprobs)
    plain = oai.chat.completions.create(model="gpt-5.2", messages=MSGS)  # type: ignore[call-overload]
    assert plain.choices[0].logprobs is None  # a dropped logprobs shows
    stream = oai.chat.completions.create(
        model="gpt-5.2", messages=MSGS, logprobs=True, top_logprobs=2, stream=True
    )  # type: ignore[call-overload]
    tokens = [
        t
        for chunk in stream
        for c in chunk.choices
        if c.logprobs is not None and c.logprobs.content
        for t in c.logprobs.content
    ]
    unary = r.choices[0].logprobs
    assert unary is not None and unary.content is not None
    # The same tokens and values, whole or streamed (top_logprobs differ only in count).
    assert [(t.token, t.logprob) for t in tokens] == [(t.token, t.logprob) for t in unary.content]
    assert all(len(t.top_logprobs) == 2 for t in tokens)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 0}, "'n'"),
        ({"n": 129}, "'n'"),
        ({"top_logprobs": 3}, "'top_logprobs'"),
        ({"logprobs": True, "top_logprobs": 21}, "'top_logprobs'"),
        ({"logprobs": "yes"}, "'logprobs'"),
        ({"seed": 1.5}, "'seed'"),
        ({"stop": [1]}, "'stop'"),
    ],
)
def test_malformed_values_are_openai_400s(
    oai: openai.OpenAI, extra: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model="gpt-5.2", messages=MSGS, extra_body=extra)  # type: ignore[call-overload]
    assert param in exc.value.message


def test_anthropic_stop_sequences(sim: SimulatorThread) -> None:
    with anthropic.Anthropic(
        base_url=sim.url + "/anthropic", api_key="sk-ant", max_retries=0, timeout=5
    ) as c:
        full = c.messages.create(model="claude-x", max_tokens=40, messages=MSGS)  # type: ignore[arg-type]
        text = full.content[0].text  # type: ignore[union-attr]
        word = text.split()[4]
        cut = c.messages.create(
            model="claude-x", max_tokens=40, messages=MSGS, stop_sequences=[word]
        )  # type: ignore[arg-type]
        assert cut.content[0].text == text[: text.index(word)]  # type: ignore[union-attr]
        assert (cut.stop_reason, cut.stop_sequence) == ("stop_sequence", word)
        with c.messages.stream(
            model="claude-x", max_tokens=40, messages=MSGS, stop_sequences=[word]
        ) as s:  # type: ignore[arg-type]
            final = s.get_final_message()
        assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", word)
        assert final.content[0].text == cut.content[0].text  # type: ignore[union-attr]


def _gemini(sim: SimulatorThread, generation: dict[str, object]) -> str:
    body = {"contents": [{"role": "user", "parts": [{"text": "tell me about shipping"}]}]}
    req = urllib.request.Request(
        sim.url + "/gemini/v1beta/models/gemini-x:generateContent",
        data=json.dumps({**body, "generationConfig": generation}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        out = json.loads(r.read())
    return str(out["candidates"][0]["content"]["parts"][0]["text"])


def test_gemini_seed_and_stop_sequences(sim: SimulatorThread) -> None:
    plain = _gemini(sim, {"maxOutputTokens": 40})
    assert _gemini(sim, {"maxOutputTokens": 40, "seed": 3}) == _gemini(
        sim, {"maxOutputTokens": 40, "seed": 3}
    )
    assert _gemini(sim, {"maxOutputTokens": 40, "seed": 3}) != plain
    word = plain.split()[4]
    assert (
        _gemini(sim, {"maxOutputTokens": 40, "stopSequences": [word]}) == plain[: plain.index(word)]
    )
