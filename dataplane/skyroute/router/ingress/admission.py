"""The identity-and-limits stage as the pipeline runs it, for every door.

:func:`identify` turns the presented credential into an
:class:`~skyroute.router.ingress.guards.identity.Identity` and checks the
tenant may use the policy; :func:`admit` reserves every limit once the
candidate is known (clamping ``max_tokens`` where a budget is nearly
spent); :func:`settle` charges what the request really used. A guard's
refusal becomes a :class:`~skyroute.router.ingress.types.Rejection` the
codec answers in its API's own format. The rules themselves live in
:mod:`skyroute.router.ingress.guards.door`.
"""

from __future__ import annotations

from skyroute.router import tokens
from skyroute.router.engine import Served
from skyroute.router.ingress.guards.door import Door
from skyroute.router.ingress.guards.errors import GuardError
from skyroute.router.ingress.guards.identity import Identity
from skyroute.router.ingress.guards.tenants import Estimate
from skyroute.router.ingress.types import Inbound, Prepared, refused


async def identify(door: Door, inbound: Inbound) -> Identity:
    """Who is calling (401 otherwise); the tenant and tier headers count only as the door says."""
    declared = inbound.declared
    try:
        return await door.identify(
            inbound.authorization or None,
            inbound.api_key or None,
            declared.get("tenant", ""),
            declared.get("user_tier", ""),
        )
    except GuardError as e:
        raise refused(e) from None


def authorize(door: Door, ident: Identity, policy: str) -> None:
    """403 unless the caller's tenant may use ``policy``."""
    try:
        door.authorize(ident, policy)
    except GuardError as e:
        raise refused(e) from None


async def admit(door: Door, p: Prepared) -> None:
    """Reserve the request's limits for its first candidate (429 / 503 when refused)."""
    ident = p.identity
    if ident.anonymous:
        return
    d = p.decision
    chat = p.inbound.chat
    cand = d.chain[0] if d.chain else None
    sel = d.selection or d.policy.selection
    est = Estimate(
        p.signals.prompt_tokens,
        chat.max_tokens or sel.expected_completion_tokens,
        input_price=cand.input_price * 1e6 if cand else 0.0,
        output_price=cand.output_price * 1e6 if cand else 0.0,
    )
    hold_ms = int(d.policy.request_timeout_s * 1000)
    try:
        adm = await door.admit(
            ident, p.ctx.request_id, d.policy.name, cand.model if cand else "", est, hold_ms
        )
    except GuardError as e:
        raise refused(e) from None
    p.admission = adm
    if adm.max_tokens is not None:  # a budget nearly spent pays for this much completion
        chat.max_tokens = adm.max_tokens


async def settle(door: Door, p: Prepared, served: Served | None, received: str = "") -> None:
    """Charge the reported usage; a stream that died, the tokens received so far."""
    adm = p.admission
    if adm is None or adm.reservation is None:
        return
    result = served.result if served is not None else None
    if result is not None:
        prompt, completion = result.prompt_tokens, result.completion_tokens
        cost = served.cost_usd if served is not None else 0.0
    else:
        prompt = p.signals.prompt_tokens if received else 0
        completion = tokens.received_tokens(received)
        cand = served.candidate if served is not None else None
        cost = cand.cost(prompt, completion) if cand is not None else 0.0
    door.settle_soon(adm, prompt, completion, cost)
