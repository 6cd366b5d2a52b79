"""Response cache (transitional: re-exports the first cache while the new one lands)."""

from skyroute.router.cache._legacy import (
    Entry,
    Partition,
    ResponseCache,
    content_words,
    context_hash,
    normalize,
)

__all__ = ["Entry", "Partition", "ResponseCache", "content_words", "context_hash", "normalize"]
