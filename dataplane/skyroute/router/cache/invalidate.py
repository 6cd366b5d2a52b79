"""What an invalidation removes: a selector over entries, parsed from an untrusted body.

An operator removes cached answers when they went stale (a price changed, a
policy's prompt was fixed) or one was wrong. A :class:`Selector` names them
by any of four things, and an entry goes when it matches every one given:

- ``entry``: one entry's id, ``<partition>.<key>`` (the ``x-skyroute-cache-entry``
  header of the answer it served);
- ``intent``: every answer of that intent;
- ``tenant``: every answer of that tenant's partitions (``""`` is the
  anonymous partition, named ``-`` here);
- ``policy_version``: every answer stored while that version of a policy
  served (:attr:`~skyroute.router.cache.backend.Answer.policy_version`).

``wrong: true`` (with ``entry`` only) says more than "stale": the answer was
served to a question it does not answer. The cache then counts the semantic
hits that entry served as **false hits** of its intent, the observed
estimate ``/debug/status`` shows next to the threshold
(:meth:`~skyroute.router.cache.service.ResponseCache.stats`).

Backends match partitions by their readable label (:func:`label_fields`),
so a selector never depends on hashes it cannot recompute. Input is checked
before anything is touched: a JSON object, known fields, strings of bounded
length, at least one selector; anything else is a :class:`SelectorError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SEP = "\x1f"  # the partition label's field separator (keys.make_probe)
_MAX_FIELD = 256
_ENTRY = re.compile(r"^[0-9a-f]{32}\.[0-9a-f]{32}$")
_FIELDS = ("entry", "intent", "tenant", "policy_version")
_FLAGS = ("wrong",)
ANONYMOUS = "-"  # how a selector names the partition of requests without a tenant


class SelectorError(ValueError):
    """An invalidation request that names nothing, or names it wrongly."""


@dataclass(slots=True, frozen=True)
class Selector:
    entry: str | None = None
    intent: str | None = None
    tenant: str | None = None
    policy_version: str | None = None
    wrong: bool = False  # the entry's answer was served to questions it does not answer

    @property
    def partition(self) -> str | None:
        return self.entry.split(".", 1)[0] if self.entry else None

    @property
    def key(self) -> str | None:
        return self.entry.split(".", 1)[1] if self.entry else None

    def matches_label(self, label: str) -> bool:
        """Does a partition with this label hold entries the selector may name?"""
        fields = label_fields(label)
        if fields is None:
            return False
        if self.intent is not None and fields["intent"] != self.intent:
            return False
        tenant = fields["tenant"] or ANONYMOUS
        return self.tenant is None or tenant == self.tenant

    def as_dict(self) -> dict[str, str]:
        return {k: v for k in _FIELDS if (v := getattr(self, k)) is not None}

    @staticmethod
    def parse(data: Any) -> Selector:
        """A selector from a JSON body; :class:`SelectorError` naming the field if wrong."""
        if not isinstance(data, dict):
            raise SelectorError("the body must be a JSON object")
        unknown = sorted(str(k) for k in data if k not in _FIELDS + _FLAGS)
        if unknown:
            raise SelectorError(
                f"unknown field {unknown[0]!r}: give one or more of {', '.join(_FIELDS)}"
            )
        values: dict[str, str] = {}
        for name in _FIELDS:
            if name not in data or data[name] is None:
                continue
            value = data[name]
            if not isinstance(value, str) or not value or len(value) > _MAX_FIELD:
                raise SelectorError(
                    f"field {name!r} must be a non-empty string of at most {_MAX_FIELD} characters"
                )
            if SEP in value:
                raise SelectorError(f"field {name!r} holds a control character")
            values[name] = value
        if not values:
            raise SelectorError(f"name what to invalidate: one or more of {', '.join(_FIELDS)}")
        entry = values.get("entry")
        if entry is not None and not _ENTRY.match(entry):
            raise SelectorError(
                "field 'entry' must be an entry id as in x-skyroute-cache-entry (<32 hex>.<32 hex>)"
            )
        wrong = data.get("wrong", False)
        if not isinstance(wrong, bool):
            raise SelectorError("field 'wrong' must be true or false")
        if wrong and (entry is None or len(values) > 1):
            raise SelectorError(
                "field 'wrong' goes with 'entry' alone: one answer found served wrongly"
            )
        return Selector(**values, wrong=wrong)


def label_fields(label: str) -> dict[str, str] | None:
    """The named fields of a partition label (see :func:`skyroute.router.cache.keys.make_probe`)."""
    parts = label.split(SEP)
    if len(parts) != 8 or parts[0] != "v1":
        return None
    return {
        "policy": parts[1],
        "tenant": parts[2],
        "locale": parts[3],
        "safety_class": parts[4],
        "intent": parts[5],
        "context": parts[6],
        "embedder": parts[7],
    }
