"""The SSE decoder against a reference parser written from the WHATWG rules.

The reference (:func:`reference`) is the HTML standard's algorithm spelled
out on the decoded text, the whole stream at once. Hypothesis builds streams
from the characters that matter (CR, LF, colons, spaces, the BOM, field-name
letters, multi-byte text) and cuts their bytes at arbitrary points, also
inside a CRLF, a BOM or a UTF-8 sequence; the decoder must dispatch exactly
the reference's events.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyroute.router.providers.sse import SSEDecoder
from skyroute.router.providers.types import BAD_RESPONSE, ProviderError

_EOL = re.compile(r"\r\n|\r|\n")


def reference(stream: str) -> list[str]:
    """The data of each event the standard dispatches (an unterminated tail is dropped)."""
    if stream.startswith("\ufeff"):
        stream = stream[1:]
    *lines, _incomplete = _EOL.split(stream)
    events: list[str] = []
    data = ""
    for line in lines:
        if line == "":
            if data:
                events.append(data[:-1])
            data = ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data += value + "\n"
    return events


def decode(wire: bytes, cuts: list[int], close: bool = False) -> list[str]:
    decoder = SSEDecoder()
    out: list[bytes] = []
    last = 0
    for cut in [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]:
        out.extend(decoder.feed(wire[last:cut]))
        last = cut
    if close:
        out.extend(decoder.close())
    return [p.decode() for p in out]


PIECES = st.sampled_from(
    ["\r", "\n", "\r\n", ":", " ", "data", "data:", "data: ", "event: x", "id: 7",
     "retry: 10", "\ufeff", "d", "a", "x", "{}", "你好", "é", "🙂"]
)  # fmt: skip
STREAMS = st.lists(PIECES, max_size=40).map("".join)
CUTS = st.lists(st.integers(min_value=0, max_value=400), max_size=12)


@settings(max_examples=400, deadline=None)
@given(stream=STREAMS, cuts=CUTS)
def test_events_match_the_reference_however_the_bytes_are_cut(stream: str, cuts: list[int]) -> None:
    assert decode(stream.encode(), cuts) == reference(stream)


@settings(max_examples=200, deadline=None)
@given(stream=STREAMS, cuts=CUTS)
def test_close_also_dispatches_an_unterminated_last_event(stream: str, cuts: list[int]) -> None:
    assert decode(stream.encode(), cuts, close=True) == reference(stream + "\n\n")


@pytest.mark.parametrize(
    ("wire", "events"),
    [
        (b"data: a\rdata: b\r\rdata: c\r\r", ["a\nb", "c"]),  # lone CR: two events, not one
        (b"\xef\xbb\xbfdata: first\n\n", ["first"]),  # a leading BOM keeps the first event
        (b": keep-alive\n\ndata:x\r\n\r\n", ["x"]),
        (b"data\n\ndata:  two spaces\n\n", ["", " two spaces"]),
        (b"event: ping\nid: 1\n\n", []),  # no data: nothing dispatched
    ],
)
def test_the_cases_self_hosted_servers_send(wire: bytes, events: list[str]) -> None:
    for step in (1, 2, 3, len(wire)):
        assert decode(wire, list(range(step, len(wire), step))) == events


def test_an_oversized_event_is_a_bad_response() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    with pytest.raises(ProviderError) as err:
        decoder.feed(b"data: " + b"x" * 40 + b"\ndata: " + b"y" * 40 + b"\n")
    assert err.value.error_class == BAD_RESPONSE
    with pytest.raises(ProviderError):
        SSEDecoder(max_event_bytes=64).feed(b"data: " + b"z" * 100)  # a line without its end
