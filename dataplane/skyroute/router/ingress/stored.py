"""Stored responses as the pipeline keeps and continues them (the Responses API's ``store``).

A request that asks for it (:class:`~skyroute.router.ingress.types.Kept`,
``store`` true, OpenAI's default) has its answer kept once it is complete
(:func:`keep`), under the caller's authenticated tenant (the door's
identity, never a header of its own) in the router's
:class:`~skyroute.router.response_store.ResponseStore`. An entry is
door-neutral JSON (version 1)::

    {"v": 1, "id": "resp_...", "created_at": 1700000000, "policy": "...",
     "depth": 0,                          # turns before this one
     "previous": "resp_..." or null,      # the response it continued
     "request": {"instructions", "tools", "tool_choice", "temperature",
                 "max_tokens", "options"},  # the Chat-shaped parameters
     "messages": [...],                   # the whole conversation's input so far
     "answer": {"model", "content", "tool_calls", "finish_reason",
                "prompt_tokens", "completion_tokens"}}

``previous_response_id`` (:func:`resume`, run after identity and before the
signals, so a continued conversation is routed on all of it) puts the stored
conversation (its input, then its answer as the assistant's turn) between
this request's instructions (which, as in OpenAI's API, are not carried
over) and its input. Another tenant's id, an expired one and an unknown one
are all the same 404 naming ``previous_response_id``; an id is
``resp_`` and at most 100 letters, digits, ``_`` or ``-`` (a 400 otherwise);
a chain is at most :data:`MAX_DEPTH` turns. The store being down is a 503
for reads, and a ``store: false`` answer for writes.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from skyroute.router.ingress import admission
from skyroute.router.ingress.guards.identity import Identity
from skyroute.router.ingress.types import (
    INVALID,
    UNAVAILABLE,
    Inbound,
    Prepared,
    Rejection,
    invalid,
)
from skyroute.router.response_store import ResponseStore, StoreUnavailable
from skyroute.router.state import RouterState

VERSION = 1
_ID = re.compile(r"resp_[A-Za-z0-9_-]{1,100}")
#: Turns in one chain of previous_response_id (the first response is turn 0).
MAX_DEPTH = 256
# The answer's fields an entry keeps (wire.record's, without the headers and cost).
_ANSWER = ("model", "content", "tool_calls", "finish_reason", "prompt_tokens", "completion_tokens")
# The Chat options a Responses request sets, kept to show the response as it was.
_OPTIONS = ("response_format", "top_p", "reasoning_effort")


def checked_id(rid: str, param: str) -> str:
    """``rid`` if it looks like a response id, else a 400 naming ``param``."""
    if not _ID.fullmatch(rid):
        shown = rid if len(rid) <= 40 else rid[:40] + "..."
        raise invalid(
            f"{param}: expected a response id (resp_ and at most 100 letters, digits, _ or -), "
            f"got {shown!r}",
            param,
        )
    return rid


def not_found(rid: str, param: str) -> Rejection:
    if param == "previous_response_id":
        return Rejection(
            404,
            f"Previous response with id {rid!r} not found.",
            INVALID,
            param=param,
            code="previous_response_not_found",
        )
    return Rejection(
        404, f"Response with id {rid!r} not found.", INVALID, param=param, code="response_not_found"
    )


def _unavailable() -> Rejection:
    return Rejection(
        503,
        "the stored-response store is unavailable; retry shortly",
        UNAVAILABLE,
        code="store_unavailable",
        facts={"Retry-After": "1"},
    )


async def caller(state: RouterState, inbound: Inbound) -> Identity:
    """Who asks for a stored response (the door's identity: 401 without a valid key)."""
    if state.table is None:
        raise Rejection(503, "router has no policy snapshot yet", UNAVAILABLE, code="not_ready")
    return await admission.identify(state.door, inbound)


async def load(store: ResponseStore, tenant: str, rid: str, param: str) -> dict[str, Any]:
    """The tenant's stored entry ``rid`` (404 when it has none by that id)."""
    checked_id(rid, param)
    try:
        raw = await store.get(tenant, rid)
    except StoreUnavailable:
        raise _unavailable() from None
    if raw is None:
        raise not_found(rid, param)
    entry: dict[str, Any] = orjson.loads(raw)
    return entry


async def remove(store: ResponseStore, tenant: str, rid: str) -> None:
    """Delete the tenant's stored entry ``rid`` (404 when it has none by that id)."""
    checked_id(rid, "response_id")
    try:
        gone = await store.delete(tenant, rid)
    except StoreUnavailable:
        raise _unavailable() from None
    if not gone:
        raise not_found(rid, "response_id")


def assistant_turn(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored answer as the Chat-shaped assistant message the next turn carries."""
    if not answer["content"] and not answer["tool_calls"]:
        return []
    msg: dict[str, Any] = {"role": "assistant", "content": answer["content"] or None}
    if answer["tool_calls"]:
        msg["tool_calls"] = answer["tool_calls"]
    return [msg]


def conversation(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything a stored response's turn leaves to the next: its input, then its answer."""
    return [*entry["messages"], *assistant_turn(entry["answer"])]


async def resume(store: ResponseStore, ident: Identity, inbound: Inbound) -> None:
    """Put the stored conversation ``previous_response_id`` names before this input."""
    kept = inbound.kept
    assert kept is not None and kept.previous
    entry = await load(store, ident.tenant, kept.previous, "previous_response_id")
    depth = int(entry.get("depth", 0)) + 1
    if depth > MAX_DEPTH:
        raise Rejection(
            400,
            f"previous_response_id: the conversation already has {MAX_DEPTH} turns, the most "
            "one chain may have; start a new one with the whole input",
            INVALID,
            param="previous_response_id",
            code="conversation_too_long",
        )
    chat = inbound.chat
    chat.messages = [
        *chat.messages[: kept.lead],
        *conversation(entry),
        *chat.messages[kept.lead :],
    ]
    kept.depth = depth


async def keep(store: ResponseStore, p: Prepared, rec: Any) -> None:
    """Store a complete answer if its request asked for it (``kept.stored`` says if it was)."""
    kept = p.inbound.kept
    if kept is None or not kept.store:
        return
    chat = p.inbound.chat
    entry = {
        "v": VERSION,
        "id": kept.id,
        "created_at": kept.created_at,
        "policy": p.decision.policy.name,
        "depth": kept.depth,
        "previous": kept.previous or None,
        "request": {
            "instructions": chat.messages[0]["content"] if kept.lead else None,
            "tools": chat.tools,
            "tool_choice": chat.tool_choice,
            "temperature": chat.temperature,
            "max_tokens": chat.max_tokens,
            "options": {k: chat.options[k] for k in _OPTIONS if k in chat.options},
        },
        "messages": chat.messages[kept.lead :],
        "answer": {k: rec[k] for k in _ANSWER},
    }
    kept.stored = await store.put(p.identity.tenant, kept.id, orjson.dumps(entry))
