"""Stored responses in the Responses API's shapes: retrieve, delete, input items.

``GET /v1/responses/{id}`` answers the stored response object as creating it
answered it (:func:`retrieved`, the official SDK's
``client.responses.retrieve``); ``DELETE`` answers OpenAI's
``{"id", "object": "response", "deleted": true}`` (:func:`deleted`,
``client.responses.delete``); ``GET /v1/responses/{id}/input_items``
(:func:`input_items`, ``client.responses.input_items.list``) lists the
input the model was given for it, the continued conversation included, as
``message``, ``function_call`` and ``function_call_output`` items, newest
first unless ``order=asc``, ``limit`` 1-100 (20 by default) a page,
``after`` an item id. The entries are :mod:`skyroute.router.ingress.stored`'s;
errors are OpenAI-shaped 400s naming the query parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from skyroute.router.ingress.codecs.fields import integer
from skyroute.router.ingress.codecs.openai_chat import HttpIn, HttpReply, http_context
from skyroute.router.ingress.codecs.openai_responses import Head, call_item, completed
from skyroute.router.ingress.types import Inbound, invalid
from skyroute.router.providers.types import ChatRequest

_ORDERS = ("asc", "desc")
MAX_PAGE = 100


def lookup(wire: HttpIn) -> Inbound:
    """A request for a stored response: only who is asking (the credential) matters."""
    return Inbound(policy="", chat=ChatRequest(messages=[]), **http_context(wire.headers))


def _head(entry: dict[str, Any]) -> Head:
    req = entry["request"]
    chat = ChatRequest(
        messages=[],
        tools=req["tools"],
        max_tokens=req["max_tokens"],
        temperature=req["temperature"],
        tool_choice=req["tool_choice"],
        options=req["options"],
    )
    rid = str(entry["id"]).removeprefix("resp_")
    previous = entry.get("previous")
    return Head(rid, entry["created_at"], chat, True, req["instructions"], previous)


def _json(body: Any) -> HttpReply:
    return HttpReply(200, {}, orjson.dumps(body))


def retrieved(entry: dict[str, Any]) -> HttpReply:
    """The stored response object."""
    return _json(completed(_head(entry), entry["answer"]))


def deleted(rid: str) -> HttpReply:
    return _json({"id": rid, "object": "response", "deleted": True})


def _content(role: str, content: Any) -> list[dict[str, Any]]:
    text = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        parts: list[Any] = [{"type": "text", "text": content}]
    else:
        parts = content or []
    out: list[dict[str, Any]] = []
    for part in parts:
        if part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            out.append({"type": "input_image", "image_url": url, "detail": "auto"})
        else:
            item = {"type": text, "text": part.get("text", "")}
            out.append({**item, "annotations": []} if role == "assistant" else item)
    return out


def items(messages: list[dict[str, Any]], rid: str) -> list[dict[str, Any]]:
    """Chat-shaped messages as Responses input items, each with an id unique in the list."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role", "user")
        iid = f"{rid}_{len(out)}"
        if role == "tool":
            out.append(
                {
                    "type": "function_call_output",
                    "id": "fco_" + iid,
                    "call_id": msg.get("tool_call_id", ""),
                    "output": msg.get("content") or "",
                    "status": "completed",
                }
            )
            continue
        if msg.get("content"):
            out.append(
                {
                    "type": "message",
                    "id": "msg_" + iid,
                    "role": role,
                    "status": "completed",
                    "content": _content(role, msg["content"]),
                }
            )
        out.extend(call_item(call, "completed") for call in msg.get("tool_calls") or ())
    return out


def input_items(entry: dict[str, Any], query: Mapping[str, str]) -> HttpReply:
    """One page of the stored response's input items."""
    order = query.get("order", "desc")
    if order not in _ORDERS:
        raise invalid("order: expected asc or desc", "order")
    raw = query.get("limit", "20")
    limit = integer(int(raw) if raw.isdigit() else raw, "limit", 1, MAX_PAGE, required=True)
    assert limit is not None
    listed = items(entry["messages"], str(entry["id"]).removeprefix("resp_"))
    if order == "desc":
        listed.reverse()
    after = query.get("after")
    if after is not None:
        ids = [i["id"] for i in listed]
        if after not in ids:
            raise invalid(f"after: no input item {after[:64]!r} in this response", "after")
        listed = listed[ids.index(after) + 1 :]
    page = listed[:limit]
    return _json(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(listed) > limit,
        }
    )
