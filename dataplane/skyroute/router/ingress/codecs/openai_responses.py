"""OpenAI Responses: ``POST /v1/responses`` and its typed SSE events.

The official ``openai`` SDK's ``client.responses.create`` (streamed or not)
works unchanged: ``model`` names a RoutingPolicy (or ``auto``), the answer
is a ``response`` object whose ``output`` holds a ``message`` item (its
``output_text`` part) and one ``function_call`` item per tool call, with
``usage`` in the Responses vocabulary. Errors use the OpenAI error shape,
as on the Chat Completions door, and the same ``x-skyroute-*`` headers
declare signals and report the decision.

Decoding (to the router's OpenAI-shaped :class:`ChatRequest`): ``input`` as
a string (one user message) or as items: messages (``user``, ``system``,
``developer``, ``assistant``; content a string or ``input_text``,
``input_image`` and ``output_text`` parts), ``function_call`` items (an
assistant's tool calls, consecutive ones in one turn) and
``function_call_output`` items (``tool`` messages); ``reasoning`` items of
earlier turns are left out. ``instructions`` becomes the system message,
function ``tools`` and ``tool_choice`` are translated, ``max_output_tokens``
and ``temperature`` (0-2) go to every family, ``user`` is the canary user;
``top_p`` (0-1) is the Chat ``top_p``, translated per family, and ``stream`` must be a
boolean (:mod:`.fields`).
Refused with a 400 naming the part: built-in tools (``web_search``,
``file_search``...), ``conversation`` (the Conversations API) and malformed
input. ``text.format`` (``json_object``, ``json_schema``) is the Chat
``response_format``, translated per family (:mod:`.responses_text`).
``reasoning.effort`` is the Chat ``reasoning_effort`` (thinking budgets per family).

Every response gets its own id (``resp_`` and 32 hex digits). ``store``
(true unless ``false``) keeps it and ``previous_response_id`` continues a
kept one (:mod:`skyroute.router.ingress.stored`, in the router's shared
store, per tenant); the answer's ``store`` says whether it was kept.
``GET``/``DELETE`` of a stored response and its input items are
:mod:`.responses_stored`'s.

A stream is ``response.created``, ``response.in_progress``, then per output
item ``response.output_item.added``, its content (``content_part.added``,
``output_text.delta``..., ``output_text.done``, ``content_part.done``, or
``function_call_arguments.delta``/``.done``) and
``response.output_item.done``, then ``response.completed`` with the whole
response; every event carries its ``sequence_number``. A stream that fails
after it started ends with ``response.failed``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from skyroute.router.engine import Served
from skyroute.router.ids import new_id
from skyroute.router.ingress.codecs.fields import (
    boolean,
    json_object,
    number,
    obj,
    policy,
    positive_int,
    string,
)
from skyroute.router.ingress.codecs.openai_chat import HttpIn, HttpReply, OpenAIChat, http_context
from skyroute.router.ingress.codecs.openai_params import effort
from skyroute.router.ingress.codecs.responses_text import echo, response_format
from skyroute.router.ingress.facts import public_message
from skyroute.router.ingress.stored import checked_id
from skyroute.router.ingress.types import Answer, Inbound, Kept, Prepared, Rejection, invalid
from skyroute.router.providers.types import ChatRequest

_STREAM_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_ROLES = ("user", "system", "developer", "assistant")


def _parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{where}: expected a string or a list of parts", where)
    parts: list[dict[str, Any]] = []
    for j, raw in enumerate(content):
        w = f"{where}[{j}]"
        part = obj(raw, w)
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            parts.append({"type": "text", "text": string(part.get("text"), f"{w}.text")})
        elif kind == "input_image":
            url = string(part.get("image_url"), f"{w}.image_url")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise invalid(f"{w}.type: content part {kind!r} is not supported", w)
    return parts


def _messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    instructions = data.get("instructions")
    if instructions is not None:
        out.append({"role": "system", "content": string(instructions, "instructions")})
    raw = data.get("input")
    if isinstance(raw, str):
        out.append({"role": "user", "content": raw})
        return out
    if not isinstance(raw, list) or not raw:
        raise invalid("input: expected a string or a non-empty list of items", "input")
    for i, item in enumerate(raw):
        w = f"input[{i}]"
        it = obj(item, w)
        kind = it.get("type", "message")
        if kind == "message":
            role = it.get("role")
            if role not in _ROLES:
                raise invalid(f"{w}.role: expected one of {', '.join(_ROLES)}", f"{w}.role")
            out.append({"role": role, "content": _parts(it.get("content"), f"{w}.content")})
        elif kind == "function_call":
            call = {
                "id": string(it.get("call_id"), f"{w}.call_id"),
                "type": "function",
                "function": {
                    "name": string(it.get("name"), f"{w}.name"),
                    "arguments": string(it.get("arguments"), f"{w}.arguments"),
                },
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = it.get("output")
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            tid = string(it.get("call_id"), f"{w}.call_id")
            out.append({"role": "tool", "tool_call_id": tid, "content": text})
        elif kind != "reasoning":  # an earlier turn's reasoning: no family takes it back
            raise invalid(f"{w}.type: input item {kind!r} is not supported", w)
    return out


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid("tools: expected a list", "tools")
    tools = []
    for i, t in enumerate(raw):
        tool = obj(t, f"tools[{i}]")
        if tool.get("type") != "function":
            raise invalid(
                f"tools[{i}].type: built-in tool {tool.get('type')!r} is not supported by this "
                "router; declare function tools",
                f"tools[{i}]",
            )
        fn: dict[str, Any] = {"name": string(tool.get("name"), f"tools[{i}].name")}
        if tool.get("description"):
            fn["description"] = string(tool["description"], f"tools[{i}].description")
        fn["parameters"] = obj(
            tool.get("parameters") or {"type": "object", "properties": {}},
            f"tools[{i}].parameters",
        )
        tools.append({"type": "function", "function": fn})
    return tools


def _tool_choice(raw: Any) -> Any:
    if raw is None or raw in ("auto", "none", "required"):
        return raw
    choice = obj(raw, "tool_choice")
    if choice.get("type") != "function":
        raise invalid("tool_choice: expected auto, none, required or a function", "tool_choice")
    return {"type": "function", "function": {"name": string(choice.get("name"), "tool_choice")}}


def _checked(data: dict[str, Any]) -> None:
    if data.get("conversation"):
        raise invalid(
            "conversation: the Conversations API is not served by this router; continue a "
            "stored response with previous_response_id, or send the whole input",
            "conversation",
        )


def _kept(data: dict[str, Any], lead: int) -> Kept:
    """The request's id and what it stores or continues (``store``, ``previous_response_id``)."""
    store = boolean(data.get("store"), "store")
    previous = data.get("previous_response_id")
    if previous is not None:
        previous = checked_id(string(previous, "previous_response_id"), "previous_response_id")
    return Kept(
        id="resp_" + new_id(),
        created_at=int(time.time()),
        store=store is not False,  # OpenAI's default: stored
        previous=previous or "",
        lead=lead,
    )


@dataclass(slots=True, frozen=True)
class Head:
    """What every rendering of one response shares: its id, time, parameters, storage."""

    rid: str  # the id without its ``resp_`` prefix (items are ``msg_<rid>``...)
    created: int
    chat: ChatRequest
    store: bool
    instructions: str | None = None
    previous: str | None = None


def head(prepared: Prepared, stored: bool) -> Head:
    """A live response's head (``stored``: it was kept, or, before the end, is to be)."""
    kept = prepared.inbound.kept
    assert kept is not None  # every Responses request has one (decode)
    chat = prepared.inbound.chat
    return Head(
        kept.id.removeprefix("resp_"),
        kept.created_at,
        chat,
        stored,
        chat.messages[0]["content"] if kept.lead else None,
        kept.previous or None,
    )


def _output(rec: Mapping[str, Any], rid: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if rec["content"]:
        out.append(_message_item(rid, rec["content"], "completed"))
    out.extend(call_item(call, "completed") for call in rec["tool_calls"])
    return out


def _message_item(rid: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [_text_part(text)]
    return {
        "type": "message",
        "id": "msg_" + rid,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def call_item(call: Mapping[str, Any], status: str, arguments: str | None = None) -> dict[str, Any]:
    """A Chat tool call as a ``function_call`` item."""
    fn = call.get("function") or {}
    cid = str(call.get("id", ""))
    return {
        "type": "function_call",
        "id": "fc_" + cid,
        "call_id": cid,
        "name": fn.get("name", ""),
        "arguments": (fn.get("arguments") or "{}") if arguments is None else arguments,
        "status": status,
    }


def _usage(rec: Mapping[str, Any]) -> dict[str, Any]:
    p, c = rec["prompt_tokens"], rec["completion_tokens"]
    return {
        "input_tokens": p,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": c,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": p + c,
    }


def _response(h: Head, model: str, status: str, **fields: Any) -> dict[str, Any]:
    chat = h.chat
    return {
        "id": "resp_" + h.rid,
        "object": "response",
        "created_at": h.created,
        "status": status,
        "model": model,
        "output": [],
        "instructions": h.instructions,
        "previous_response_id": h.previous,
        "parallel_tool_calls": True,
        "tool_choice": chat.tool_choice or "auto",
        "tools": [{"type": "function", "strict": False, **t["function"]} for t in chat.tools],
        "temperature": chat.temperature,
        "top_p": chat.options.get("top_p"),
        "max_output_tokens": chat.max_tokens,
        "store": h.store,
        "error": None,
        "incomplete_details": None,
        "metadata": {},
        "text": echo(chat.options.get("response_format")),
        **fields,
    }


def completed(h: Head, rec: Mapping[str, Any]) -> dict[str, Any]:
    """The whole response object of a complete answer (live, replayed or stored)."""
    length = rec["finish_reason"] == "length"
    return _response(
        h,
        rec["model"],
        "incomplete" if length else "completed",
        output=_output(rec, h.rid),
        usage=_usage(rec),
        incomplete_details={"reason": "max_output_tokens"} if length else None,
    )


class OpenAIResponses:
    """The Responses codec (``POST /v1/responses``)."""

    __slots__ = ()

    def decode(self, wire: HttpIn) -> Inbound:
        data = json_object(wire.body)
        _checked(data)
        chat = ChatRequest(
            messages=_messages(data),
            tools=_tools(data.get("tools")),
            max_tokens=positive_int(data.get("max_output_tokens"), "max_output_tokens"),
            temperature=number(data.get("temperature"), "temperature", 0.0, 2.0),
            tool_choice=_tool_choice(data.get("tool_choice")),
        )
        kept = _kept(data, lead=int(data.get("instructions") is not None))
        fmt = response_format(data.get("text"))
        if fmt is not None:
            chat.options["response_format"] = fmt
        top_p = number(data.get("top_p"), "top_p", 0.0, 1.0)
        if top_p is not None:  # the Chat parameter, translated per family like Chat's
            chat.options["top_p"] = top_p
        if data.get("reasoning") is not None:
            level = effort(obj(data["reasoning"], "reasoning").get("effort"), "reasoning.effort")
            if level is not None:  # Chat's reasoning_effort: thinking budgets per family
                chat.options["reasoning_effort"] = level
        hdr = wire.headers
        return Inbound(
            policy=policy(data),
            chat=chat,
            stream=bool(boolean(data.get("stream"), "stream")),
            user=str(data.get("user") or hdr.get("x-skyroute-user", "")),
            session=hdr.get("x-skyroute-session", ""),
            kept=kept,
            **http_context(hdr),
        )

    def answer(self, answer: Answer) -> HttpReply:
        p = answer.prepared
        body = completed(head(p, _stored(p)), answer.rec)
        return HttpReply(200, answer.facts, orjson.dumps(body))

    def reject(self, rejection: Rejection) -> HttpReply:
        return OpenAIChat().reject(rejection)

    def explained(self, prepared: Prepared) -> HttpReply:
        return OpenAIChat().explained(prepared)

    def stream(self, prepared: Prepared) -> ResponseEvents:
        return ResponseEvents(prepared)


def _stored(prepared: Prepared) -> bool:
    return prepared.inbound.kept is not None and prepared.inbound.kept.stored


class ResponseEvents:
    """The Responses stream events for one answer, numbered as they go."""

    __slots__ = ("h", "model", "n_items", "parts", "prepared", "seq")

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        kept = prepared.inbound.kept
        self.h = head(prepared, kept is not None and kept.store)  # to be stored, until done
        self.model = ""
        self.seq = 0
        self.n_items = 0
        self.parts: list[str] | None = None  # the open message item's text so far

    def _event(self, kind: str, **data: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    @property
    def _rid(self) -> str:
        return self.h.rid

    def head(self, facts: Mapping[str, str]) -> Mapping[str, str]:
        return {**facts, **_STREAM_HEADERS}

    def start(self, model: str) -> Sequence[bytes]:
        self.model = model
        r = _response(self.h, model, "in_progress")
        return (
            self._event("response.created", response=r),
            self._event("response.in_progress", response=r),
        )

    def _close_message(self) -> bytes:
        if self.parts is None:
            return b""
        text, self.parts = "".join(self.parts), None
        where = {"item_id": "msg_" + self._rid, "output_index": self.n_items, "content_index": 0}
        out = self._event("response.output_text.done", **where, text=text)
        out += self._event("response.content_part.done", **where, part=_text_part(text))
        item = _message_item(self._rid, text, "completed")
        out += self._event("response.output_item.done", output_index=self.n_items, item=item)
        self.n_items += 1
        return out

    def text(self, text: str) -> bytes:
        out = b""
        where = {"item_id": "msg_" + self._rid, "output_index": self.n_items, "content_index": 0}
        if self.parts is None:
            self.parts = []
            item = _message_item(self._rid, None, "in_progress")
            out += self._event("response.output_item.added", output_index=self.n_items, item=item)
            out += self._event("response.content_part.added", **where, part=_text_part(""))
        self.parts.append(text)
        return out + self._event("response.output_text.delta", **where, delta=text)

    def thinking(self, block: dict[str, Any]) -> None:
        """No frame: this API has no thinking blocks (only Anthropic's own signed ones)."""
        return None

    def tool_call(self, call: dict[str, Any]) -> bytes:
        out = self._close_message()
        i = self.n_items
        added = call_item(call, "in_progress", arguments="")
        done = call_item(call, "completed")
        out += self._event("response.output_item.added", output_index=i, item=added)
        where = {"item_id": added["id"], "output_index": i}
        out += self._event(
            "response.function_call_arguments.delta", **where, delta=done["arguments"]
        )
        out += self._event(
            "response.function_call_arguments.done", **where, arguments=done["arguments"]
        )
        out += self._event("response.output_item.done", output_index=i, item=done)
        self.n_items += 1
        return out

    def done(self, answer: Answer) -> Sequence[bytes]:
        closing = self._close_message()
        r = completed(head(self.prepared, _stored(self.prepared)), answer.rec)
        kind = "response.completed" if r["status"] == "completed" else "response.incomplete"
        return [closing + self._event(kind, response=r)]

    def cut(self, served: Served) -> bytes:
        err = served.error
        message = f"stream failed after it started: {public_message(served)}"
        error = {"code": err.error_class if err else "stream_cut", "message": message}
        r = _response(replace(self.h, store=False), self.model, "failed", error=error)
        return self._event("response.failed", response=r)
