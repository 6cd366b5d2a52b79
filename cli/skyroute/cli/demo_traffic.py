"""A deterministic sample of AcmeShop support-copilot traffic, with its arrival schedule.

The demo compares a single-model deployment with a routed one, so both arms
must see *the same* requests at *the same* moments; anything random is drawn
from one seeded generator, and the same seed always yields the same sample
(byte for byte, see :func:`fingerprint`).

What makes the sample realistic, and why each part matters to routing:

* **The intent mix** follows the case study: about 55% FAQ and low-risk asks
  (the cost pool's traffic), about 38% general conversations and safety
  questions (balanced), about 7% complex reasoning and tool plans (quality).
  Nothing here names a pool; the router has to find the intent from the text.
* **Repeats and paraphrases**: popular FAQ questions come back word for word
  (a Zipf-like popularity over a few canonical phrasings), the rest are
  paraphrases built from openers, cores and closers. That is what makes a
  cache useful, and what a cache partitioned by tenant and locale must cope
  with (the same question from another locale is a different key).
* **Tools** ride only on tool-plan requests, in the OpenAI ``tools`` format,
  because those are the requests where a duplicate send has side effects.
* **Prompt sizes vary** from a one-word "thanks" to multi-turn histories and
  long pasted tables, so prompt-size rules and token costs have work to do.
* **Arrivals are open-loop** with a steady rate and a peak window (peak
  traffic is where the provider burst hits, as in AcmeShop's failure mode).
  Arrival times are the order statistics of independent draws from the
  piecewise-constant rate profile: exactly ``count`` requests, a Poisson
  process conditioned on its count, spread over ``duration_s``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any, Final

from skyroute.cli import demo_context as context
from skyroute.cli import demo_corpus as corpus

#: Share of each intent in the sample (sums to 1): faq + lowrisk 55%, general 38%,
#: reasoning + tools + safety 7% (the case study's 54 / 39 / 7 pool mix is what a
#: policy *should* make of such traffic; the generator never names a pool).
INTENT_MIX: Final[dict[str, float]] = {
    "faq.password": 0.095,
    "faq.pricing": 0.075,
    "faq.refund": 0.090,
    "faq.shipping": 0.095,
    "faq.account": 0.055,
    "lowrisk.order-status": 0.095,
    "lowrisk.smalltalk": 0.045,
    "support.general": 0.380,
    "safety.medical": 0.005,
    "safety.financial": 0.005,
    "reasoning.compare": 0.014,
    "reasoning.plan": 0.011,
    "tools.invoice": 0.012,
    "tools.ticket": 0.014,
    "tools.shipment": 0.009,
}

#: Chance that an FAQ request is a verbatim canonical question (else a paraphrase).
FAQ_EXACT_SHARE: Final[float] = 0.55
DEFAULT_SEED: Final[int] = 2026


def family_of(intent: str) -> str:
    """``faq.refund`` -> ``faq``; ``support.general`` -> ``general``."""
    head = intent.split(".", 1)[0]
    return "general" if head == "support" else head


@dataclass(frozen=True, slots=True)
class PeakWindow:
    """Where the peak sits, as fractions of the replay's duration, and how much busier."""

    start: float = 0.40
    end: float = 0.65
    factor: float = 2.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ValueError(
                f"peak window must satisfy 0 <= start < end <= 1, got "
                f"start={self.start} end={self.end}"
            )
        if self.factor < 1.0:
            raise ValueError(f"peak factor must be >= 1, got {self.factor}")


@dataclass(slots=True)
class TrafficRequest:
    """One request of the sample: what to send, when, and its ground-truth labels."""

    index: int
    at_s: float  # arrival offset from the start of the replay, seconds (unscaled)
    intent: str  # ground truth, as the generator meant it
    tenant: str
    locale: str
    user: str
    user_tier: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_tokens: int = 400
    exact_repeat: bool = False  # a canonical FAQ phrasing, repeated verbatim across users

    @property
    def family(self) -> str:
        return family_of(self.intent)

    @property
    def is_faq(self) -> bool:
        return self.intent.startswith("faq.")

    @property
    def has_tools(self) -> bool:
        return bool(self.tools)

    def body(self, model: str) -> dict[str, Any]:
        """The OpenAI Chat Completions request body for ``model`` (a policy name)."""
        body: dict[str, Any] = {
            "model": model,
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "user": self.user,
        }
        if self.tools:
            body["tools"] = self.tools
        return body

    def headers(self) -> dict[str, str]:
        """Request attributes the router uses as signals (tenant, locale, tier)."""
        return {
            "x-skyroute-tenant": self.tenant,
            "x-skyroute-locale": self.locale,
            "x-skyroute-user-tier": self.user_tier,
            "x-request-id": f"acmeshop-{self.index:06d}",
        }

    def prompt_chars(self) -> int:
        text = sum(len(str(m.get("content") or "")) for m in self.messages)
        return text + (len(json.dumps(self.tools)) if self.tools else 0)


class _Draw:
    """Weighted choices over fixed tables, with cumulative weights precomputed."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def weighted(self, pairs: tuple[tuple[str, float], ...] | list[tuple[str, float]]) -> str:
        names = [n for n, _ in pairs]
        return self.rng.choices(names, weights=[w for _, w in pairs])[0]

    def zipf(self, items: tuple[str, ...], s: float = 1.1) -> str:
        weights = [1.0 / (rank + 1) ** s for rank in range(len(items))]
        return self.rng.choices(items, weights=weights)[0]

    def order_id(self) -> str:
        return f"A-{self.rng.randrange(100000, 999999)}"


def _faq(d: _Draw, intent: str) -> tuple[str, bool]:
    if d.rng.random() < FAQ_EXACT_SHARE:
        return d.zipf(corpus.FAQ_CANONICAL[intent]), True
    core = d.rng.choice(corpus.FAQ_CORES[intent])
    text = d.rng.choice(corpus.OPENERS) + core + d.rng.choice(corpus.CLOSERS)
    return text[0].upper() + text[1:], False


def _general_history(d: _Draw) -> list[dict[str, Any]]:
    turns = d.rng.choices((0, 1, 2, 3, 4), weights=(0.35, 0.30, 0.18, 0.11, 0.06))[0]
    msgs: list[dict[str, Any]] = [{"role": "user", "content": d.rng.choice(corpus.GENERAL_OPENERS)}]
    for _ in range(turns):
        msgs.append({"role": "assistant", "content": d.rng.choice(corpus.ASSISTANT_TURNS)})
        msgs.append({"role": "user", "content": d.rng.choice(corpus.GENERAL_FOLLOWUPS)})
    return msgs


def _reasoning(d: _Draw, intent: str) -> str:
    ask = d.rng.choice(corpus.REASONING[intent]).format(
        seats=d.rng.choice((25, 80, 200, 450)), units=d.rng.choice((300, 1200, 5000))
    )
    rows = []
    for i in range(d.rng.randint(4, 14)):
        template = d.rng.choice(corpus.REASONING_CONTEXT)
        rows.append(
            template.format(
                name=f"option-{i + 1}",
                a=d.rng.randint(5, 500),
                b=d.rng.randint(2, 40),
                c=d.rng.randint(10, 2000),
                d=d.rng.choice(("email", "chat, 24/7", "phone, 8-18")),
                e=d.rng.choice(("yes", "no", "add-on")),
                f=d.rng.choice((14, 30, 45)),
            )
        )
    return ask + "\n\nContext:\n" + "\n".join(rows)


def _content(d: _Draw, intent: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, bool]:
    """(conversation messages, tools, max_tokens, exact_repeat) for one intent."""
    fam = family_of(intent)
    if fam == "faq":
        text, exact = _faq(d, intent)
        return [{"role": "user", "content": text}], [], 300, exact
    if intent == "lowrisk.order-status":
        text = d.rng.choice(corpus.ORDER_STATUS).format(order=d.order_id())
        return [{"role": "user", "content": text}], [], 200, False
    if intent == "lowrisk.smalltalk":
        return [{"role": "user", "content": d.rng.choice(corpus.SMALLTALK)}], [], 100, False
    if fam == "general":
        return _general_history(d), [], 600, False
    if fam == "safety":
        return [{"role": "user", "content": d.rng.choice(corpus.SAFETY[intent])}], [], 500, False
    if fam == "reasoning":
        return [{"role": "user", "content": _reasoning(d, intent)}], [], 1500, False
    if fam == "tools":
        text = d.rng.choice(corpus.TOOL_PROMPTS[intent]).format(order=d.order_id())
        tools = [corpus.TOOLS[name] for name in corpus.TOOLS_FOR_INTENT[intent]]
        return [{"role": "user", "content": text}], tools, 800, False
    raise ValueError(f"INTENT_MIX names an intent the generator has no text for: {intent!r}")


def _system_prompt(d: _Draw, intent: str, tenant: str, locale: str) -> str:
    """Instructions plus the retrieved help-centre articles for the topic."""
    if intent == "support.general":
        topics = d.rng.choice(context.GENERAL_ARTICLE_SETS)
    else:
        topics = context.ARTICLES_FOR_INTENT[intent]
    text = corpus.SYSTEM_PROMPT.format(surface=corpus.SURFACES[tenant], locale=locale)
    text += "\n\n" + context.GUIDELINES
    if topics:
        text += "\n\nRelevant help-centre articles:\n" + "\n\n".join(
            context.ARTICLES[t] + "\n" + context.ARTICLE_DETAILS[t] for t in topics
        )
    if family_of(intent) in ("general", "lowrisk", "tools") and intent != "lowrisk.smalltalk":
        text += "\n\n" + _order_context(d)
    return text


def _order_context(d: _Draw) -> str:
    lines = [
        f"Customer context: member since {d.rng.randint(2015, 2025)}, "
        f"{d.rng.randint(1, 60)} orders so far. Recent orders:"
    ]
    for _ in range(d.rng.randint(1, 4)):
        n = d.rng.randint(1, 3)
        lines.append(
            context.ORDER_LINE.format(
                order=d.order_id(),
                day=d.rng.randint(1, 40),
                n=n,
                items=", ".join(d.rng.sample(context.PRODUCTS, n)),
                seller=d.rng.choice(context.SELLERS),
                state=d.rng.choice(context.ORDER_STATES),
                total=f"{d.rng.uniform(9, 400):.2f}",
            )
        )
    return "\n".join(lines)


def arrival_times(
    rng: random.Random, count: int, duration_s: float, peak: PeakWindow
) -> list[float]:
    """``count`` sorted arrival offsets in ``[0, duration_s)`` following the rate profile."""
    # Piecewise-constant rate: 1 outside the peak, `factor` inside. Invert its CDF.
    edges = [0.0, peak.start, peak.end, 1.0]
    rates = [1.0, peak.factor, 1.0]
    mass = [r * (edges[i + 1] - edges[i]) for i, r in enumerate(rates)]
    total = sum(mass)
    cum = [0.0]
    for m in mass:
        cum.append(cum[-1] + m / total)
    out = []
    for u in sorted(rng.random() for _ in range(count)):
        seg = min(bisect.bisect_right(cum, u) - 1, len(rates) - 1)
        frac = edges[seg] + (u - cum[seg]) * total / rates[seg]
        out.append(round(frac * duration_s, 6))
    return out


def generate_traffic(
    count: int,
    *,
    seed: int = DEFAULT_SEED,
    duration_s: float = 30.0,
    peak: PeakWindow | None = None,
) -> list[TrafficRequest]:
    """The sample: ``count`` requests over ``duration_s`` seconds, deterministic in ``seed``."""
    if count < 1:
        raise ValueError(f"traffic count must be at least 1, got {count}")
    if duration_s <= 0:
        raise ValueError(f"traffic duration_s must be positive, got {duration_s}")
    rng = random.Random(seed)
    d = _Draw(rng)
    times = arrival_times(rng, count, duration_s, peak or PeakWindow())
    intents = list(INTENT_MIX.items())
    users = [f"u{n:05d}" for n in range(max(50, count // 3))]  # some users ask more than once
    out: list[TrafficRequest] = []
    for i, at in enumerate(times):
        intent = d.weighted(intents)
        tenant = d.weighted(corpus.TENANTS)
        locale = d.weighted(corpus.LOCALES)
        tier = d.weighted(corpus.USER_TIERS)
        convo, tools, max_tokens, exact = _content(d, intent)
        system = _system_prompt(d, intent, tenant, locale)
        out.append(
            TrafficRequest(
                index=i,
                at_s=at,
                intent=intent,
                tenant=tenant,
                locale=locale,
                user=rng.choice(users),
                user_tier=tier,
                messages=[{"role": "system", "content": system}, *convo],
                tools=tools,
                max_tokens=max_tokens,
                exact_repeat=exact,
            )
        )
    return out


def fingerprint(requests: list[TrafficRequest]) -> str:
    """A short content hash of the sample (what "deterministic" is checked against)."""
    h = hashlib.sha256()
    for r in requests:
        h.update(
            json.dumps(
                [
                    r.at_s,
                    r.intent,
                    r.tenant,
                    r.locale,
                    r.user,
                    r.user_tier,
                    r.messages,
                    r.tools,
                    r.max_tokens,
                ],
                sort_keys=True,
            ).encode()
        )
    return h.hexdigest()[:16]


def describe(requests: list[TrafficRequest]) -> dict[str, Any]:
    """Shares by family, FAQ repeats, tools, prompt sizes: what the sample looks like."""
    n = len(requests)
    fams: dict[str, int] = {}
    for r in requests:
        fams[r.family] = fams.get(r.family, 0) + 1
    faq = [r for r in requests if r.is_faq]
    chars = sorted(r.prompt_chars() for r in requests)
    return {
        "requests": n,
        "family_share": {k: v / n for k, v in sorted(fams.items())},
        "faq_exact_share": (sum(r.exact_repeat for r in faq) / len(faq)) if faq else 0.0,
        "tools_share": sum(r.has_tools for r in requests) / n,
        "prompt_chars_p50": chars[n // 2],
        "prompt_chars_max": chars[-1],
        "duration_s": requests[-1].at_s,
    }


def to_jsonl(requests: list[TrafficRequest]) -> str:
    """One JSON object per line: labels, schedule and the body to send."""
    lines = []
    for r in requests:
        lines.append(
            json.dumps(
                {
                    "index": r.index,
                    "at_s": r.at_s,
                    "intent": r.intent,
                    "tenant": r.tenant,
                    "locale": r.locale,
                    "user": r.user,
                    "user_tier": r.user_tier,
                    "exact_repeat": r.exact_repeat,
                    "body": r.body("acmeshop"),
                },
                sort_keys=True,
            )
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m skyroute.cli.demo_traffic --requests N --out PATH``: write a sample."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m skyroute.cli.demo_traffic",
        description="write a seeded AcmeShop traffic sample as JSONL",
    )
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--duration", type=float, default=30.0, help="schedule length, seconds")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    sample = generate_traffic(args.requests, seed=args.seed, duration_s=args.duration)
    with open(args.out, "w") as f:
        f.write(to_jsonl(sample))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
