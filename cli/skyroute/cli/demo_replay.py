"""Replay the traffic sample through real routers, open-loop, and record what happened.

Open-loop means each request is sent at its scheduled time whether or not
earlier ones have answered, as real users do; a closed loop (send the next
when the last returns) would slow down exactly when the system struggles and
hide the peak. Concurrency is still bounded, to protect the machine the demo
shares with the routers; the time a request waits for a slot is counted in
its latency, because a user would wait for it too.

Two client behaviours are compared (:class:`Arm`):

* the **naive client** of the single-model deployment retries by itself on
  timeouts, 5xx and 429 (``retries=2``). Every attempt is a separate paid
  call, and when a request that offered tools is re-sent after an attempt that
  may have reached the model (a timeout or a 5xx, not a 429 rejection), the
  first attempt may already have produced a tool call that the application
  then executes twice: those are counted as *duplicate tool actions*;
* the **routed client** sends once (``retries=0``) and leaves fallback to
  the router, which reports its own attempt trail.

Everything is read from what the router returns: the ``x-skyroute-*``
headers (pool, model, cost, cache, policy version, attempts) and the body's
``usage``; nothing is estimated on the client side. Latencies are wall-clock
times multiplied by ``latency_factor`` so that a scenario run with
compressed time reports production-scale figures.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

from skyroute.cli.demo_traffic import TrafficRequest

#: HTTP statuses after which a naive client sends the request again.
CLIENT_RETRY_STATUSES: Final[frozenset[int]] = frozenset({429, 500, 502, 503, 504, 529})
#: Failures after which the first attempt may have reached the model (and run a tool).
AMBIGUOUS_ERRORS: Final[frozenset[str]] = frozenset(
    {"timeout", "server_error", "stream_cut", "first_token_timeout", "bad_response"}
)


@dataclass(frozen=True, slots=True)
class Arm:
    """One side of the comparison: the policy to ask for and how the client behaves."""

    name: str  # "baseline" | "routed"
    model: str  # the `model` field sent: a policy name or "auto"
    retries: int = 0  # client-side re-sends after a retryable failure
    backoff_s: float = 0.1  # naive fixed backoff between client attempts (unscaled)
    timeout_s: float = 30.0  # client-side timeout per attempt (unscaled)


@dataclass(slots=True)
class RouterAttempt:
    """One upstream attempt, as reported by the router's attempt trail."""

    model: str
    error_class: str  # "" on success


@dataclass(slots=True)
class Outcome:
    """What one logical request of one arm ended with."""

    index: int
    intent: str
    has_tools: bool
    ok: bool = False
    status: int = 0  # final HTTP status; 0 when no response came (client timeout, refused)
    error: str = ""  # "" on success, else a short class
    latency_ms: float = 0.0  # first send to final answer, all client attempts, unscaled
    client_attempts: int = 0
    router_attempts: int = 0  # upstream attempts summed over client attempts
    fallbacks: int = 0  # requests answered by other than the router's first attempt
    cost_usd: float = 0.0  # every paid attempt: client retries are paid again
    pool: str = ""
    model: str = ""
    cache: str = ""  # "hit" | "miss" | "" (not reported)
    intent_seen: str = ""  # the router's classification, when it reports one
    policy_version: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duplicate_tool_actions: int = 0
    router: str = ""


def parse_attempts(raw: str | None) -> list[RouterAttempt]:
    """The router's ``x-skyroute-attempts`` header, in any of its plausible shapes.

    The router sends ``model;class;status;ms`` items separated by commas
    (class ``ok`` on success). Also accepted: a bare count (``"2"``), a JSON
    list of objects with ``model`` and ``error_class``, and ``model:class``.
    """
    if not raw:
        return []
    raw = raw.strip()
    if raw.isdigit():
        return [RouterAttempt("", "") for _ in range(int(raw))]
    if raw.startswith("["):
        try:
            items = json.loads(raw)
        except ValueError:
            return []
        out = []
        for it in items:
            if isinstance(it, dict):
                err = str(it.get("error_class", it.get("error", "")) or "")
                out.append(RouterAttempt(str(it.get("model", "")), "" if err == "ok" else err))
        return out
    out = []
    for part in raw.split(","):
        fields = [f.strip() for f in part.replace(";", ":").split(":")]
        err = fields[1] if len(fields) > 1 else ""
        out.append(RouterAttempt(fields[0], "" if err in ("ok", "200") else err))
    return out


def _may_have_reached_model(out: Outcome) -> bool:
    """After this failed attempt, may the model have produced (and a tool run) anyway?

    A 5xx or a client-side timeout leaves it open; a 429 or a refused connection does not.
    """
    return out.status >= 500 or out.error == "client_timeout"


class Replayer:
    """Sends one arm's requests through the routers and collects :class:`Outcome` values."""

    def __init__(
        self,
        router_urls: Sequence[str],
        *,
        concurrency: int = 256,
        latency_factor: float = 1.0,
        on_done: Callable[[str, Outcome], None] | None = None,
        api_key: str = "",
    ) -> None:
        if not router_urls:
            raise ValueError("replay needs at least one router URL")
        self.router_urls = [u.rstrip("/") + "/v1/chat/completions" for u in router_urls]
        self.concurrency = concurrency
        self.latency_factor = latency_factor
        self.on_done = on_done
        # Sent as ``Authorization: Bearer`` on every request (closed routers need one).
        self.auth = {"authorization": f"Bearer {api_key}"} if api_key else {}

    async def run(
        self, arms: Sequence[Arm], requests: Sequence[TrafficRequest], time_factor: float = 1.0
    ) -> dict[str, list[Outcome]]:
        """Replay ``requests`` once per arm, all arms side by side on one schedule.

        ``time_factor`` divides the schedule's offsets (compressed time). Arms
        run concurrently so that both meet the same provider conditions (the
        scenario's burst) at the same moments.
        """
        sem = asyncio.Semaphore(self.concurrency)
        results: dict[str, list[Outcome]] = {a.name: [] for a in arms}
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            loop = asyncio.get_running_loop()
            start = loop.time()
            tasks: list[asyncio.Task[None]] = []
            for req in requests:
                delay = start + req.at_s / time_factor - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                for arm in arms:
                    tasks.append(
                        asyncio.create_task(self._one(session, sem, arm, req, results[arm.name]))
                    )
            await asyncio.gather(*tasks)
        for outs in results.values():
            outs.sort(key=lambda o: o.index)
        return results

    async def _one(
        self,
        session: aiohttp.ClientSession,
        sem: asyncio.Semaphore,
        arm: Arm,
        req: TrafficRequest,
        sink: list[Outcome],
    ) -> None:
        out = Outcome(index=req.index, intent=req.intent, has_tools=req.has_tools)
        body = orjson.dumps(req.body(arm.model))
        headers = {**req.headers(), **self.auth, "content-type": "application/json"}
        url = self.router_urls[req.index % len(self.router_urls)]
        out.router = url
        t0 = time.perf_counter()
        async with sem:
            for attempt in range(arm.retries + 1):
                if attempt:
                    await asyncio.sleep(arm.backoff_s / self.latency_factor)
                    if req.has_tools and _may_have_reached_model(out):
                        out.duplicate_tool_actions += 1
                out.client_attempts += 1
                retry = await self._send(session, url, body, headers, arm, out)
                if not retry:
                    break
        out.latency_ms = (time.perf_counter() - t0) * 1000.0 * self.latency_factor
        sink.append(out)
        if self.on_done is not None:
            self.on_done(arm.name, out)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: bytes,
        headers: dict[str, str],
        arm: Arm,
        out: Outcome,
    ) -> bool:
        """One client attempt; fills ``out``; returns whether a naive client would retry."""
        timeout = aiohttp.ClientTimeout(total=arm.timeout_s / self.latency_factor)
        try:
            async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                payload = await resp.read()
                self._record(resp.status, resp.headers, payload, out)
        except TimeoutError:
            out.status, out.error = 0, "client_timeout"
            return True
        except aiohttp.ClientError as exc:
            out.status, out.error = 0, f"client_{type(exc).__name__}"
            return True
        return (not out.ok) and out.status in CLIENT_RETRY_STATUSES

    @staticmethod
    def _record(status: int, headers: Any, payload: bytes, out: Outcome) -> None:
        out.status = status
        out.ok = status == 200
        out.pool = headers.get("x-skyroute-pool", out.pool)
        out.model = headers.get("x-skyroute-model", out.model)
        out.cache = headers.get("x-skyroute-cache", out.cache)
        out.intent_seen = headers.get("x-skyroute-intent", out.intent_seen)
        out.policy_version = headers.get("x-skyroute-policy-version", out.policy_version)
        cost = headers.get("x-skyroute-cost-usd")
        if cost:
            out.cost_usd += float(cost)
        trail = parse_attempts(headers.get("x-skyroute-attempts"))
        out.router_attempts += len(trail)
        if out.ok and len(trail) > 1:
            out.fallbacks += 1
        if out.has_tools:
            # Inside the router: a later attempt after an ambiguous failure re-sends
            # a request that may already have produced a tool call.
            out.duplicate_tool_actions += sum(
                1 for a in trail[:-1] if a.error_class in AMBIGUOUS_ERRORS
            )
        try:
            doc = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            doc = {}
        if out.ok:
            out.error = ""
            usage = doc.get("usage") if isinstance(doc, dict) else None
            if isinstance(usage, dict):
                out.prompt_tokens += int(usage.get("prompt_tokens", 0) or 0)
                out.completion_tokens += int(usage.get("completion_tokens", 0) or 0)
        else:
            err = doc.get("error") if isinstance(doc, dict) else None
            kind = ""
            if isinstance(err, dict):
                kind = str(err.get("type") or err.get("code") or "")
            out.error = kind or f"http_{status}"
