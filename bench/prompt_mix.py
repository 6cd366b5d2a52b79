"""A realistic, deterministic mix of user prompts for the decision benchmark.

No public prompt set is available offline here, so the mix is generated from
a seed, shaped like chat traffic a router sees rather than like the AcmeShop
demo's short support questions:

- lengths spread log-uniformly from tens to thousands of characters (a
  one-line question, a paragraph, a pasted article or stack trace);
- about a quarter hit an intent keyword of the AcmeShop policy (support
  questions: the decision's fast path), the rest miss and fall through to
  the patterns and the embedding classifier: writing, coding, analysis and
  chat requests, some with pasted context after the ask;
- everyday English words plus a share of rare ones (made-up names,
  identifiers, numbers): every prompt brings words no earlier prompt had, as
  real traffic does, so per-word memos never make the embedder look cheaper
  than it is.

:func:`prompt_mix` returns ``(prompt, kind)`` pairs, kind ``hit`` or
``miss`` (what the generator meant; the benchmark reports what the decision
actually did).
"""

from __future__ import annotations

import math
import random

# Support asks that contain an AcmeShop intent keyword (examples/acmeshop/policy.yaml).
HITS = (
    "how do I reset my password",
    "what is your refund policy for opened items",
    "is there free shipping on orders to Canada",
    "how much does the plus membership cost",
    "I want to delete my account and all my data",
    "can you open a ticket, my parcel arrived crushed",
    "what's the difference between the business and enterprise plans",
    "please change my delivery address for the next order",
    "I forgot my password and I'm locked out",
    "give me a step by step plan to migrate our team accounts",
    "can I get my money back for a broken blender",
    "I need medical advice about a rash after using your lotion",
    "is this a good investment compared with a savings account",
    "generate an invoice for last month's purchases",
)
# Asks that name no keyword: they fall through to patterns and embeddings.
MISSES = (
    "write a short poem about autumn leaves falling on a quiet street",
    "explain how a hash table handles collisions, with an example",
    "summarize the following text in three bullet points",
    "what are some good names for a golden retriever puppy",
    "translate this paragraph into formal French",
    "can you help me fix this function, it throws an index error",
    "draft a polite email declining a meeting invitation",
    "what happened in the history of the Byzantine empire after 1204",
    "give me ideas for a vegetarian dinner for six people",
    "rewrite this cover letter so it sounds more confident",
    "why is the sky blue but sunsets are red",
    "review this SQL query and tell me why it is slow",
    "my order never showed up and nobody answers the chat",
    "what should I pack for a week of hiking in the Alps",
)
_COMMON_TEXT = (
    "the of and to in is that for it with as was on be by this are from at or an have not "
    "they which one you had but were all we there can been has more their if will would about "
    "when so what up out them some into could time other than then its these two may first "
    "like only new over such after most also did many before must through back years where "
    "much your way well down should because each just those people how too little state good "
    "very make world still own see men work long get here between both life being under never "
    "day same another know while last might us great old year off come since against go came "
    "right used take three system data model server request function value error user order "
    "team report market customer product service design process change "
)
_COMMON = tuple(_COMMON_TEXT.split())
_SYLLABLES = ("ka", "lo", "mi", "tra", "ven", "qui", "zor", "bel", "ny", "os", "ex", "dra", "pu")
_CODE = (
    "def {w}(self, {v}):\n    return self._{v}.get({n})\n",
    "Traceback (most recent call last):\n  File \"{w}.py\", line {n}, in {v}\nKeyError: '{v}'\n",
    "SELECT {v}, count(*) FROM {w} WHERE id > {n} GROUP BY {v};\n",
    "const {w} = await fetch(`/api/{v}/${{{n}}}`);\n",
)


def _rare(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))


def _sentence(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(6, 18)):
        r = rng.random()
        if r < 0.10:
            words.append(_rare(rng).capitalize() if rng.random() < 0.5 else _rare(rng))
        elif r < 0.13:
            words.append(str(rng.randint(2, 99_999)))
        else:
            words.append(rng.choice(_COMMON))
    return " ".join(words).capitalize() + rng.choice((".", ".", ".", "?", "!"))


def _context(rng: random.Random, chars: int) -> str:
    parts: list[str] = []
    size = 0
    while size < chars:
        if rng.random() < 0.15:
            piece = rng.choice(_CODE).format(w=_rare(rng), v=_rare(rng), n=rng.randint(1, 999))
        else:
            piece = _sentence(rng) + " "
        parts.append(piece)
        size += len(piece)
    return "".join(parts)[:chars]


def prompt_mix(n: int, seed: int = 13, keyword_share: float = 0.25) -> list[tuple[str, str]]:
    """``n`` prompts of 20 to 6,000 characters (log-uniform), ``keyword_share`` of them hits."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for _ in range(n):
        kind = "hit" if rng.random() < keyword_share else "miss"
        ask = rng.choice(HITS if kind == "hit" else MISSES)
        # Half open with a sentence of context before the ask.
        ask = f"{_sentence(rng)} {ask}?" if rng.random() < 0.5 else ask[0].upper() + ask[1:] + "?"
        target = int(math.exp(rng.uniform(math.log(20), math.log(6000))))
        text = ask if target <= len(ask) else ask + "\n\n" + _context(rng, target - len(ask))
        out.append((text, kind))
    return out
