"""``ControlStatus`` in pages: every list in it, not only the routers, under one size.

A status is a head (version, errors, counters: small and bounded) and lists that
grow with the fleet and the tracked series: the policies served, outcomes per
pool, spend per tenant, quality per (model, intent), routers. Each list is a
:class:`Section` of items in key order. A page is the head (first page only)
followed by the items after the page token, in section order, until the next
item would take the page past ``page_bytes`` (a page holds at least one item);
``next_page_token`` is then the last item's place, an opaque string the client
sends back. So a client keeping gRPC's default 4 MiB limit gets any status, of
any fleet and any number of series, one bounded message at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from skyroute.v1 import distribution_pb2

Key = tuple[str, ...]
Add = Callable[[distribution_pb2.ControlStatus], None]
#: An item: its sort key, and (built only when the item is on the page) its size and adder.
Item = tuple[Key, Callable[[], tuple[int, Add]]]

#: Field tag and length prefix of a repeated message or map entry, rounded up.
_FRAMING = 8
MAX_TOKEN = 4096


class BadPageToken(ValueError):
    """A page token this control plane did not hand out."""


@dataclass(frozen=True, slots=True)
class Section:
    """One list of the status: its items in ascending key order, at most ``limit`` a page."""

    items: Callable[[], Iterable[Item]]
    limit: int = 0  # 0: as many as fit


def appended(field: str, msg: Message) -> tuple[int, Add]:
    """The size and adder of ``msg`` appended to the repeated message field ``field``."""
    return msg.ByteSize() + _FRAMING, lambda status: getattr(status, field).append(msg)


def message(field: str, msg: Message, key: Key) -> Item:
    """An item appended to the repeated message field ``field``."""
    return key, lambda: appended(field, msg)


def map_entry(field: str, key: str, value: str) -> Item:
    """An item set in the ``map<string, string>`` field ``field``."""

    def build() -> tuple[int, Add]:
        size = len(key.encode()) + len(value.encode()) + 2 * _FRAMING
        return size, lambda status: getattr(status, field).__setitem__(key, value)

    return (key,), build


def token(section: int, key: Key) -> str:
    return json.dumps([section, list(key)], separators=(",", ":"))


def parse_token(text: str, sections: int) -> tuple[int, Key] | None:
    """(section, last key) of a token; None for the first page."""
    if not text:
        return None
    try:
        if len(text) > MAX_TOKEN:
            raise ValueError("too long")
        section, key = json.loads(text)
        if not (isinstance(section, int) and 0 <= section < sections):
            raise ValueError("section")
        if not (isinstance(key, list) and all(isinstance(k, str) for k in key)):
            raise ValueError("key")
    except (ValueError, TypeError) as exc:
        raise BadPageToken(f"page_token {text[:64]!r} was not handed out here ({exc})") from None
    return section, tuple(key)


def merge(status: distribution_pb2.ControlStatus, more: distribution_pb2.ControlStatus) -> None:
    """Add a following page's lists to ``status`` (the client's side of :func:`page`)."""
    status.policies.update(more.policies)
    status.outcomes_by_pool.extend(more.outcomes_by_pool)
    status.spend.extend(more.spend)
    status.quality.extend(more.quality)
    status.routers.extend(more.routers)
    status.next_page_token = more.next_page_token


def page(
    status: distribution_pb2.ControlStatus,
    sections: Sequence[Section],
    page_token: str = "",
    page_bytes: int = 0,
) -> distribution_pb2.ControlStatus:
    """Fill ``status`` (the head, already set on a first page) with one page of items.

    ``page_bytes`` 0: every item, no paging (the admin HTTP port, in process).
    """
    after = parse_token(page_token, len(sections))
    size = status.ByteSize()
    placed = 0
    last: tuple[int, Key] = (0, ())
    for index, section in enumerate(sections):
        if after is not None and index < after[0]:
            continue
        in_section = 0
        for key, build in section.items():
            if after is not None and index == after[0] and key <= after[1]:
                continue
            item_size, add = build()
            full = page_bytes and size + item_size > page_bytes
            capped = section.limit and in_section >= section.limit
            if placed and (full or capped):
                status.next_page_token = token(*last)
                return status
            add(status)
            size += item_size
            placed += 1
            in_section += 1
            last = (index, key)
    return status
