"""Question text analysis shared by the exact key, the embedder and the verifier.

A support question says the same thing in many surface forms ("can't log
in", "cannot sign in", "unable to log into"), while two questions that
differ by one small word ("ship *to* the UK" / "ship *from* the UK", "what
is included" / "what is *not* included") mean different things. Embeddings,
even real sentence models, are poor at the second kind of difference: on
this project's paraphrase set all-MiniLM-L6-v2 gives 7% false hits at
cosine 0.9, and GPTCache reports 5.6-8.7%. So the cache does two things with
the text, both here, both deterministic and cheap:

- :func:`analyze` folds surface variation into canonical tokens:
  contractions, a few multi-word phrases ("log in" -> ``login``, "how long"
  -> ``duration``), light suffix stripping, and a small table of synonyms
  that are interchangeable in support questions. The embedder hashes these
  tokens, so paraphrases land close together.
- :func:`signature` extracts the small words that flip meaning: numbers,
  negation, and a few contrast groups (before/after, to/from, monthly/annual,
  minimum/maximum, where/when/how long/how much). :func:`compatible` refuses
  a semantic match whose signatures disagree, whatever the cosine says.

The exact layer keys on :func:`exact_text`: case, spacing and punctuation
folded, nothing else, so only questions that are the same text match.

Everything is pure Python on short strings (a question is a few dozen
tokens); the per-word work is memoized by the embedder.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+")

# Contractions first, on the lower-cased text, so that "can't" keeps its "not".
_CONTRACTIONS = re.compile(
    r"\b(can|won)[’']?t\b|\bcannot\b|\b(\w+)n[’']t\b|[’'](?:s|re|m|ve|ll|d)\b"
)


def _contraction(m: re.Match[str]) -> str:
    if m.group(1):
        return "can not" if m.group(1) == "can" else "will not"
    if m.group(2):
        return m.group(2) + " not"
    return "can not" if m.group(0) == "cannot" else ""


def _log_sign(*particles: str) -> tuple[str, ...]:
    verbs = ("log", "logged", "logging", "sign", "signed", "signing")
    return tuple(f"{v} {p}" for v in verbs for p in particles)


# Multi-word phrases with one meaning, folded on the token list before the words
# are canonicalized: replacement -> the phrases it replaces. At a position the
# longest listed phrase wins.
_PHRASE_SPEC: dict[str, tuple[str, ...]] = {
    "twofactor": (
        "two factor",
        "two factor authentication",
        "multi factor",
        "multi factor authentication",
        "2fa",
        "mfa",
    ),
    "login": (*_log_sign("in", "into", "on", "onto"), "signin", "logon"),
    "logout": (*_log_sign("out", "off"), "signout"),
    "signup": ("sign up", "signed up", "signing up"),
    "optout": ("opt out", "opted out"),
    "optin": ("opt in", "opted in"),
    "autorenew": (
        "auto renew",
        "auto renewal",
        "auto renews",
        "auto renewed",
        "autorenewal",
        "automatic renewal",
        "automatic renew",
        "automatically renew",
        "automatically renews",
        "renew automatically",
    ),
    "enable": ("turn on", "turned on", "switch on", "switched on"),
    "disable": ("turn off", "turned off", "switch off", "switched off"),
    "email": ("e mail",),
    "refund": ("money back",),
    "contact": (
        "get in touch with",
        "get in touch",
        "speak with",
        "speak to",
        "talk with",
        "talk to",
    ),
    "human": ("real person", "human agent", "live agent", "real human"),
    "support": (
        "customer service",
        "customer support",
        "customer care",
        "support team",
        "help desk",
        "helpdesk",
    ),
    "phone": ("phone number", "mobile number", "cell number"),
    "when": ("what time",),
    "duration": (
        "how long",
        "how many days",
        "how many weeks",
        "how many hours",
        "how many minutes",
        "how many business days",
        "how fast",
        "how quickly",
        "how soon",
    ),
    "cost": ("how much",),
    "howmany": ("how many",),
    "minimum": ("at least", "min"),
    "maximum": ("at most", "max"),
    "can": ("is it possible to", "is it possible", "am i able to", "able to"),
    "anytime": ("at any time", "any time", "at anytime"),
    "keep": ("all the time", "keeps on", "keep on", "constantly", "repeatedly"),
    "do you have": ("do you support",),
    "cost of": ("price of",),
    "accept": ("pay with", "pay by", "pay using", "pay in", "pay via"),
    "can not": ("unable to",),
    "1": ("a single", "single"),
    "instore": ("in store", "in a store", "to a store"),
    "trial": ("free trial",),
    "pickup": ("pick up", "picked up"),
    "installment": ("buy now pay later",),
    "sameday": ("same day",),
    "nextday": ("next day",),
    "website": ("web site", "site"),
}
# First word -> [(phrase tokens, replacement tokens)], longest phrase first.
_PHRASES: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
for _out, _variants in _PHRASE_SPEC.items():
    for _v in _variants:
        _PHRASES.setdefault(_v.split()[0], []).append((tuple(_v.split()), tuple(_out.split())))
for _entries in _PHRASES.values():
    _entries.sort(key=lambda e: -len(e[0]))


def _fold_phrases(words: list[str]) -> list[str]:
    """Phrases replaced, left to right, longest first at a position (none: the same list)."""
    starts = [i for i, w in enumerate(words) if w in _PHRASES]
    if not starts:
        return words
    out: list[str] = []
    pos = 0
    for i in starts:
        if i < pos:  # inside a phrase already folded
            continue
        for phrase, repl in _PHRASES[words[i]]:
            k = len(phrase)
            if tuple(words[i : i + k]) == phrase:
                out += words[pos:i]
                out += repl
                pos = i + k
                break
    out += words[pos:]
    return out


# Interchangeable words in support questions, mapped to one canonical token.
# Keys are stems (see _stem); values are what the token becomes.
_SYNONYMS: dict[str, str] = {
    "modify": "change",
    "updat": "change",
    "edit": "change",
    "alter": "change",
    "switch": "change",
    "chang": "change",
    "reschedul": "change",
    "cancell": "cancel",
    "cancellation": "cancel",
    "remov": "delete",
    "eras": "delete",
    "delet": "delete",
    "receiv": "get",
    "reciev": "get",
    "got": "get",
    "gotten": "get",
    "obtain": "get",
    "arriv": "get",
    "purchas": "order",
    "buy": "order",
    "bought": "order",
    "pric": "cost",
    "fee": "cost",
    "cost": "cost",
    "delivery": "ship",
    "deliver": "ship",
    "shipp": "ship",
    "postag": "ship",
    "parcel": "packag",
    "reimburs": "refund",
    "reimbursement": "refund",
    "membership": "subscription",
    "yearly": "annual",
    "annually": "annual",
    "year": "annual",
    "month": "monthly",
    "activat": "enabl",
    "deactivat": "disabl",
    "photo": "pictur",
    "pic": "pictur",
    "imag": "pictur",
    "avatar": "pictur",
    "reach": "contact",
    "representativ": "human",
    "agent": "human",
    "person": "human",
    "shop": "store",
    "application": "app",
    "product": "item",
    "something": "item",
    "incorrect": "wrong",
    "broken": "damag",
    "information": "data",
    "info": "data",
    "detail": "data",
    "promo": "coupon",
    "discount": "coupon",
    "voucher": "coupon",
    "promotion": "coupon",
    "frequent": "often",
    "frequently": "often",
    "secur": "safe",
    "securely": "safe",
    "safely": "safe",
    "manufactur": "made",
    "requir": "need",
    "guid": "chart",
    "restart": "resum",
    "collect": "pickup",
    "connect": "integrat",
    "integration": "integrat",
    "vulnerability": "issu",
    "upload": "add",
    "sav": "add",
    "forgot": "forget",
    "forgotten": "forget",
    "anoth": "different",
    "another": "different",
    "tak": "accept",
    "take": "accept",
    "international": "internation",
    "internationally": "internation",
    "twice": "2x",
    "once": "1x",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "ur": "your",
    "u": "you",
    "pls": "please",
    "plz": "please",
    "autopay": "autopayment",
    "automatic": "auto",
    "instalment": "installment",
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that carry grammar, politeness or the question frame, not what is asked.
STOP: frozenset[str] = _words(
    """a an the i me my mine we us our you your yours it its itself is are was were be
    been being am do does did doing done can could would should will shall may might
    must to from of for with at by about as in into how what which who whom this that
    these those there here and or but if so please hi hello hey thanks thank just any
    some also really want wanted like have has had go going way possible ok okay tell
    let help question anyone someone still yet again currently now right offer offered
    available provide provided allow allowed option options exist exists too very
    much on up keep"""
)

# Generic verbs: part of the meaning, but less than the nouns around them.
LIGHT: frozenset[str] = _words("get use make find work see check know need happen put set look")

# Contrast groups: if both questions use words of a group, they must use the same ones.
_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"before", "after", "during", "within", "until"}),
    frozenset({"to", "from"}),  # _DIRECTION_GROUP
    frozenset({"on", "off"}),
    frozenset({"minimum", "maximum"}),
    frozenset({"more", "less", "fewer"}),
    frozenset({"monthly", "annual", "weekly", "daily", "quarterly"}),
    frozenset({"where", "when", "why", "who", "duration", "cost", "howmany"}),
    frozenset({"next", "same", "previous", "last", "first", "nextday", "sameday"}),
    frozenset({"early", "late"}),
    frozenset({"all", "every", "each", "both"}),
)
_DIRECTION_GROUP = 1
_EMPTY: frozenset[str] = frozenset()
_GROUP_OF: dict[str, int] = {w: i for i, g in enumerate(_GROUPS) for w in g}
_NEGATION = frozenset({"not", "no", "never", "without", "none", "nothing", "nobody"})
_PROTECTED = frozenset(_GROUP_OF) | _NEGATION


# Plurals that name something other than their singular ("securities" are not
# "security", "customs" are not "custom", "goods" are not "good"): never stemmed.
_OWN_SENSE: frozenset[str] = _words(
    """securities glasses goods customs arms savings earnings premises quarters spirits
    futures manners damages remains holdings belongings headquarters"""
)


def _stem(w: str) -> str:
    """Light, deterministic stemming: enough to fold plurals and tenses of support verbs."""
    if len(w) <= 3 or w.isdigit():
        return w
    for suffix, keep in (
        ("ies", "y"),
        ("ing", ""),
        ("ied", "y"),
        ("ed", ""),
        ("es", ""),
        ("s", ""),
    ):
        if not w.endswith(suffix) or len(w) - len(suffix) < 3:
            continue
        if suffix == "s" and w.endswith(("ss", "us", "is")):
            break
        if suffix == "es" and not w.endswith(("shes", "ches", "xes", "sses", "zes")):
            continue
        w = w[: len(w) - len(suffix)] + keep
        if suffix in ("ing", "ed") and len(w) > 3 and w[-1] == w[-2] and w[-1] not in "ls":
            w = w[:-1]  # shipping -> shipp -> ship
        break
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]  # charge, charged, charging -> charg
    return w


_CANONICAL: dict[str, str] = {}
_CANONICAL_LIMIT = 100_000


def canonical_token(word: str) -> str:
    """One word, already lower-cased, to its canonical token (memoized)."""
    token = _CANONICAL.get(word)
    if token is not None:
        return token
    if word in STOP or word in _PROTECTED or word in _OWN_SENSE:
        token = word
    else:
        token = _SYNONYMS.get(word) or _SYNONYMS.get(_stem(word)) or _stem(word)
    if len(_CANONICAL) >= _CANONICAL_LIMIT:
        _CANONICAL.clear()
    _CANONICAL[word] = token
    return token


def _words_of(text: str) -> list[str]:
    """Lower-cased words, contractions expanded."""
    t = unicodedata.normalize("NFKC", text).casefold()
    if "'" in t or "’" in t or "cannot" in t:
        t = _CONTRACTIONS.sub(_contraction, t)
    return _WORD.findall(t)


def analyze(text: str) -> list[str]:
    """Canonical tokens of a question, in order (stop words included)."""
    memo = _CANONICAL
    return [memo.get(w) or canonical_token(w) for w in _fold_phrases(_words_of(text))]


def exact_text(text: str) -> str:
    """Case, width, spacing and punctuation folded; nothing else (the exact layer's key)."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


@dataclass(slots=True, frozen=True)
class Signature:
    """The meaning-flipping parts of a question, compared by :func:`compatible`."""

    numbers: tuple[str, ...]
    negated: bool
    groups: tuple[frozenset[str], ...]  # one (possibly empty) set per contrast group
    # With "from" in the question: "from:<word>" and "to:<word>" for the word each governs.
    directions: frozenset[str] = frozenset()

    def encode(self) -> str:
        """Compact text form (stored next to a vector in shared backends)."""
        groups = ";".join(",".join(sorted(g)) for g in self.groups)
        directions = ",".join(sorted(self.directions))
        return f"{','.join(self.numbers)}|{int(self.negated)}|{groups}|{directions}"

    @staticmethod
    def decode(text: str) -> Signature:
        try:
            numbers, negated, groups, directions = text.split("|")
        except ValueError:
            raise ValueError(
                f"cache signature {text!r} is malformed: expected 4 fields separated by '|'"
            ) from None
        sets = tuple(frozenset(g.split(",")) - {""} for g in groups.split(";"))
        if len(sets) != len(_GROUPS):
            raise ValueError(
                f"cache signature {text!r} has {len(sets)} contrast groups, expected {len(_GROUPS)}"
            )
        return Signature(
            tuple(n for n in numbers.split(",") if n),
            negated == "1",
            sets,
            frozenset(directions.split(",")) - {""},
        )


def signature(tokens: list[str]) -> Signature:
    """The :class:`Signature` of a question's canonical tokens (from :func:`analyze`)."""
    found: dict[int, set[str]] = {}
    numbers: list[str] = []
    negated = False
    for t in tokens:
        if t in _NEGATION:
            negated = True
        elif t[:1].isdigit() and (t.isdigit() or (t[-1] == "x" and t[:-1].isdigit())):
            numbers.append(t)
        g = _GROUP_OF.get(t)
        if g is not None:
            found.setdefault(g, set()).add(t)
    directions: set[str] = set()
    if "from" in found.get(_DIRECTION_GROUP, ()):
        for i, t in enumerate(tokens):
            if t in ("from", "to"):
                arg = next((w for w in tokens[i + 1 :] if w not in STOP), "")
                directions.add(f"{t}:{arg}")
    groups = tuple(frozenset(found[i]) if i in found else _EMPTY for i in range(len(_GROUPS)))
    return Signature(tuple(sorted(numbers)), negated, groups, frozenset(directions))


def compatible(a: Signature, b: Signature) -> bool:
    """May two questions with these signatures be served the same answer?

    Numbers must be the same, negation present in both or neither; for each
    contrast group used by both questions, the same words of it; and when
    both say "from", each direction word must govern the same word.
    """
    if a.numbers != b.numbers or a.negated != b.negated:
        return False
    if a.directions and b.directions and a.directions != b.directions:
        return False
    return all(not (ga and gb) or ga == gb for ga, gb in zip(a.groups, b.groups, strict=True))
