"""The router's OpenAPI 3.1 document (``GET /openapi.json``), built from its route table.

The transport hands :func:`document` the routes it really serves (method,
path template, error format), so a door added to the route table appears
here by itself; a route without a body schema of its own below gets a
generic one (a JSON object in, JSON out, the door's error shape). The
request schemas take their enums and bounds from the codecs' own constants
(:mod:`.codecs.openai_params`, :mod:`.codecs.anthropic_messages`,
:mod:`.codecs.openai_embeddings`, :mod:`.codecs.fields`), so the document
and the validation cannot drift apart. ``model`` lists the policies of the
loaded snapshot (``auto`` first), as ``/v1/models`` does, once, in
``components.schemas.Model``.

The document is a subset of what the doors accept (a request it describes
is one the router answers without a 5xx; one it does not may still be
taken) and answers are described loosely (the shape's required fields, the
statuses and content types the router uses). Its size is bounded
(:data:`MAX_BYTES`: more than :data:`MAX_MODELS` policies, or names too
long to fit, leave ``model`` a plain string).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from skyroute.router import feedback
from skyroute.router.ingress.codecs import anthropic_messages as messages_codec
from skyroute.router.ingress.codecs import openai_embeddings as embeddings_codec
from skyroute.router.ingress.codecs import openai_params as chat
from skyroute.router.ingress.codecs.fields import MAX_INT32

#: Largest document served; a larger one is a bug (raised when it is built).
MAX_BYTES = 64 * 1024
#: Policies listed in ``model``'s enum; more leave it a plain string.
MAX_MODELS = 256
ErrorShape = Literal["openai", "anthropic"]
Schema = dict[str, Any]
_JSON = "application/json"
_SSE = "text/event-stream"
_TEXT = "text/plain"


@dataclass(slots=True, frozen=True)
class Route:
    """One route the transport serves: method, path template, the door's error format."""

    method: str
    path: str
    errors: ErrorShape = "openai"


def _obj(props: Schema, required: Sequence[str] = (), **extra: Any) -> Schema:
    out: Schema = {"type": "object", "properties": props, **extra}
    if required:
        out["required"] = list(required)
    return out


def _num(lo: float, hi: float) -> Schema:
    return {"type": "number", "minimum": lo, "maximum": hi}


def _int(lo: int, hi: int) -> Schema:
    return {"type": "integer", "minimum": lo, "maximum": hi}


_STRING: Schema = {"type": "string"}
_BOOL: Schema = {"type": "boolean"}
_ANY_OBJECT: Schema = {"type": "object"}
# One server-sent event (in OpenAPI 3.1, an event stream's ``schema`` describes each event).
_EVENT = _obj({"event": _STRING, "data": _STRING, "id": _STRING}, ("data",))
_ERRORS: dict[ErrorShape, Schema] = {
    "openai": _obj(
        {
            "error": _obj(
                {
                    "message": _STRING,
                    "type": _STRING,
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
                ("message", "type"),
            )
        },
        ("error",),
    ),
    "anthropic": _obj(
        {
            "type": {"const": "error"},
            "error": _obj({"type": _STRING, "message": _STRING}, ("type", "message")),
        },
        ("type", "error"),
    ),
}
#: Every error status a door answers with (always JSON in the door's format).
ERROR_STATUSES = (400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 500, 502, 503, 504)


def _tools() -> Schema:
    fn = _obj(
        {"name": _STRING, "description": _STRING, "parameters": _ANY_OBJECT, "strict": _BOOL},
        ("name",),
    )
    return {
        "type": "array",
        "items": _obj({"type": {"const": "function"}, "function": fn}, ("type", "function")),
    }


def _chat_part() -> Schema:
    text = [
        _obj({"type": {"const": kind}, field: _STRING}, ("type", field))
        for kind, field in chat.PART_TEXT.items()
    ]
    image = _obj(
        {"type": {"const": "image_url"}, "image_url": _obj({"url": _STRING}, ("url",))},
        ("type", "image_url"),
    )
    return {"oneOf": [*text, image]}


def _chat_request(model: Schema) -> Schema:
    content = {
        "anyOf": [{"type": "string"}, {"type": "null"}, {"type": "array", "items": _chat_part()}]
    }
    # A tool (or function) message must answer an earlier call by id, which a schema cannot say.
    roles = [r for r in chat.ROLES if r not in ("tool", "function")]
    message = _obj({"role": {"enum": roles}, "content": content}, ("role",))
    fmt_spec = _obj(
        {"name": _STRING, "schema": _ANY_OBJECT, "strict": _BOOL, "description": _STRING},
        ("name",),
    )
    formats: list[Schema] = [
        _obj({"type": {"const": t}}, ("type",)) for t in chat.FORMATS if t != "json_schema"
    ]
    formats.append(
        _obj({"type": {"const": "json_schema"}, "json_schema": fmt_spec}, ("type", "json_schema"))
    )
    props: Schema = {
        "model": model,
        "messages": {"type": "array", "minItems": 1, "items": message},
        "tools": _tools(),
        "tool_choice": {"anyOf": [{"enum": ["none", "auto", "required"]}, _ANY_OBJECT]},
        "stop": {
            "anyOf": [_STRING, {"type": "array", "maxItems": chat.MAX_STOP, "items": _STRING}]
        },
        "stream_options": _obj({"include_usage": _BOOL}),
        "response_format": {"oneOf": formats},
        "reasoning_effort": {"enum": list(chat.EFFORTS)},
        "logit_bias": {"type": "object", "additionalProperties": _num(-100, 100)},
        "user": _STRING,
        "metadata": {"type": "object", "additionalProperties": _STRING},
        **{name: _num(lo, hi) for name, (lo, hi) in chat.RANGES.items()},
        **{name: _int(lo, hi) for name, (lo, hi) in chat.INTS.items()},
        **{name: _BOOL for name in chat.BOOLS},
    }
    for name in chat.UNSUPPORTED:  # refused unless at their default: not offered
        props.pop(name, None)
    return _obj(props, ("messages",))


def _messages_request(model: Schema, count_only: bool = False) -> Schema:
    block = _obj({"type": {"const": "text"}, "text": _STRING}, ("type", "text"))
    content = {"anyOf": [_STRING, {"type": "array", "items": block}]}
    message = _obj(
        {"role": {"enum": ["user", "assistant"]}, "content": content}, ("role", "content")
    )
    tool = _obj(
        {"name": _STRING, "description": _STRING, "input_schema": _ANY_OBJECT},
        ("name", "input_schema"),
    )
    stop = {"type": "string", "minLength": 1, "maxLength": messages_codec.MAX_STOP_SEQUENCE_CHARS}
    props: Schema = {
        "model": model,
        "max_tokens": _int(1, MAX_INT32),
        "messages": {"type": "array", "minItems": 1, "items": message},
        "system": {"anyOf": [_STRING, {"type": "array", "items": block}]},
        "temperature": _num(0.0, 1.0),
        "top_p": _num(0.0, 1.0),
        "top_k": _int(0, MAX_INT32),
        "stop_sequences": {
            "type": "array",
            "maxItems": messages_codec.MAX_STOP_SEQUENCES,
            "items": stop,
        },
        "stream": _BOOL,
        "tools": {"type": "array", "items": tool},
        "metadata": _obj({"user_id": {"type": "string", "maxLength": messages_codec.MAX_USER_ID}}),
    }
    return _obj(props, ("messages",) if count_only else ("max_tokens", "messages"))


def _responses_request(model: Schema) -> Schema:
    part = _obj({"type": {"const": "input_text"}, "text": _STRING}, ("type", "text"))
    item = _obj(
        {
            "role": {"enum": ["user", "system", "developer", "assistant"]},
            "content": {"anyOf": [_STRING, {"type": "array", "items": part}]},
        },
        ("role", "content"),
    )
    props: Schema = {
        "model": model,
        "input": {"anyOf": [_STRING, {"type": "array", "minItems": 1, "items": item}]},
        "instructions": _STRING,
        "max_output_tokens": _int(1, MAX_INT32),
        "temperature": _num(*chat.RANGES["temperature"]),
        "top_p": _num(*chat.RANGES["top_p"]),
        "stream": _BOOL,
        "user": _STRING,
        "reasoning": _obj({"effort": {"enum": list(chat.EFFORTS)}}),
    }
    return _obj(props, ("input",))


def _embeddings_request(model: Schema) -> Schema:
    text = {"type": "string", "minLength": 1, "maxLength": embeddings_codec.MAX_INPUT_CHARS}
    props: Schema = {
        "model": model,
        "input": {
            "anyOf": [
                text,
                {"type": "array", "minItems": 1, "maxItems": embeddings_codec.MAX_INPUTS,
                 "items": text},
            ]
        },
        "dimensions": _int(1, embeddings_codec.MAX_DIMENSIONS),
        "encoding_format": {"enum": list(embeddings_codec.ENCODINGS)},
        "user": _STRING,
    }  # fmt: skip
    return _obj(props, ("input",))


def _feedback_request() -> Schema:
    props: Schema = {
        "request_id": {"type": "string", "minLength": 1, "maxLength": feedback.MAX_ID_CHARS},
        "value": {
            "anyOf": [_BOOL, {"type": "number"},
                      {"type": "string", "maxLength": feedback.MAX_COMMENT_CHARS}]
        },
        "source": {"enum": list(feedback.SOURCES)},
        "range": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}},
    }  # fmt: skip
    return _obj(props, ("request_id", "value"))


def _answer(object_name: str, *required: str) -> Schema:
    return _obj({"object": {"const": object_name}}, ("object", *required))


@dataclass(slots=True, frozen=True)
class _Door:
    """What the document says of one known route: summary, body, answer, streaming."""

    summary: str
    body: Schema | None
    answer: Schema
    streams: bool = False
    answer_type: str = _JSON


def _doors(model: Schema) -> dict[tuple[str, str], _Door]:
    chat_body = _chat_request(model)
    message = _obj({"type": {"const": "message"}, "content": {"type": "array"}}, ("type",))
    return {
        ("POST", "/v1/chat/completions"): _Door(
            "OpenAI Chat Completions", chat_body, _answer("chat.completion", "id", "choices"), True
        ),
        ("POST", "/v1/messages"): _Door(
            "Anthropic Messages", _messages_request(model), message, True
        ),
        ("POST", "/v1/messages/count_tokens"): _Door(
            "Anthropic token count (no model called)",
            _messages_request(model, count_only=True),
            _obj({"input_tokens": {"type": "integer", "minimum": 0}}, ("input_tokens",)),
        ),
        ("POST", "/v1/responses"): _Door(
            "OpenAI Responses", _responses_request(model), _answer("response", "id"), True
        ),
        ("POST", "/v1/embeddings"): _Door(
            "OpenAI Embeddings",
            _embeddings_request(model),
            _answer("list", "data"),
        ),
        ("POST", "/v1/explain"): _Door(
            "The routing decision for a request, calling no model", chat_body, _ANY_OBJECT
        ),
        ("POST", "/v1/feedback"): _Door(
            "Feedback on an earlier answer, by its feedback id",
            _feedback_request(),
            _answer("feedback", "request_id"),
        ),
        ("GET", "/v1/models"): _Door("The policies, as models", None, _answer("list", "data")),
        ("GET", "/healthz"): _Door("Liveness", None, _STRING, answer_type=_TEXT),
        ("GET", "/readyz"): _Door("Readiness", None, _STRING, answer_type=_TEXT),
        ("GET", "/openapi.json"): _Door("This document", None, _ANY_OBJECT),
    }


def _operation(route: Route, door: _Door | None, op_id: str) -> Schema:
    answer: Schema = {"schema": door.answer if door else _ANY_OBJECT}
    ok: Schema = {(door.answer_type if door else _JSON): answer}
    if door is not None and door.streams:
        ok[_SSE] = {"schema": _EVENT}
    error = {"$ref": f"#/components/responses/{route.errors}_error"}
    out: Schema = {
        "operationId": op_id,
        "summary": door.summary if door else f"{route.method} {route.path}",
        "responses": {"200": {"description": "the answer", "content": ok}}
        | {str(s): error for s in ERROR_STATUSES},
    }
    if door is not None and door.answer_type == _TEXT:  # the probes answer 503 in text
        out["responses"]["503"] = {"description": "not ready", "content": {_TEXT: answer}}
    params = [
        {"name": seg[1:-1], "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
        for seg in route.path.split("/")
        if seg.startswith("{") and seg.endswith("}")
    ]  # fmt: skip
    if params:
        out["parameters"] = params
    body = door.body if door else (_ANY_OBJECT if route.method in ("POST", "PUT") else None)
    if body is not None:
        out["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    return out


def document(
    routes: Iterable[Route], policies: Sequence[str] | None, version: str
) -> dict[str, Any]:
    """The OpenAPI document for ``routes``, ``model`` naming ``policies`` (and ``auto``).

    ``None``, or more than :data:`MAX_MODELS` policies, leaves ``model`` any string.
    """
    names = ["auto", *sorted(p for p in policies or () if p != "auto")]
    listed = policies is not None and len(names) <= MAX_MODELS
    model: Schema = {"type": "string", "enum": names} if listed else _STRING
    doors = _doors({"$ref": "#/components/schemas/Model"})
    paths: dict[str, Schema] = {}
    for route in routes:
        op_id = route.method.lower() + route.path.replace("/", "_").replace("{", "").replace(
            "}", ""
        ).replace(".", "_")
        door = doors.get((route.method, route.path))
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, door, op_id)
    return {
        "openapi": "3.1.0",
        "info": {"title": "skyroute router", "version": version or "unloaded"},
        "paths": paths,
        "components": {
            "schemas": {"Model": model},
            "responses": {
                f"{shape}_error": {
                    "description": f"an error, in {shape}'s error format",
                    "content": {_JSON: {"schema": schema}},
                }
                for shape, schema in _ERRORS.items()
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }


def render(routes: Iterable[Route], policies: Sequence[str], version: str) -> bytes:
    """:func:`document` as JSON bytes, never more than :data:`MAX_BYTES`."""
    routes = list(routes)
    out = orjson.dumps(document(routes, policies, version))
    if len(out) > MAX_BYTES:  # long policy names: ``model`` a plain string then
        out = orjson.dumps(document(routes, None, version))
    if len(out) > MAX_BYTES:
        raise ValueError(f"OpenAPI document is {len(out)} bytes, over {MAX_BYTES}")
    return out
