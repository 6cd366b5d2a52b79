"""The HTTP door: the OpenAI-compatible API and the router's own endpoints.

A thin transport over the inbound pipeline: ``POST /v1/chat/completions``
(the API is described in :mod:`skyroute.router.ingress.codecs.openai_chat`)
and ``POST /v1/explain`` (the same body, or with ``?door=messages`` or
``?door=responses`` the other doors' bodies, answered with the decision as
Explain returns it, calling no model) read the body and hand it to the
pipeline with a sink that answers whole or streams. The Anthropic Messages
door (:mod:`skyroute.router.ingress.codecs.anthropic_messages`) is
``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` (a dry run
answering the token estimate), through the same pipeline; the OpenAI
Responses door (:mod:`skyroute.router.ingress.codecs.openai_responses`) is
``POST /v1/responses``, with the stored responses' ``GET``/``DELETE
/v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``
(:mod:`skyroute.router.ingress.codecs.responses_stored`, the caller's
tenant's own only); the Embeddings door
(:mod:`skyroute.router.ingress.codecs.openai_embeddings`) is
``POST /v1/embeddings`` (Explain: ``?door=embeddings``). Alongside: ``/v1/models``,
``POST /v1/feedback`` (:mod:`skyroute.router.ingress.feedback`),
``/healthz``, ``/readyz`` and ``GET /openapi.json`` (the OpenAPI document of
exactly these routes, :mod:`skyroute.router.ingress.openapi`: public doors
only, so it belongs on the client port). The operator's endpoints, ``/debug/status``
(which lists the upstream endpoints) and ``/metrics``, are not on this port:
they are the admin listener's (:func:`build_admin_app`, ``--admin-listen``,
loopback by default), and the client port answers them with the API's 404.

Every error is JSON in the door's own format, aiohttp's own too (404, 405,
413 for a body over :data:`~skyroute.link.DOOR_MAX_BYTES`): Anthropic's on
``/v1/messages``, OpenAI's elsewhere (:func:`json_errors`). A body must
arrive within ``--body-timeout`` (``RouterState.body_timeout_s``, else a
408), and beyond ``--max-sending`` requests still sending theirs another
must send its body within :data:`SENDING_GRACE_S` (else a 429); the
in-flight slot is taken by the pipeline only once the body is read, so
clients that send headers and then dribble their body cannot lock others
out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from skyroute.admintoken import token_ok
from skyroute.link import DOOR_MAX_BYTES
from skyroute.router.cache.backend import InvalidationFailed
from skyroute.router.cache.invalidate import Selector, SelectorError
from skyroute.router.ingress import feedback as ingress_feedback
from skyroute.router.ingress import openapi, stored
from skyroute.router.ingress.codecs import responses_stored
from skyroute.router.ingress.codecs.anthropic_messages import AnthropicMessages, CountTokens
from skyroute.router.ingress.codecs.base import Codec
from skyroute.router.ingress.codecs.openai_chat import (
    HttpIn,
    HttpReply,
    OpenAIChat,
    error_reply,
)
from skyroute.router.ingress.codecs.openai_embeddings import OpenAIEmbeddings
from skyroute.router.ingress.codecs.openai_responses import OpenAIResponses
from skyroute.router.ingress.pipeline import Pipeline
from skyroute.router.ingress.types import (
    INTERNAL,
    INVALID,
    NOT_FOUND,
    OVERLOADED,
    UNAVAILABLE,
    Rejection,
)
from skyroute.router.state import RouterState
from skyroute.router.transports.http_protocol import door_codec

log = logging.getLogger(__name__)

STATE = web.AppKey("state", RouterState)
PIPELINE = web.AppKey("pipeline", Pipeline)
# The OpenAPI document, built once per snapshot version: (version, bytes).
_OPENAPI = web.AppKey("openapi", dict[str, bytes])
_JSON = "application/json"
_CODEC = OpenAIChat()
_MESSAGES = AnthropicMessages()
_COUNT_TOKENS = CountTokens()
_RESPONSES = OpenAIResponses()
_EMBEDDINGS = OpenAIEmbeddings()
_KINDS = {404: NOT_FOUND, 429: OVERLOADED}
#: Seconds a request beyond ``--max-sending`` has to send its whole body (then a 429).
SENDING_GRACE_S = 1.0
# The doors Explain takes a body of (``POST /v1/explain?door=...``).
_EXPLAIN_DOORS: dict[str, Codec[HttpIn, HttpReply, bytes]] = {
    "chat": _CODEC,
    "messages": _MESSAGES,
    "responses": _RESPONSES,
    "embeddings": _EMBEDDINGS,
}


class _Sink:
    """One request's end: a whole response, or a stream written as it comes."""

    __slots__ = ("request", "response")

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    async def send(self, reply: HttpReply) -> None:
        self.response = web.Response(
            status=reply.status,
            body=reply.body,
            content_type=reply.content_type,
            headers=reply.headers,
        )

    async def open(self, head: Mapping[str, str]) -> None:
        resp = web.StreamResponse(headers=head)
        await resp.prepare(self.request)
        self.response = resp

    async def write(self, frame: bytes) -> None:
        assert self.response is not None
        await self.response.write(frame)

    async def close(self, cut: bool = False) -> None:
        assert self.response is not None
        await self.response.write_eof()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _through_pipeline(request, dry_run=False)


async def explain(request: web.Request) -> web.StreamResponse:
    """A dry run: the decision and why, no model called.

    The body is a Chat Completions one, or with ``?door=messages`` an Anthropic
    Messages one, with ``?door=responses`` a Responses one: whichever door a
    request would come through, Explain shows what it decides.
    """
    codec = _EXPLAIN_DOORS.get(request.query.get("door", "chat"))
    if codec is None:
        reply = error_reply(
            400,
            f"door: expected one of {', '.join(_EXPLAIN_DOORS)}",
            "invalid_request_error",
            "door",
        )
        return web.Response(status=400, body=reply.body, content_type=reply.content_type)
    return await _through_pipeline(request, dry_run=True, codec=codec)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _through_pipeline(request, dry_run=False, codec=_MESSAGES)


async def count_tokens(request: web.Request) -> web.StreamResponse:
    return await _through_pipeline(request, dry_run=True, codec=_COUNT_TOKENS)


async def responses(request: web.Request) -> web.StreamResponse:
    return await _through_pipeline(request, dry_run=False, codec=_RESPONSES)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _through_pipeline(request, dry_run=False, codec=_EMBEDDINGS)


async def retrieve_response(request: web.Request) -> web.Response:
    return await _stored(request, "retrieve")


async def delete_response(request: web.Request) -> web.Response:
    return await _stored(request, "delete")


async def response_input_items(request: web.Request) -> web.Response:
    return await _stored(request, "input_items")


async def _stored(request: web.Request, op: str) -> web.Response:
    """``GET``/``DELETE /v1/responses/{id}`` and its ``input_items``: the caller's own only."""
    state = request.app[STATE]
    rid = request.match_info["id"]
    try:
        ident = await stored.caller(state, responses_stored.lookup(HttpIn(b"", request.headers)))
        if op == "delete":
            await stored.remove(state.responses, ident.tenant, rid)
            reply = responses_stored.deleted(rid)
        else:
            entry = await stored.load(state.responses, ident.tenant, rid, "response_id")
            reply = (
                responses_stored.retrieved(entry)
                if op == "retrieve"
                else responses_stored.input_items(entry, request.query)
            )
    except Rejection as r:
        reply = _RESPONSES.reject(r)
    return web.Response(
        status=reply.status, body=reply.body, content_type=reply.content_type, headers=reply.headers
    )


def _message(request: web.Request, e: web.HTTPException) -> str:
    """What an aiohttp-raised error tells the client."""
    if e.status in (404, 405):
        return f"{e.reason}: {request.method} {request.path}"
    if e.status == 413:
        return f"{e.reason} (a body is at most {DOOR_MAX_BYTES} bytes)"
    if e.status == 408:
        state = request.app[STATE]
        return f"the request body did not arrive within {state.body_timeout_s:g} s"
    if e.status == 429:
        state = request.app[STATE]
        return f"too many requests still sending their bodies ({state.max_sending}); retry shortly"
    return e.reason


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own errors (404, 405, 413...) as JSON in the door's error format.

    So is a bug: an exception a handler did not expect fails that one request
    with a 500 in the door's format (no detail of it reaches the client; the log
    has the traceback) and is counted (``skyroute.router.internal_errors``);
    the router goes on serving.
    """
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        rejection = Rejection(
            e.status,
            _message(request, e),
            _KINDS.get(e.status, INVALID),
            code=e.reason.lower().replace(" ", "_"),
        )
        reply = door_codec(request.path).reject(rejection)
        headers = {k: e.headers[k] for k in ("Allow", "Retry-After") if k in e.headers}
        return web.Response(
            status=reply.status, body=reply.body, content_type=reply.content_type, headers=headers
        )
    except (ConnectionResetError, asyncio.CancelledError):
        raise  # the client went away: nobody to answer
    except Exception:
        state = request.app.get(STATE)
        if state is not None:
            state.internal_errors += 1
        log.exception("internal error on %s %s", request.method, request.path)
        message = "the router failed on this request; it was logged, retry or report it"
        reply = door_codec(request.path).reject(Rejection(500, message, INTERNAL))
        return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)


async def _body(request: web.Request) -> bytes:
    """The whole body, within ``--body-timeout`` (a 408 otherwise).

    Beyond ``--max-sending`` requests still sending theirs, another has only
    :data:`SENDING_GRACE_S` to send all of its body (a 429 otherwise): a
    client that sends its body at once is served, a slow one is not let in
    (the time slow senders hold sockets and memory stays bounded).
    """
    if request.content.is_eof():
        return await request.read()
    state = request.app[STATE]
    if state.sending >= state.max_sending:
        try:
            async with asyncio.timeout(SENDING_GRACE_S):
                return await request.read()
        except TimeoutError:
            raise web.HTTPTooManyRequests(headers={"Retry-After": "1"}) from None
    state.sending += 1
    try:
        async with asyncio.timeout(state.body_timeout_s):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout() from None
    finally:
        state.sending -= 1


async def _through_pipeline(
    request: web.Request,
    dry_run: bool,
    codec: Codec[HttpIn, HttpReply, bytes] = _CODEC,
) -> web.StreamResponse:
    sink = _Sink(request)
    wire = HttpIn(await _body(request), request.headers)
    pipeline = request.app[PIPELINE]
    await (pipeline.explain if dry_run else pipeline.serve)(codec, wire, sink)
    assert sink.response is not None
    return sink.response


async def feedback(request: web.Request) -> web.Response:
    """``POST /v1/feedback`` (router.ingress.feedback): feedback on an earlier answer."""
    try:
        fin = ingress_feedback.from_json(await _body(request), request.headers)
        served = await ingress_feedback.take(request.app[STATE], fin)
    except Rejection as r:
        reply = _CODEC.reject(r)
        return web.Response(status=reply.status, body=reply.body, content_type=_JSON)
    body = {"object": "feedback", "request_id": served.request_id, "model": served.model}
    return web.Response(body=orjson.dumps({**body, "intent": served.intent}), content_type=_JSON)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.draining:
        return web.Response(status=503, text="draining\n")
    if state.table is None:
        return web.Response(status=503, text="no snapshot loaded\n")
    # An open or closed door says so first (200 either way); the version stays the last word.
    door = state.door.readiness()
    return web.Response(text=(f"door {door}\n" if door else "") + f"ready {state.table.version}\n")


async def models(request: web.Request) -> web.Response:
    table = request.app[STATE].table
    names = sorted(table.policies) if table else []
    data = [{"id": n, "object": "model", "owned_by": "skyroute"} for n in ["auto", *names]]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=_JSON)


async def debug_status(request: web.Request) -> web.Response:
    state = request.app[STATE]
    table = state.table
    body = {
        "node": state.node.id,
        "version": table.version if table else "",
        "policies": {p.name: p.version for p in table.policies.values()} if table else {},
        "cache_entries": len(state.engine.cache),
        "inflight": state.inflight,
        "max_inflight": state.max_inflight,
        "shed": state.shed,
        "retry_budget": {
            "active": state.engine.budget.active,
            "retrying": state.engine.budget.retrying,
            "denied": state.engine.budget.denied,
            "fallbacks": state.engine.budget.fallbacks,
            "by_endpoint": state.engine.budget.by_endpoint(),
        },
        "probes": state.engine.health.probes_total,
        "probe_returns": state.engine.health.returned_total,
        "hedges": state.engine.hedges,
        "endpoints": state.engine.health.as_json(),
        **(state.status_hook() if state.status_hook else {}),
    }
    return web.Response(body=orjson.dumps(body, default=str), content_type=_JSON)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of the router's OpenTelemetry instruments."""
    body, content_type = await request.app[STATE].exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


def _routes(app: web.Application) -> list[openapi.Route]:
    """The client port's route table as the OpenAPI document lists it (no HEAD twins)."""
    out: list[openapi.Route] = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method != "HEAD":
            errors: openapi.ErrorShape = (
                "anthropic" if isinstance(door_codec(path), AnthropicMessages) else "openai"
            )
            out.append(openapi.Route(route.method, path, errors))
    return out


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``: this port's doors (:mod:`skyroute.router.ingress.openapi`)."""
    table = request.app[STATE].table
    version = table.version if table else ""
    cached = request.app[_OPENAPI]
    if version not in cached:
        cached.clear()  # one version kept
        cached[version] = openapi.render(
            _routes(request.app), sorted(table.policies) if table else [], version
        )
    return web.Response(body=cached[version], content_type=_JSON)


def _admin_refusal(request: web.Request) -> Rejection | None:
    """Why this admin write is refused (401/403), or None if it may go ahead.

    With ``--admin-token-file`` a write needs ``Authorization: Bearer <token>``
    (the control plane's admin token, compared in constant time); without one,
    only a loopback peer may write (the listener is loopback by default).
    """
    token = request.app[STATE].admin_token
    header = request.headers.get("Authorization", "")
    if token is not None:
        if token_ok(token, header):
            return None
        if not header:
            return Rejection(
                401, "admin writes need Authorization: Bearer <token>", INVALID, code="unauthorized"
            )
        return Rejection(403, "the admin token is not valid", INVALID, code="forbidden")
    peer = request.remote or ""
    if peer.startswith("127.") or peer == "::1":
        return None
    return Rejection(
        403,
        "admin writes from other hosts need the router started with --admin-token-file",
        INVALID,
        code="forbidden",
    )


async def cache_invalidate(request: web.Request) -> web.Response:
    """``POST /cache/invalidate`` ``{"entry"|"intent"|"tenant"|"policy_version": ...}``.

    With ``--workers N`` and the in-process cache the other workers are told too
    (their caches are their own); a worker that does not confirm makes it a 503
    (invalidating again is harmless).
    """
    return await _invalidate(request, siblings=True)


async def _cache_invalidate_here(request: web.Request) -> web.Response:
    """A sibling worker's forwarded invalidation: this worker's cache only."""
    return await _invalidate(request, siblings=False)


def mount_worker_invalidation(state: RouterState) -> Callable[[web.Application], None]:
    """Adds this worker's own ``POST /cache/invalidate`` to its private loopback port."""

    def mount(app: web.Application) -> None:
        app[STATE] = state
        app.router.add_post("/cache/invalidate", _cache_invalidate_here)

    return mount


def _rejected(codec: Codec[HttpIn, HttpReply, bytes], rejection: Rejection) -> web.Response:
    reply = codec.reject(rejection)
    return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)


async def _invalidate(request: web.Request, siblings: bool) -> web.Response:
    codec = door_codec(request.path)
    refusal = _admin_refusal(request)
    if refusal is not None:
        return _rejected(codec, refusal)
    raw = await request.read()
    try:
        selector = Selector.parse(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return _rejected(codec, Rejection(400, "the body must be JSON", INVALID))
    except SelectorError as e:
        return _rejected(codec, Rejection(400, str(e), INVALID))
    state = request.app[STATE]
    cache = state.engine.cache
    try:
        removed = await cache.invalidate(selector)
    except InvalidationFailed as e:
        return _rejected(codec, Rejection(503, f"cache backend unavailable: {e}", UNAVAILABLE))
    workers = 1
    if siblings and state.siblings is not None and cache.backend.kind == "memory":
        theirs, failed = await state.siblings(raw, request.headers.get("Authorization", ""))
        removed += theirs
        if failed:
            message = (
                f"{failed} worker(s) of this router did not confirm the invalidation "
                f"({removed} answers removed elsewhere); send it again"
            )
            return _rejected(codec, Rejection(503, message, UNAVAILABLE))
        workers = state.workers
    body = {
        "invalidated": removed,
        "selector": selector.as_dict(),
        "backend": cache.backend.kind,
        "node": state.node.id,
        "workers": workers,
    }
    return web.Response(body=orjson.dumps(body), content_type=_JSON)


def build_admin_app(state: RouterState) -> web.Application:
    """The admin listener: ``/debug/status``, ``/metrics``, the probes and cache
    invalidation (``POST /cache/invalidate``, an admin write), never the API."""
    app = web.Application(client_max_size=64 * 1024, middlewares=[json_errors])
    app[STATE] = state
    app.router.add_post("/cache/invalidate", cache_invalidate)
    app.router.add_get("/debug/status", debug_status)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def build_app(state: RouterState) -> web.Application:
    app = web.Application(
        client_max_size=DOOR_MAX_BYTES, middlewares=[json_errors]
    )  # as the gRPC door (skyroute.link)
    app[STATE] = state
    app[PIPELINE] = Pipeline(state)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/explain", explain)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/responses/{id}", retrieve_response)
    app.router.add_delete("/v1/responses/{id}", delete_response)
    app.router.add_get("/v1/responses/{id}/input_items", response_input_items)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/feedback", feedback)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi_json)
    app[_OPENAPI] = {}
    return app
