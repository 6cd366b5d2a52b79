"""The semantic response cache: safe by construction, shared across router pods.

Gateways' users report four ways response caches go wrong: unrelated
questions matched, answers leaking across tenants, identical requests
missing because hashing is not deterministic, and streaming broken on a
hit. This package is built against each:

- **Only where the policy says, only when safe.** The decision marks a
  request cacheable only for the policy's cache intents and with no tools
  offered; :mod:`.guard` then refuses tool traffic, personal data and
  no-cache directives, and never stores answers with tool calls or personal
  data.
- **Hard partitions.** Policy, tenant, locale, safety class, intent and a
  canonical hash of everything but the question (system prompt, earlier
  turns, model parameters, tool set) form the partition key
  (:mod:`.keys`); a lookup searches its own partition and nothing else, and
  checks the stored label on every read.
- **Two layers.** Exact: the case- and punctuation-folded question's hash.
  Semantic: embeddings (:mod:`skyroute.router.embed`, shared with the intent
  classifier: one per request; a fast built-in hashing embedder, or
  all-MiniLM-L6-v2 with the ``[embeddings]`` extra) searched with a SimHash
  prefilter over a numpy matrix per partition (:mod:`.index`), then a
  meaning check that refuses matches differing in numbers, negation or
  contrast words (:mod:`skyroute.router.embed.text`). Thresholds, TTL and size come per intent
  family (:mod:`.rules`).
- **Backends.** In-process (:mod:`.memory`, bounded and LRU) or Redis
  (:mod:`.redis_backend`, shared, with local vector mirrors); any failure
  is a miss with a short timeout, never an error.

The engine replays a hit as a normal answer or as a proper SSE stream, and
reports ``cache_hit`` and the similarity in headers and outcomes.

Public surface: :class:`ResponseCache` (``probe``, ``lookup``, ``store``,
``stats``), :func:`from_settings`, :class:`Scope`, :func:`request_params`,
:func:`rule_for` / :class:`CacheRule`, the backends, and the embedders.
"""

from skyroute.router.cache.backend import EXACT, SEMANTIC, Answer, CacheBackend, CacheHit
from skyroute.router.cache.guard import cache_directive, personal_data, request_refusal
from skyroute.router.cache.keys import Probe, Scope, context_digest, make_probe, request_params
from skyroute.router.cache.memory import InProcessBackend
from skyroute.router.cache.rules import CacheRule, rule_for
from skyroute.router.cache.service import ResponseCache, from_settings
from skyroute.router.embed import Embedder, HashingEmbedder, load_embedder

__all__ = [
    "EXACT",
    "SEMANTIC",
    "Answer",
    "CacheBackend",
    "CacheHit",
    "CacheRule",
    "Embedder",
    "HashingEmbedder",
    "InProcessBackend",
    "Probe",
    "ResponseCache",
    "Scope",
    "cache_directive",
    "context_digest",
    "from_settings",
    "load_embedder",
    "make_probe",
    "personal_data",
    "request_params",
    "request_refusal",
    "rule_for",
]
