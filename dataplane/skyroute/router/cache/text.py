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
_CONTRACTIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"\bcan[’']?t\b", "can not"),
        (r"\bcannot\b", "can not"),
        (r"\bwon[’']?t\b", "will not"),
        (r"\b(\w+)n[’']t\b", r"\1 not"),
        (r"[’'](s|re|m|ve|ll|d)\b", ""),
    )
)

# Multi-word phrases with one meaning, folded before tokenizing. Order matters:
# longer phrases first.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(r"\b(?:" + p + r")\b"), r)
    for p, r in (
        (r"two[\s-]?factor(?: authentication)?|multi[\s-]?factor(?: authentication)?|2fa|mfa",
         "twofactor"),
        (r"(?:log|sign)(?:ged|ging)?\s*(?:in|into|on)(?:to)?", "login"),
        (r"(?:log|sign)(?:ged|ging)?\s*(?:out|off)", "logout"),
        (r"sign(?:ed|ing)?\s*up", "signup"),
        (r"opt(?:ed)?\s*out", "optout"),
        (r"opt(?:ed)?\s*in", "optin"),
        (r"auto[\s-]?renew(?:al|s|ed)?|automatic(?:ally)? renew(?:al|s)?", "autorenew"),
        (r"renew automatically", "autorenew"),
        (r"turn(?:ed)?\s+on|switch(?:ed)?\s+on", "enable"),
        (r"turn(?:ed)?\s+off|switch(?:ed)?\s+off", "disable"),
        (r"e[\s-]mail", "email"),
        (r"money back", "refund"),
        (r"get in touch with|get in touch|speak (?:with|to)|talk (?:with|to)", "contact"),
        (r"real person|human agent|live agent|real human", "human"),
        (r"customer (?:service|support|care)|support team|help ?desk", "support"),
        (r"phone number|mobile number|cell number", "phone"),
        (r"what time", "when"),
        (r"how long", "duration"),
        (r"how much", "cost"),
        (r"how many", "howmany"),
        (r"at least|minimum|min", "minimum"),
        (r"at most|maximum|max", "maximum"),
        (r"is it possible to|is it possible|am i able to|able to", "can"),
        (r"unable to", "can not"),
        (r"a single|single", "1"),
        (r"in store|in-store|in a store|to a store", "instore"),
        (r"free trial", "trial"),
        (r"pick up|picked up", "pickup"),
        (r"buy now pay later", "installment"),
        (r"same[\s-]day", "sameday"),
        (r"next[\s-]day", "nextday"),
        (r"web ?site|site", "website"),
    )
)

# Interchangeable words in support questions, mapped to one canonical token
# (applied after suffix stripping, so list stems as well as forms).
_SYNONYMS: dict[str, str] = {
    "modify": "change", "update": "change", "edit": "change", "alter": "change",
    "switch": "change", "chang": "change",
    "remove": "delete", "erase": "delete", "delet": "delete",
    "receive": "get", "receiv": "get", "recieve": "get", "got": "get", "gotten": "get",
    "obtain": "get",
    "purchase": "buy", "purchas": "buy", "bought": "buy",
    "price": "cost", "pric": "cost", "fee": "cost",
    "delivery": "ship", "deliver": "ship", "shipping": "ship", "shipp": "ship",
    "postage": "ship", "ships": "ship", "sent": "send",
    "parcel": "package", "packag": "package",
    "reimburse": "refund", "reimbursement": "refund",
    "membership": "subscription",
    "yearly": "annual", "annually": "annual", "year": "annual",
    "month": "monthly",
    "activate": "enable", "activ": "enable", "disabl": "disable", "deactivate": "disable",
    "enabl": "enable",
    "photo": "picture", "pic": "picture", "image": "picture", "avatar": "picture",
    "pictur": "picture",
    "reach": "contact",
    "representative": "human", "agent": "human", "person": "human",
    "shop": "store",
    "application": "app",
    "product": "item", "something": "item",
    "incorrect": "wrong",
    "broken": "damaged", "damag": "damaged", "damage": "damaged",
    "information": "data", "info": "data", "detail": "data",
    "promo": "coupon", "discount": "coupon", "voucher": "coupon", "promotion": "coupon",
    "frequently": "often",
    "secure": "safe", "securely": "safe", "safely": "safe",
    "manufactur": "made", "manufacture": "made",
    "require": "need", "requir": "need", "required": "need",
    "accepted": "accept",
    "guide": "chart",
    "locat": "location",
    "restart": "resume",
    "collect": "pickup",
    "connect": "integrate", "integration": "integrate", "integrat": "integrate",
    "vulnerability": "issue", "vulnerabil": "issue",
    "twice": "2x", "once": "1x",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
    "ur": "your", "u": "you", "pls": "please", "plz": "please",
    "weekend": "weekend", "saturday": "saturday", "sunday": "sunday",
    "autopay": "autopayment", "automatic": "auto",
    "installments": "installment", "instalment": "installment",
    "manual": "manual",
}

# Words that carry grammar, politeness or the question frame, not what is asked.
STOP: frozenset[str] = frozenset(
    """a an the i me my mine we us our you your yours it its is are was were be been
    being am do does did doing can could would should will shall may might must to of
    for with at by about as into how what which who whom this that these those there
    here and or but if so please hi hello hey thanks thank just any some also really
    want wanted like need have has had get go going way possible ok okay know tell
    let help question anyone someone still yet again currently now right there
    offer offered available provide provided allow allowed option options
    exist exists able too very much on up""".split()
)

# Contrast groups: if both questions use words of a group, they must use the same ones.
_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"before", "after", "during", "within", "until"}),
    frozenset({"to", "from"}),
    frozenset({"on", "off"}),
    frozenset({"minimum", "maximum"}),
    frozenset({"more", "less", "fewer"}),
    frozenset({"monthly", "annual", "weekly", "daily", "quarterly"}),
    frozenset({"where", "when", "why", "who", "duration", "cost", "howmany"}),
    frozenset({"next", "same", "previous", "last", "first", "nextday", "sameday"}),
    frozenset({"early", "late"}),
    frozenset({"all", "every", "each", "both"}),
)
_GROUP_OF: dict[str, int] = {w: i for i, g in enumerate(_GROUPS) for w in g}
_NEGATION = frozenset({"not", "no", "never", "without", "none", "nothing", "nobody"})
_NUMBER = re.compile(r"^\d+x?$")


def _strip_suffix(w: str) -> str:
    """Light, deterministic stemming: enough to fold plurals and tenses of support verbs."""
    if len(w) <= 3 or w.isdigit():
        return w
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ied", "y"), ("ed", ""), ("es", ""),
                         ("s", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            if suffix == "s" and w.endswith(("ss", "us", "is")):
                return w
            if suffix == "es" and not w.endswith(("shes", "ches", "xes", "sses", "zes")):
                continue
            stem = w[: len(w) - len(suffix)] + keep
            if suffix in ("ing", "ed") and len(stem) > 3 and stem[-1] == stem[-2]:
                stem = stem[:-1]  # shipping -> shipp -> ship
            return stem
    return w


def canonical_token(word: str) -> str:
    """One word, already lower-cased, to its canonical token."""
    syn = _SYNONYMS.get(word)
    if syn is not None:
        return syn
    stem = _strip_suffix(word)
    return _SYNONYMS.get(stem, stem)


def _prepare(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).casefold()
    for pat, rep in _CONTRACTIONS:
        t = pat.sub(rep, t)
    for pat, rep in _PHRASES:
        t = pat.sub(rep, t)
    return t


def analyze(text: str) -> list[str]:
    """Canonical tokens of a question, in order (stop words included)."""
    return [canonical_token(w) for w in _WORD.findall(_prepare(text))]


def exact_text(text: str) -> str:
    """Case, width, spacing and punctuation folded; nothing else (the exact layer's key)."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


@dataclass(slots=True, frozen=True)
class Signature:
    """The meaning-flipping parts of a question, compared by :func:`compatible`."""

    numbers: tuple[str, ...]
    negated: bool
    groups: tuple[frozenset[str], ...]  # one (possibly empty) set per contrast group

    def encode(self) -> str:
        """Compact text form (stored next to a vector in shared backends)."""
        groups = ";".join(",".join(sorted(g)) for g in self.groups)
        return f"{','.join(self.numbers)}|{int(self.negated)}|{groups}"

    @staticmethod
    def decode(text: str) -> Signature:
        try:
            numbers, negated, groups = text.split("|")
            sets = tuple(frozenset(g.split(",")) - {""} for g in groups.split(";"))
        except ValueError as e:
            raise ValueError(f"cache signature {text!r} is malformed: {e}") from None
        if len(sets) != len(_GROUPS):
            raise ValueError(f"cache signature {text!r} has {len(sets)} groups, "
                             f"expected {len(_GROUPS)}")
        return Signature(tuple(n for n in numbers.split(",") if n), negated == "1", sets)


def signature(tokens: list[str]) -> Signature:
    groups: list[set[str]] = [set() for _ in _GROUPS]
    numbers: list[str] = []
    negated = False
    for t in tokens:
        if t in _NEGATION:
            negated = True
        if _NUMBER.match(t):
            numbers.append(t)
        g = _GROUP_OF.get(t)
        if g is not None:
            groups[g].add(t)
    return Signature(tuple(sorted(numbers)), negated, tuple(frozenset(g) for g in groups))


def compatible(a: Signature, b: Signature) -> bool:
    """May two questions with these signatures be served the same answer?

    Numbers must be the same, negation present in both or neither, and for each
    contrast group used by both questions, the same words of it.
    """
    if a.numbers != b.numbers or a.negated != b.negated:
        return False
    return all(not (ga and gb) or ga == gb for ga, gb in zip(a.groups, b.groups, strict=True))
