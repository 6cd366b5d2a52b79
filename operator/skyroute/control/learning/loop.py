"""The learning loop's control-plane half: fleet figures from every router, pushed as priors.

Method: exponential-decay merged sketches feeding scored selection, with
epsilon-greedy exploration on the routers. Every router ships, with each
outcome batch, its per-(model, intent) counts and a DDSketch of successful
attempt latencies for the window since its last batch. Here those windows
are added into one rolling state per model (and per (model, intent), for
people): sketch bins are summed, which is exact for sketches with the same
mapping, so the fleet p95 is the p95 of all routers' traffic within the
sketch's 1% relative accuracy; a p95 of p95s would not be. Every count and
bin decays by ``0.5 ** (age / half_life_s)``, so the state is a rolling
window whose memory the policy chooses, and a model that recovered wins its
place back as old slow samples fade.

Once a model has ``min_samples`` (decayed) observations its p95, failure
rate and mean completion length become priors: they are written into every
Candidate's ``observed_*`` fields in the pools that adaptive policies use,
and the snapshot is republished with a new content version
(``snapshot_version``). Policy versions stay as compiled: they name what the
spec says, not what was learned, so outcomes tagged with a policy version
group across prior pushes (what a canary's analysis compares, and what
status shows). A push happens only when a
figure moved materially (10% relative, or 0.02 of failure rate), and at most
once per ``interval_s``: routers rebuild tables per version, so the push rate
is bounded by design. Below ``min_samples`` a model keeps its last prior, so
a model starved of traffic is not suddenly judged "unknown".

The learner never chooses a model: it changes priors, and the router's
scoring, constraints and pool still decide. The store's ``prepare`` hook
routes every publish through ``apply``, so a folder change recompiles and
gets the current priors re-applied in the same push.

Drift: per model, the baseline is the first stable window (figures with
``min_samples`` that agree within 10% with those one interval earlier, so
cold-start connections do not become the norm), or the source's own
``observed_p95_ms`` when it pushes one. When the current p95 or cost per request exceeds baseline ×
ratio a structured warning is logged, an alert recorded (``/debug/learning``)
and ``on_drift(model, kind, True, message)`` called; below 90% of the
threshold it clears the same way with ``raised=False``. The kopf operator can
hang a ModelPool condition and event on that hook.

Input is untrusted: a window whose sketch is malformed (``BadSketch``) is
dropped whole and counted in ``rejected``; the per-model and per-(model,
intent) tables are capped (``limits.SeriesCap``). The loop itself never dies
of a failing tick: the exception is logged, counted in ``failures`` (and in
the supervisor's task health, which ``/healthz`` reports) and the next tick
runs as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from skyroute.control.learning.fleet import BadSketch, DecayedStats, Figures
from skyroute.control.learning.quality import DEFAULT_PRIOR_WEIGHT, QualityPosteriors
from skyroute.control.learning.recent import RecentOutcomes
from skyroute.control.learning.tooluse import ToolUseObserver
from skyroute.control.learning.winmodel import WinModels
from skyroute.control.limits import SeriesCap
from skyroute.control.logs import event
from skyroute.control.policy.compiler import referenced_pools, snapshot_version
from skyroute.control.policy.store import SnapshotStore
from skyroute.v1 import distribution_pb2, snapshot_pb2

log = logging.getLogger("skyroute.control.learning")

_REL_CHANGE = 0.10
_TOOL_CHANGE = 0.1  # observed tool-use rate moves before it is pushed
_FAIL_CHANGE = 0.02
_CLEAR_SHARE = 0.9
DriftHook = Callable[[str, str, bool, str], None]


@dataclass(slots=True)
class Settings:
    """The loop's knobs, merged over every policy that enables adaptation."""

    enabled: bool = False
    half_life_s: float = 300.0
    min_samples: float = 50.0
    interval_s: float = 30.0
    drift_latency_ratio: float = 0.0
    drift_cost_ratio: float = 0.0
    quality_prior_weight: float = DEFAULT_PRIOR_WEIGHT
    drift_quality_drop: float = 0.0

    @classmethod
    def of(cls, snapshot: snapshot_pb2.Snapshot | None) -> Settings:
        """Shortest half-life and interval, largest min_samples and prior weight, tightest drift."""
        policies = snapshot.policies if snapshot is not None else ()
        ads = [p.adaptation for p in policies if p.adaptation.enabled]
        if not ads:
            return cls()
        lat = [a.drift_latency_ratio for a in ads if a.drift_latency_ratio > 0]
        cost = [a.drift_cost_ratio for a in ads if a.drift_cost_ratio > 0]
        weights = [a.quality_prior_weight for a in ads if a.quality_prior_weight > 0]
        drops = [a.drift_quality_drop for a in ads if a.drift_quality_drop > 0]
        return cls(
            True,
            float(min(a.half_life_s or 300 for a in ads)),
            float(max(a.min_samples or 1 for a in ads)),
            float(min(a.interval_s or 30 for a in ads)),
            min(lat) if lat else 0.0,
            min(cost) if cost else 0.0,
            max(weights) if weights else DEFAULT_PRIOR_WEIGHT,
            min(drops) if drops else 0.0,
        )


@dataclass(slots=True)
class Drift:
    model: str
    kind: str  # "latency" or "cost"
    baseline: float
    current: float
    threshold: float
    since_unix_ms: int
    message: str


def _differs(old: tuple[float, float, float] | None, new: tuple[float, float, float]) -> bool:
    """A (p95, failure rate, tokens) prior worth a push: new, or moved materially."""
    return (
        old is None
        or _moved(old[0], new[0])
        or _moved(old[2], new[2])
        or abs(old[1] - new[1]) > _FAIL_CHANGE
    )


def _moved(old: float, new: float) -> bool:
    return abs(new - old) > _REL_CHANGE * max(abs(old), 1e-9)


class Learner:
    """Fleet state from router reports; republishes the store's snapshot with priors."""

    def __init__(
        self,
        store: SnapshotStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_drift: DriftHook | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_drift = on_drift
        self.cap = SeriesCap()
        self.rejected = 0  # stats windows dropped: a malformed sketch
        self.failures = 0  # ticks that raised (logged; the loop goes on)
        self.last_failure = ""
        self.models: dict[str, DecayedStats] = {}
        self.by_intent: dict[tuple[str, str], DecayedStats] = {}
        # Published priors: model -> (p95_ms, failure_rate, completion_tokens); 0 = unknown.
        self.priors: dict[str, tuple[float, float, float]] = {}
        # The same per (model, intent), for pairs with min_samples of their own.
        self.intent_priors: dict[tuple[str, str], tuple[float, float, float]] = {}
        self.baselines: dict[str, tuple[float | None, float | None]] = {}
        self.alerts: dict[tuple[str, str], Drift] = {}
        self._candidates: dict[str, tuple[float | None, float | None, float]] = {}
        self.history: list[dict[str, object]] = []  # raised/cleared, newest last (bounded)
        self.pushes = 0
        self.last_push = -math.inf
        self._base: snapshot_pb2.Snapshot | None = None
        # Observed tool use per (policy, intent), fed with outcomes by the distribution
        # service; published like the priors, into Intent.tool_use_probability.
        self.tool_use = ToolUseObserver(lambda: self.settings.half_life_s, clock, self.cap)
        self.tool_priors: dict[tuple[str, str], float] = {}
        # Quality feedback per (model, intent), joined by the routers (learning.quality).
        self.quality = QualityPosteriors(self.cap)
        # The last outcomes joined with their feedback (``skyroute outcomes export``).
        self.recent = RecentOutcomes()
        # Called with the feedback pieces the posteriors accepted (the canary analysis).
        self.feedback_listeners: list[Callable[[list[distribution_pb2.Feedback]], None]] = []
        # The learned signal's fits (learning.winmodel), fed by the ring's feedback join.
        self.wins = WinModels(self.cap)
        self.recent.on_join = lambda o, fb: self.wins.example(self._base, o, fb)
        # What a restart brought back from saved learned state (``persist``); {} if none.
        self.restored: dict[str, object] = {}
        store.prepare = self.apply

    @property
    def settings(self) -> Settings:
        return Settings.of(self._base)

    # -- input -------------------------------------------------------------------
    def record(self, stats: Iterable[distribution_pb2.ModelStats], router: str = "") -> None:
        """Add one router's window (called for every OutcomeBatch)."""
        now = self.clock()
        half = self.settings.half_life_s
        for s in stats:
            if not s.model:
                continue
            for st in (
                self.cap.entry(
                    self.models, s.model, lambda: DecayedStats(now), "learning.models", router
                ),
                self.cap.entry(
                    self.by_intent,
                    (s.model, s.intent),
                    lambda: DecayedStats(now),
                    "learning.intents",
                    router,
                ),
            ):
                if st is None:
                    continue
                st.decay(now, half)
                try:
                    st.add(s)
                except BadSketch as exc:
                    self.rejected += 1
                    event(log, "stats_rejected", logging.WARNING, model=s.model, error=str(exc))
                    break

    def feedback(self, feedback: Iterable[distribution_pb2.Feedback]) -> None:
        """Add feedback routers forwarded (called for every OutcomeBatch that carries some).

        Listeners (the canary analysis) get the pieces the posteriors accepted: checked,
        one per (answer, source, kind); a listener that raises loses nothing here.
        """
        batch = list(feedback)
        kept = self.quality.accept(batch)
        self.recent.feedback(batch)
        for listener in self.feedback_listeners:
            try:
                listener(kept)
            except Exception:
                log.exception("feedback listener failed")

    # -- priors ------------------------------------------------------------------
    def figures(self) -> dict[str, Figures]:
        cfg = self.settings
        now = self.clock()
        out = {}
        for model, st in self.models.items():
            st.decay(now, cfg.half_life_s)
            out[model] = st.figures(cfg.min_samples)
        return out

    def _learned(self, figures: dict[str, Figures]) -> dict[str, tuple[float, float, float]]:
        """New priors: a figure without enough samples keeps its last published value."""
        out = dict(self.priors)
        for model, f in figures.items():
            old = out.get(model, (0.0, 0.0, 0.0))
            out[model] = (
                f.p95_ms if f.p95_ms is not None else old[0],
                f.failure_rate if f.failure_rate is not None else old[1],
                f.completion_tokens if f.completion_tokens is not None else old[2],
            )
        return {m: v for m, v in out.items() if any(v)}

    def _learned_by_intent(
        self, min_samples: float, now: float
    ) -> dict[tuple[str, str], tuple[float, float, float]]:
        half = self.settings.half_life_s
        out = {}
        for key, st in self.by_intent.items():
            st.decay(now, half)
            f = st.figures(min_samples)
            if f.p95_ms is not None:
                out[key] = (f.p95_ms, f.failure_rate or 0.0, f.completion_tokens or 0.0)
        return out

    def _material(self, new: dict[str, tuple[float, float, float]]) -> bool:
        for model, (p95, fail, tokens) in new.items():
            old = self.priors.get(model)
            if old is None:
                return True
            if _moved(old[0], p95) or _moved(old[2], tokens) or abs(old[1] - fail) > _FAIL_CHANGE:
                return True
        return False

    def tick(self) -> bool:
        """Recompute; republish if priors moved and the interval allows. True when pushed."""
        cfg = self.settings
        figures = self.figures()
        self._drift(figures, cfg)
        if not cfg.enabled or self._base is None:
            return False
        now = self.clock()
        if now - self.last_push < cfg.interval_s:
            return False
        new = self._learned(figures)
        by_intent = {**self.intent_priors, **self._learned_by_intent(cfg.min_samples, now)}
        tools = {**self.tool_priors, **self.tool_use.learned(cfg.min_samples)}
        moved = any(abs(v - self.tool_priors.get(k, -1.0)) > _TOOL_CHANGE for k, v in tools.items())
        moved = moved or any(_differs(self.intent_priors.get(k), v) for k, v in by_intent.items())
        self.wins.refit(self._base)
        moved = moved or self.quality.changed or self.wins.changed
        if not self._material(new) and not moved:
            return False
        self.priors, self.tool_priors, self.intent_priors = new, tools, by_intent
        self.quality.changed = self.wins.changed = False
        self.last_push = now
        pushed = self.store.publish(self._base, compiled=False)
        if pushed:
            self.pushes += 1
            event(
                log,
                "priors pushed",
                version=self.store.version,
                models=",".join(
                    f"{m}:p95={v[0]:.0f}ms,fail={v[1]:.3f}" for m, v in sorted(new.items())
                ),
            )
        return pushed

    def apply(self, snapshot: snapshot_pb2.Snapshot) -> snapshot_pb2.Snapshot:
        """The store's prepare hook: remember the compiled base, return it with priors."""
        self._base = snapshot
        adaptive = [p for p in snapshot.policies if p.adaptation.enabled]
        known = self.priors or self.tool_priors or self.intent_priors or self.quality.tallies
        if not adaptive or not (known or self.wins.fits):
            return snapshot
        weight = Settings.of(snapshot).quality_prior_weight
        pools = set().union(*(referenced_pools(p) for p in adaptive))
        out = snapshot_pb2.Snapshot()
        out.CopyFrom(snapshot)
        by_model: dict[str, list[tuple[tuple[str, str], tuple[float, float, float]]]] = {}
        for key, figures in sorted(self.intent_priors.items()):
            by_model.setdefault(key[0], []).append((key, figures))
        for pool in out.pools:
            if pool.name not in pools:
                continue
            for c in pool.candidates:
                p95, fail, tokens = self.priors.get(c.model, (0.0, 0.0, 0.0))
                if p95:
                    c.observed_p95_ms = round(p95, 3)
                if p95 or fail or tokens:
                    c.observed_failure_rate = round(fail, 5)
                if tokens:
                    c.observed_completion_tokens = round(tokens, 2)
                for intent_name, tally in self.quality.for_model(c.model):
                    prior = c.quality.get(intent_name, c.quality.get("*", 0.5))
                    alpha, beta = tally.beta(prior, weight)
                    c.learned_quality[intent_name].CopyFrom(
                        snapshot_pb2.LearnedQuality(
                            prior=prior,
                            n=tally.n,
                            posterior=round(tally.posterior(prior, weight), 5),
                            alpha=round(alpha, 5),
                            beta=round(beta, 5),
                        )
                    )
                for (_, intent_name), (i_p95, i_fail, i_tokens) in by_model.get(c.model, ()):
                    c.observed_by_intent[intent_name].CopyFrom(
                        snapshot_pb2.Observed(
                            p95_ms=round(i_p95, 3),
                            failure_rate=round(i_fail, 5),
                            completion_tokens=round(i_tokens, 2),
                        )
                    )
        for policy in out.policies:
            if not policy.adaptation.enabled:
                continue
            name = policy.candidate_of or policy.name  # a canary reports as its policy
            for intent in policy.intents:
                learned = self.tool_priors.get((name, intent.name))
                if learned is not None:
                    intent.tool_use_probability = learned
        self.wins.apply(out)
        out.version = snapshot_version(out)
        return out

    async def run(
        self,
        stop: asyncio.Event,
        poll_s: float = 0.5,
        health: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """Tick until ``stop``; ``tick`` itself enforces the interval between pushes.

        A tick that raises is logged and counted (and told to ``health``); the next
        one runs as usual, so one bad input never stops the loop for good.
        """
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # a learning bug must never stop the control plane
                self.failures += 1
                self.last_failure = repr(exc)
                log.exception("learning tick failed")
                if health is not None:
                    health(exc)
            else:
                if health is not None:
                    health(None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    # -- drift -------------------------------------------------------------------
    def _pushed_baseline(self, model: str) -> float | None:
        for pool in self._base.pools if self._base is not None else ():
            for c in pool.candidates:
                if c.model == model and c.observed_p95_ms:
                    return c.observed_p95_ms
        return None

    def _stable(self, model: str, f: Figures, interval_s: float) -> bool:
        """True once two looks ``interval_s`` apart agree within 10% (cold starts excluded)."""
        now = self.clock()
        seen = self._candidates.get(model)
        if seen is None or now - seen[2] >= interval_s:
            self._candidates[model] = (f.p95_ms, f.cost_per_request, now)
        if seen is None or now - seen[2] < interval_s:
            return False
        return all(
            old is not None and new is not None and not _moved(old, new)
            for old, new in ((seen[0], f.p95_ms), (seen[1], f.cost_per_request))
            if old is not None or new is not None
        )

    def _drift(self, figures: dict[str, Figures], cfg: Settings) -> None:
        for model, f in figures.items():
            if f.p95_ms is None and f.cost_per_request is None:
                continue
            if model not in self.baselines:
                if not self._stable(model, f, cfg.interval_s):
                    continue
                self.baselines[model] = (
                    self._pushed_baseline(model) or f.p95_ms,
                    f.cost_per_request,
                )
                event(
                    log,
                    "drift baseline",
                    model=model,
                    p95_ms=f"{f.p95_ms or 0:.1f}",
                    cost_per_request=f"{f.cost_per_request or 0:.6g}",
                )
            base_lat, base_cost = self.baselines[model]
            self._check(model, "latency", base_lat, f.p95_ms, cfg.drift_latency_ratio)
            self._check(model, "cost", base_cost, f.cost_per_request, cfg.drift_cost_ratio)
        self._quality_drift(cfg)

    def _offline(self) -> dict[tuple[str, str], float]:
        """The offline eval per (model, intent) in the compiled snapshot (first pool wins)."""
        out: dict[tuple[str, str], float] = {}
        for pool in self._base.pools if self._base is not None else ():
            for c in pool.candidates:
                for intent, _ in self.quality.for_model(c.model):
                    out.setdefault(
                        (c.model, intent), c.quality.get(intent, c.quality.get("*", 0.5))
                    )
        return out

    def quality_rows(self) -> list[distribution_pb2.QualityPosterior]:
        """The quality posterior per (model, intent) with feedback, for ``skyroute status``."""
        return self.quality.rows(self._offline(), self.settings.quality_prior_weight)

    def _quality_drift(self, cfg: Settings) -> None:
        """Per model: its worst intent's fall of the posterior below the offline eval.

        Only intents with at least ``qualityPriorWeight`` observations count (fewer
        and the prior still dominates); raised at ``driftQualityDrop``, cleared below
        90% of it, as the latency and cost alerts.
        """
        drop, w = cfg.drift_quality_drop, cfg.quality_prior_weight
        if drop <= 0:
            return
        worst: dict[str, tuple[float, float, float, str]] = {}  # model -> (fall, q0, post, intent)
        for (model, intent), q0 in self._offline().items():
            t = self.quality.tallies[(model, intent)]
            if t.n < w:
                continue
            post = t.posterior(q0, w)
            if model not in worst or q0 - post > worst[model][0]:
                worst[model] = (q0 - post, q0, post, intent)
        for model, (fall, q0, post, intent) in worst.items():
            key = (model, "quality")
            active = self.alerts.get(key)
            if active is None and fall >= drop:
                msg = (
                    f"model {model!r} quality drift on intent {intent!r}: posterior {post:.3f} "
                    f"is {fall:.3f} below the offline eval {q0:.3f} (driftQualityDrop {drop:g})"
                )
                self.alerts[key] = Drift(
                    model, "quality", q0, post, q0 - drop, int(time.time() * 1000), msg
                )
                self._notify(model, "quality", True, msg, post, q0)
            elif active is not None:
                active.current = post
                if fall < drop * _CLEAR_SHARE:
                    del self.alerts[key]
                    msg = (
                        f"model {model!r} quality recovered on intent {intent!r}: posterior "
                        f"{post:.3f} within {_CLEAR_SHARE:g} x {drop:g} of the offline eval"
                    )
                    self._notify(model, "quality", False, msg, post, q0)

    def _check(
        self, model: str, kind: str, baseline: float | None, current: float | None, ratio: float
    ) -> None:
        key = (model, kind)
        active = self.alerts.get(key)
        if ratio <= 0 or baseline is None or current is None or baseline <= 0:
            return
        threshold = baseline * ratio
        unit = "ms p95" if kind == "latency" else "USD per request"
        if active is None and current > threshold:
            msg = (
                f"model {model!r} {kind} drift: {current:.6g} {unit} > {ratio:g} x baseline "
                f"{baseline:.6g}"
            )
            self.alerts[key] = Drift(
                model, kind, baseline, current, threshold, int(time.time() * 1000), msg
            )
            self._notify(model, kind, True, msg, current, baseline)
        elif active is not None:
            active.current = current
            if current <= threshold * _CLEAR_SHARE:
                del self.alerts[key]
                msg = (
                    f"model {model!r} {kind} recovered: {current:.6g} {unit} <= "
                    f"{_CLEAR_SHARE:g} x {ratio:g} x baseline {baseline:.6g}"
                )
                self._notify(model, kind, False, msg, current, baseline)

    def _notify(
        self, model: str, kind: str, raised: bool, msg: str, current: float, baseline: float
    ) -> None:
        level = logging.WARNING if raised else logging.INFO
        event(
            log,
            "drift raised" if raised else "drift cleared",
            level=level,
            model=model,
            kind=kind,
            current=f"{current:.6g}",
            baseline=f"{baseline:.6g}",
        )
        self.history.append(
            {
                "model": model,
                "kind": kind,
                "raised": raised,
                "message": msg,
                "unix_ms": int(time.time() * 1000),
            }
        )
        del self.history[:-100]
        if self.on_drift is not None:
            try:
                self.on_drift(model, kind, raised, msg)
            except Exception:
                log.exception("on_drift hook failed")

    # -- view --------------------------------------------------------------------
    def state(self) -> distribution_pb2.LearnedState:
        """``skyroute status``: what is held now and what the last start restored."""
        r = self.restored

        def num(key: str) -> int:
            value = r.get(key, 0)
            return int(value) if isinstance(value, int | float) else 0

        return distribution_pb2.LearnedState(
            models=len(self.models),
            intents=len(self.by_intent),
            priors=len(self.priors) + len(self.intent_priors),
            tool_use=len(self.tool_priors),
            quality=sum(1 for t in self.quality.tallies.values() if t.n > 0),
            signal_fits=len(self.wins.fits),
            restored_from=str(r.get("path", "")),
            restored_saved_unix_ms=num("saved_unix_ms"),
            restored_series=num("series"),
            restored_priors=num("priors"),
            restored_skipped=num("skipped"),
            restore_error=str(r.get("error", "") or ""),
        )

    def as_dict(self) -> dict[str, object]:
        """``/debug/learning``: settings, fleet figures, priors pushed, drift alerts."""
        cfg = self.settings
        figures = self.figures()
        now = self.clock()
        intents = {}
        for (model, intent), st in sorted(self.by_intent.items()):
            st.decay(now, cfg.half_life_s)
            f = st.figures(cfg.min_samples)
            intents[f"{model}/{intent}"] = _figures_dict(f)
        return {
            "settings": {
                "enabled": cfg.enabled,
                "half_life_s": cfg.half_life_s,
                "min_samples": cfg.min_samples,
                "interval_s": cfg.interval_s,
                "drift_latency_ratio": cfg.drift_latency_ratio,
                "drift_cost_ratio": cfg.drift_cost_ratio,
                "quality_prior_weight": cfg.quality_prior_weight,
                "drift_quality_drop": cfg.drift_quality_drop,
                "method": "exponential-decay merged DDSketches -> scored selection "
                "priors; epsilon-greedy exploration on routers",
            },
            "models": {m: _figures_dict(f) for m, f in sorted(figures.items())},
            "by_intent": intents,
            "priors": {
                m: {"p95_ms": v[0], "failure_rate": v[1], "completion_tokens": v[2]}
                for m, v in sorted(self.priors.items())
            },
            "tool_use": {f"{p}/{i}": v for (p, i), v in sorted(self.tool_priors.items())},
            "quality": self.quality.as_dict(cfg.quality_prior_weight),
            "learned_signal": self.wins.as_dict(),
            "intent_priors": {
                f"{m}/{i}": {"p95_ms": v[0], "failure_rate": v[1], "completion_tokens": v[2]}
                for (m, i), v in sorted(self.intent_priors.items())
            },
            "baselines": {
                m: {"p95_ms": b[0], "cost_per_request": b[1]}
                for m, b in sorted(self.baselines.items())
            },
            "alerts": [
                {
                    "model": d.model,
                    "kind": d.kind,
                    "baseline": d.baseline,
                    "current": d.current,
                    "threshold": d.threshold,
                    "since_unix_ms": d.since_unix_ms,
                    "message": d.message,
                }
                for _, d in sorted(self.alerts.items())
            ],
            "drift_history": list(self.history),
            "pushes": self.pushes,
            "rejected_windows": self.rejected,
            "dropped_series": dict(self.cap.dropped),
            "failures": self.failures,
            "last_failure": self.last_failure,
            "restored": dict(self.restored),
        }


def _figures_dict(f: Figures) -> dict[str, float | None]:
    return {
        "requests": round(f.requests, 3),
        "failure_rate": f.failure_rate,
        "p95_ms": f.p95_ms,
        "completion_tokens": f.completion_tokens,
        "cost_per_request": f.cost_per_request,
    }
