"""Every limit the control plane puts on what it is sent, and the cap on tracked series.

Routers report outcomes, stats windows and sketches; the folder holds YAML;
people ask for status. Each of those inputs has a size, a type and a range
here, in one place, so the README's table and the checks cannot disagree.

Tracked series (per pool and model, per policy version, per model and intent,
per router) are held in dicts keyed by names that arrive from the network.
The names are checked against the snapshot first, so a forged name never
becomes a key; :class:`SeriesCap` is the second line: a dict that already
holds ``limit`` keys takes no new one. The report is still counted in the
totals, the new key is not created, and the drop is counted by table name
(``skyroute status`` shows it, ``/debug/outcomes`` and ``/debug/learning``
too). Existing series keep being updated, so at the cap the figures of what
is already tracked stay right and only the newcomers are invisible.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, MutableMapping
from typing import TypeVar

# -- reports from routers ----------------------------------------------------------
MAX_NAME = 253  # a model, pool, intent, policy or node name (a DNS name's length)
MAX_TEXT = 1024  # free text (an error class, a NACK's message) kept from a report
MAX_LATENCY_MS = 24 * 3600 * 1000.0  # a day: no attempt lasts longer
MAX_TOKENS = 100_000_000  # per outcome, and per stats window
MAX_COST_USD = 1_000_000.0  # per outcome, and per stats window
MAX_DEPTH = 64  # fallback depth and attempts of one request
MAX_WINDOW_REQUESTS = 100_000_000  # requests in one router's stats window
MAX_SKETCH_BYTES = 64 * 1024  # one serialized DDSketch
MAX_SKETCH_BINS = 4096  # bins of one sketch
MAX_SKETCH_KEY = 4096  # |bin key|: gamma**4096 is finite for any gamma under 1.18
MAX_ENDPOINTS = 512  # endpoint health entries kept per router

# -- tracked series ------------------------------------------------------------------
MAX_SERIES = 4096  # keys per tracked table (per pool and model, per model and intent, ...)
MAX_SERIES_PER_ROUTER = 1024  # new keys one router may add to a table (a quarter of it)
MAX_ROUTERS = 10_000  # routers listed at once (connected or recently disconnected)

# -- status ----------------------------------------------------------------------------
STATUS_PAGE_BYTES = 1024 * 1024  # routers per GetStatus page: as many as fit in 1 MiB
MAX_STATUS_TEXT = 64 * 1024  # last_error and last_nack as shown

# -- the folder source ---------------------------------------------------------------
MAX_YAML_FILE_BYTES = 4 * 1024 * 1024  # one YAML file
MAX_YAML_NODES = 200_000  # nodes of one document once aliases are expanded
MAX_YAML_ALIASES = 1000  # aliases in one document
MAX_YAML_DEPTH = 64  # nesting of one document

K = TypeVar("K")
V = TypeVar("V")


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying so."""
    return text if len(text) <= limit else text[: limit - 14] + "... (truncated)"


class SeriesCap:
    """Admits new keys into tracked tables up to ``limit`` each; counts the rest.

    With an ``owner`` (the router whose report brings the key) that owner may add at
    most ``per_owner`` keys to each table, so one router cannot fill a table alone:
    its further new keys are dropped and counted as ``<table>.per_router``; keys
    already tracked keep counting whoever reports them.
    """

    def __init__(self, limit: int = MAX_SERIES, per_owner: int = MAX_SERIES_PER_ROUTER) -> None:
        self.limit = limit
        self.per_owner = per_owner
        self.dropped: Counter[str] = Counter()
        # (owner, table) -> keys it added; at most limit entries per table in all.
        self._added: Counter[tuple[str, str]] = Counter()

    def admit(self, size: int, name: str, owner: str = "", n: int = 1) -> bool:
        """Whether a new key may join table ``name`` holding ``size`` keys (counted if not)."""
        if size >= self.limit:
            self.dropped[name] += n
            return False
        if owner and self.per_owner:
            if self._added[(owner, name)] >= self.per_owner:
                self.dropped[f"{name}.per_router"] += n
                return False
            self._added[(owner, name)] += 1
        return True

    def entry(
        self,
        table: MutableMapping[K, V],
        key: K,
        factory: Callable[[], V],
        name: str,
        owner: str = "",
    ) -> V | None:
        """``table[key]``, created with ``factory`` if there is room; None (counted) if not."""
        found = table.get(key)
        if found is not None:
            return found
        if not self.admit(len(table), name, owner):
            return None
        table[key] = made = factory()
        return made
