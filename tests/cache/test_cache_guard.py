"""Refusals before any key, and keys that are canonical: same request, same key, anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cachekit import messages, probe, result, rule, scope

from skyroute.router.cache import (
    ResponseCache,
    cache_directive,
    context_digest,
    personal_data,
    request_refusal,
)
from skyroute.router.cache.guard import answer_refusal
from skyroute.router.providers.types import ChatResult

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("my email is jane.doe+x@example.co.uk, reset it", "email"),
        ("call me at +1 (415) 555-0132", "number"),
        ("card 4111 1111 1111 1111 was declined", "number"),
        ("where is order 88412907?", "number"),
        ("my ssn is 123-45-6789", "number"),
        ("born 12/03/1985, can I apply?", "number"),
        ("refund to DE89 3704 0044 0532 0130 00", "iban"),
        ("login fails from 10.1.2.3", "ip_address"),
        ("tracking AB12CD3456 shows nothing", "identifier"),
        ("ship to 221 Baker Street please", "address"),
        ("my password is hunter2, why can't I log in", "secret"),
        ("use key sk-abcdefghijklmnop1234 for the api", "secret"),
        ("see https://shop.example/reset?token=abc", "url_query"),
        ("Hi, my name is Jo Bloggs and I need help", "self_identification"),
    ],
)
def test_personal_data_is_recognized(text: str, kind: str) -> None:
    assert personal_data(text) == kind
    assert request_refusal(messages(text), [], None) == "personal_data:" + kind


@pytest.mark.parametrize(
    "text",
    [
        "How do I reset my password?",
        "Is the iPhone 15 supported?",
        "Do you ship to the UK?",
        "Can I get a refund after 30 days?",
        "Is shipping free on orders over 50 dollars?",
        "Does the 2 year warranty cover the battery?",
        "Do you sell MP3 players?",
    ],
)
def test_ordinary_questions_pass(text: str) -> None:
    assert personal_data(text) is None and request_refusal(messages(text), [], None) is None


def test_tool_use_and_shape_refusals() -> None:
    tool = {"type": "function", "function": {"name": "lookup_order", "parameters": {}}}
    assert request_refusal(messages("where is my order"), [tool], None) == "tools"
    assert request_refusal(messages("where is my order"), [], "required") == "tool_choice"
    assert request_refusal(messages("hi"), [], "none") is None
    convo = [
        {"role": "user", "content": "where is my order"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
        {"role": "user", "content": "and when will it arrive?"},
    ]
    assert request_refusal(convo, [], None) == "tool_messages"
    assert (
        request_refusal([{"role": "assistant", "content": "x"}], [], None)
        == "last_message_not_user"
    )
    assert request_refusal(messages("   "), [], None) == "empty_question"
    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        }
    ]
    assert request_refusal(image, [], None) == "non_text_content"
    # Personal data anywhere in the conversation, not only in the question.
    earlier = [
        {"role": "user", "content": "I am jo@example.com"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "How do I reset my password?"},
    ]
    assert request_refusal(earlier, [], None) == "personal_data:email"


def test_answers_with_tools_partial_or_personal_data_are_not_stored() -> None:
    assert answer_refusal("ok", [{"id": "x"}], "tool_calls") == "answer_tool_calls"
    assert answer_refusal("cut", [], "length") == "answer_not_complete"
    assert answer_refusal("Mail us at help@acme.test", [], "stop") == "answer_personal_data:email"
    assert answer_refusal("Go to Settings > Security.", [], "stop") is None
    c = ResponseCache()
    p = probe(c, "How do I reset my password?")
    assert not c.store(p, rule(), ChatResult("Call 555 123 4567", [], "stop", 1, 1), "m")
    assert c.store(p, rule(), result("Use the reset link."), "m")
    assert c.stats()["refusals"] == {"answer_personal_data": 1}


def test_cache_directives() -> None:
    assert cache_directive("") == (False, False)
    assert cache_directive("no-cache") == (True, False)
    assert cache_directive("max-age=0") == (True, False)
    assert cache_directive("private, No-Store") == (True, True)
    assert cache_directive("", "no-cache") == (True, False)


def test_context_digest_is_canonical() -> None:
    base = [{"role": "system", "content": "Be  brief.\n"}, {"role": "user", "content": "q"}]
    same = [{"content": "Be brief.", "role": "system"}, {"role": "user", "content": "other q"}]
    assert context_digest(base, {"temperature": 1, "max_tokens": None}, []) == context_digest(
        same, {"temperature": 1.0}, []
    )
    parts = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "q"},
    ]
    assert context_digest(parts, {"temperature": 1.0}, []) == context_digest(
        same, {"temperature": 1}, []
    )
    t1 = {"type": "function", "function": {"name": "a", "parameters": {"x": 1, "y": 2}}}
    t2 = {"type": "function", "function": {"name": "b", "parameters": {}}}
    t1_reordered = {"function": {"parameters": {"y": 2, "x": 1}, "name": "a"}, "type": "function"}
    assert context_digest(base, {}, [t1, t2]) == context_digest(base, {}, [t2, t1_reordered])
    # Anything that shapes the answer changes the key.
    assert context_digest(base, {"temperature": 0.2}, []) != context_digest(base, {}, [])
    assert context_digest(base, {}, [t1]) != context_digest(base, {}, [])
    other_system = [{"role": "system", "content": "Be verbose."}, {"role": "user", "content": "q"}]
    assert context_digest(base, {}, []) != context_digest(other_system, {}, [])


def test_partition_key_is_the_same_in_another_process() -> None:
    code = (
        "import sys; sys.path.insert(0, 'tests/cache');"
        "from cachekit import probe; from skyroute.router.cache import ResponseCache;"
        "p = probe(ResponseCache(), 'How do I reset my password?');"
        "print(p.partition, p.text_key, p.vector().round(4).tobytes().hex()[:64])"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env={"PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2)
    }
    assert len(outs) == 1
    c = ResponseCache()
    p = probe(c, "How do I reset my password?")
    mine = f"{p.partition} {p.text_key} {p.vector().round(4).tobytes().hex()[:64]}\n"
    assert outs == {mine}


def test_every_scope_field_changes_the_partition() -> None:
    c = ResponseCache()
    keys = {
        probe(c, "q?", sc).partition
        for sc in (
            scope(),
            scope(tenant="x"),
            scope(locale="fr"),
            scope(safety="strict"),
            scope(intent="faq.other"),
            scope(policy="p2"),
        )
    }
    assert len(keys) == 6
