"""Feedback on an earlier answer, door-neutral: ``POST /v1/feedback`` and ``Router.Feedback``.

A caller names the answer by its feedback id (:mod:`skyroute.router.feedback`)
and gives one value: a boolean (good or not), a score in a range it declares
(default [0, 1], normalised here to [0, 1]) or a comment, with a source
(``user``, ``evaluator`` or ``downstream``). The caller is identified by the
same door as a completion (:func:`skyroute.router.ingress.admission.identify`)
and may only give feedback on answers served to its own tenant: an id of
another tenant is refused exactly as an unknown one, so ids reveal nothing
across tenants. Verified feedback goes to the control plane with the outcome
stream, already joined to the model, pool, intent and policy version.

Limits: the HTTP body is at most :data:`MAX_BODY_BYTES`, the id at most
``feedback.MAX_ID_CHARS``, a comment at most ``feedback.MAX_COMMENT_CHARS``;
a score outside its declared range, a range with min >= max, or a
non-finite number is a 400. Refusals are counted by reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from skyroute.router import feedback
from skyroute.router.ingress import admission
from skyroute.router.ingress.types import NOT_FOUND, Inbound, Rejection, invalid
from skyroute.router.providers.types import ChatRequest
from skyroute.router.state import RouterState
from skyroute.v1 import router_pb2

#: Largest feedback body over HTTP.
MAX_BODY_BYTES = 16 * 1024
_TENANT_HEADER = "x-skyroute-tenant"


@dataclass(slots=True, frozen=True)
class FeedbackIn:
    """One piece of feedback as a door decoded it."""

    request_id: str
    value: bool | float | str
    source: str = "user"
    score_range: tuple[float, float] = (0.0, 1.0)
    authorization: str = ""
    api_key: str = ""
    declared: dict[str, str] = field(default_factory=dict)


def _checked(fin: FeedbackIn) -> FeedbackIn:
    if not fin.request_id:
        raise invalid("'request_id' is required: the answer's feedback id", "request_id")
    if fin.source not in feedback.SOURCES:
        raise invalid(f"'source' must be one of {', '.join(feedback.SOURCES)}", "source")
    lo, hi = fin.score_range
    v = fin.value
    if isinstance(v, str):
        if len(v) > feedback.MAX_COMMENT_CHARS:
            raise invalid(f"comment longer than {feedback.MAX_COMMENT_CHARS} characters", "value")
    elif not isinstance(v, bool):
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise invalid("'range' must be [min, max] with finite min < max", "range")
        if not (math.isfinite(v) and lo <= v <= hi):
            raise invalid(f"score {v!r} is outside the declared range [{lo:g}, {hi:g}]", "value")
    return fin


def from_json(body: bytes, headers: Mapping[str, str]) -> FeedbackIn:
    """``POST /v1/feedback``: ``{request_id, value, source?, range?}``."""
    if len(body) > MAX_BODY_BYTES:
        raise invalid(f"feedback body larger than {MAX_BODY_BYTES} bytes", "body")
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise invalid(f"request body is not valid JSON: {e}", "body") from e
    if not isinstance(data, dict):
        raise invalid("request body must be a JSON object", "body")
    rid, value, source = data.get("request_id"), data.get("value"), data.get("source", "user")
    if not isinstance(rid, str):
        raise invalid("'request_id' must be a string: the answer's feedback id", "request_id")
    if not isinstance(value, bool | int | float | str):
        raise invalid("'value' must be a boolean, a score (number) or a comment (string)", "value")
    if not isinstance(source, str):
        raise invalid("'source' must be a string", "source")
    rng = data.get("range", [0.0, 1.0])
    if (
        not isinstance(rng, list)
        or len(rng) != 2
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in rng)
    ):
        raise invalid("'range' must be [min, max] (numbers)", "range")
    return _checked(
        FeedbackIn(
            rid,
            value if isinstance(value, bool | str) else float(value),
            source,
            (float(rng[0]), float(rng[1])),
            headers.get("authorization", ""),
            headers.get("x-api-key", ""),
            _tenant(headers.get(_TENANT_HEADER, "")),
        )
    )


def from_grpc(req: router_pb2.FeedbackRequest, metadata: Mapping[str, str | bytes]) -> FeedbackIn:
    """``Router.Feedback``: the request message and the call's metadata."""
    kind = req.WhichOneof("value")
    if kind is None:
        raise invalid("one of good, score or comment is required", "value")
    value: bool | float | str = getattr(req, kind)
    lo = req.score_min if req.HasField("score_min") else 0.0
    hi = req.score_max if req.HasField("score_max") else 1.0

    def meta(name: str) -> str:
        v = metadata.get(name, "")
        return v if isinstance(v, str) else ""

    return _checked(
        FeedbackIn(
            req.request_id,
            value,
            req.source or "user",
            (lo, hi),
            meta("authorization"),
            meta("x-api-key"),
            _tenant(meta(_TENANT_HEADER)),
        )
    )


def _tenant(header: str) -> dict[str, str]:
    return {"tenant": header} if header else {}


async def take(state: RouterState, fin: FeedbackIn) -> feedback.Served:
    """Identify the caller, verify the id is its tenant's, forward the feedback joined."""
    desk = state.feedback
    inbound = Inbound(
        "",
        ChatRequest([]),
        declared=fin.declared,
        authorization=fin.authorization,
        api_key=fin.api_key,
    )
    ident = await admission.identify(state.door, inbound)
    try:
        served = desk.verify(fin.request_id)
    except feedback.BadFeedbackId as e:
        desk.refuse("unknown_id")
        raise Rejection(
            404, str(e), NOT_FOUND, param="request_id", code="unknown_request_id"
        ) from None
    if served.tenant != ident.tenant:  # refused as unknown: ids reveal nothing across tenants
        desk.refuse("other_tenant")
        raise Rejection(
            404,
            "request_id names no answer served to this tenant (unknown id)",
            NOT_FOUND,
            param="request_id",
            code="unknown_request_id",
        )
    fb = desk.joined(served, fin.source)
    v = fin.value
    if isinstance(v, bool):
        fb.good = v
    elif isinstance(v, str):
        fb.comment = v
    else:
        lo, hi = fin.score_range
        fb.score = (v - lo) / (hi - lo)
    desk.send(fb)
    return served
