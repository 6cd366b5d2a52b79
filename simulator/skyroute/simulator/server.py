"""The provider simulator's HTTP server: every provider family on one port.

This machine cannot reach real LLM providers, and tests and benchmarks need
providers that fail on cue anyway, so ``skyroute providers`` stands in for
them. It speaks the real wire formats (see the ``*_wire`` modules) at the
paths the official SDKs use, so the router's adapters, the ``openai`` and
``anthropic`` SDKs and raw HTTP clients all talk to it unchanged:

- ``POST /openai/v1/chat/completions``  (SDK ``base_url=http://HOST:PORT/openai/v1``)
- ``POST /anthropic/v1/messages``       (SDK ``base_url=http://HOST:PORT/anthropic``)
- ``POST /gemini/v1beta/models/{model}:generateContent`` and
  ``:streamGenerateContent?alt=sse`` (and under ``/gemini/v1/``, google-genai's default;
  ``genai.Client(api_key=..., http_options={"base_url": http://HOST:PORT/gemini/})``)
- embeddings (:mod:`.embeddings`, deterministic vectors):
  ``POST /openai/v1/embeddings`` and ``POST /gemini/v1beta/models/{model}:embedContent``
  / ``:batchEmbedContents``
- ``POST /azure/openai/deployments/{deployment}/chat/completions?api-version=V``
  (``openai.AzureOpenAI(azure_endpoint=http://HOST:PORT/azure)``), with an
  ``api-key`` or a Microsoft Entra ID bearer token from
- ``POST /entra/{tenant}/oauth2/v2.0/token`` (:mod:`.entra`: azure-identity with
  ``AZURE_AUTHORITY_HOST=https://HOST:TLSPORT/entra``; azure-identity takes only
  https authorities, so ``--tls-listen`` serves every path over TLS as well)
- ``POST /bedrock/model/{modelId}/converse`` and ``/converse-stream`` (Bedrock's
  Converse, streamed as AWS's binary event stream; SigV4 verified:
  ``boto3.client("bedrock-runtime", endpoint_url=http://HOST:PORT/bedrock)``), and
  ``/invoke`` and ``/invoke-with-response-stream`` with Anthropic's body
  (``anthropic.AnthropicBedrock(base_url=http://HOST:PORT/bedrock)``)
- ``POST /vertex/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent``
  (and ``:streamGenerateContent?alt=sse``; ``v1beta1`` too, as ``google-genai`` sends) and
  ``.../publishers/anthropic/models/{model}:rawPredict`` / ``:streamRawPredict``
  (Vertex AI: :mod:`.vertex_wire`, an OAuth bearer token)

and the hooks ``POST /_sim/reset`` (zero the stats, restart the burst clock and
the random sequence), ``GET /_sim/requests`` (``{"requests": [{"path", "body"}]}``,
the last 32 request bodies received, oldest first: what an upstream was sent),
``GET /_sim/stats`` (``{"scenario_time_s": float,
"models": {name: {"requests", "ok", "streams", "tool_calls", "errors":
{kind: count}}}, "entra": {"tokens_issued", "refused", "bearer_ok",
"bearer_rejected"}}``), ``PUT /_sim/scenario`` (YAML or JSON body; replaces the
scenario, restarts the burst clock, keeps the stats; a bad one is a 400 naming
the field and changes nothing) and ``GET /healthz``.

One request is: decode JSON (orjson), let the family parse it, let the
:class:`~skyroute.simulator.engine.Engine` plan it, sleep, answer. Because it
is also the upstream in benchmarks, nothing here parses YAML or builds
templates per request. The handler is cancelled when the client hangs up
(``handler_cancellation``), so a simulated timeout costs nothing once the
client has given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from skyroute.simulator import azure_wire, bedrock_wire, embeddings
from skyroute.simulator.answers import (
    Answer,
    json_answer,
    prompt_hash,
    seeded,
    stop_at,
    text_answer,
    tool_answer,
    variant,
)
from skyroute.simulator.anthropic_wire import AnthropicWire
from skyroute.simulator.azure_wire import AzureOpenAIWire
from skyroute.simulator.bedrock_wire import BedrockInvokeWire, BedrockWire
from skyroute.simulator.engine import Engine, ModelRuntime, Plan
from skyroute.simulator.entra import Entra
from skyroute.simulator.gemini_wire import GeminiWire
from skyroute.simulator.openai_wire import OpenAIWire
from skyroute.simulator.scenario import (
    ERROR_STATUS,
    Scenario,
    ScenarioError,
    load_scenario,
    load_scenario_file,
    parse_scenario,
)
from skyroute.simulator.selfhosted_wire import SelfHostedWire
from skyroute.simulator.vertex_wire import VERSIONS, VertexAnthropicWire, VertexGeminiWire
from skyroute.simulator.wire import (
    ErrorContext,
    Family,
    Rendered,
    SimRequest,
    WireError,
    bearer,
)

DEFAULT_LISTEN = "127.0.0.1:8790"
_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
# Kinds answered with an HTTP error (or a 200 refusal / broken body) after error latency.
_ANSWERED_KINDS = frozenset(k for k, s in ERROR_STATUS.items() if s != 0)
_MIN_SLEEP = 0.0005
RECEIVED = 32  # request bodies kept for GET /_sim/requests


def _answer(
    req: SimRequest, phash: int, plan: Plan, rt: ModelRuntime, prompt_tokens: int
) -> Answer:
    """One choice's answer: a tool call, JSON for a schema, or text cut at a stop sequence."""
    if req.tool_name is not None:
        return tool_answer(
            req.model, req.tool_name, req.tool_schema, prompt_tokens, plan.completion_tokens
        )
    if req.json_schema is not None:
        return stop_at(json_answer(req.model, req.json_schema, prompt_tokens), req.stop)
    answer = text_answer(
        req.model,
        phash,
        plan.completion_tokens,
        rt.profile.stream_chunk_tokens,
        prompt_tokens,
        plan.truncated,
    )
    return stop_at(answer, req.stop)


class Simulator:
    """The aiohttp application plus the engine it drives."""

    def __init__(self, scenario: Scenario) -> None:
        self.engine = Engine(scenario)
        self.openai = OpenAIWire()
        self.anthropic = AnthropicWire()
        self.gemini = GeminiWire()
        self.azure = AzureOpenAIWire()
        self.bedrock = BedrockWire()
        self.bedrock_invoke = BedrockInvokeWire()  # InvokeModel, Anthropic's body
        self.vertex_gemini = VertexGeminiWire()
        self.vertex_anthropic = VertexAnthropicWire()
        self.entra = Entra()  # Microsoft Entra ID's token endpoint, and Azure's bearer check
        self.selfhosted = SelfHostedWire()
        # Every family of the contract (tests/simulator checks none is missing).
        self.wires: dict[str, Family] = {
            w.name: w
            for w in (
                self.azure,
                self.openai,
                self.anthropic,
                self.gemini,
                self.bedrock,
                self.vertex_gemini,
                self.vertex_anthropic,
                self.selfhosted,
            )
        }
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/openai/v1/chat/completions", self._openai)
        app.router.add_post("/openai/v1/embeddings", self._openai_embeddings)
        app.router.add_post("/anthropic/v1/messages", self._anthropic)
        app.router.add_post("/gemini/v1beta/models/{target}", self._gemini)
        app.router.add_post("/gemini/v1/models/{target}", self._gemini)  # google-genai's default
        app.router.add_post("/azure/openai/deployments/{deployment}/chat/completions", self._azure)
        app.router.add_post("/bedrock/model/{model}/{method}", self._bedrock)
        app.router.add_post(
            "/vertex/{version}/projects/{project}/locations/{location}/publishers/{publisher}"
            "/models/{target}",
            self._vertex,
        )
        app.router.add_post("/entra/{tenant}/oauth2/v2.0/token", self._entra_token)
        app.router.add_post("/selfhosted/v1/chat/completions", self._selfhosted)
        app.router.add_post("/_sim/reset", self._reset)
        app.router.add_get("/_sim/stats", self._stats)
        app.router.add_get("/_sim/requests", self._requests)
        app.router.add_put("/_sim/scenario", self._put_scenario)
        app.router.add_get("/healthz", self._healthz)
        self.app = app
        # The last bodies received (path, raw bytes), so tests can see what an upstream got.
        self.received: deque[tuple[str, bytes]] = deque(maxlen=RECEIVED)

    # -- provider endpoints -------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self.openai, None, False)

    async def _selfhosted(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self.selfhosted, None, False)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self.anthropic, None, False)

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        token = bearer(request)
        if token is not None:
            # An Entra ID token authenticates alone: it stands for the scenario's key.
            scenario = self.engine.scenario
            why = self.entra.verify(token, scenario.entra)
            if why is not None:
                return _respond(self.azure.invalid(f"{azure_wire.BAD_TOKEN} ({why})", 401))
            request[azure_wire.KEY] = scenario.api_key or ""
        return await self._serve(request, self.azure, request.match_info["deployment"], False)

    async def _entra_token(self, request: web.Request) -> web.Response:
        form = await request.post()  # bounded by client_max_size
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        tenant = request.match_info["tenant"]
        return _respond(self.entra.token(tenant, fields, self.engine.scenario.entra))

    async def _bedrock(self, request: web.Request) -> web.StreamResponse:
        model, method = request.match_info["model"], request.match_info["method"]
        raw = await request.read()  # kept by aiohttp: _serve reads the same bytes
        want = self.engine.scenario.api_key
        key = bedrock_wire.authenticate(request, raw, want)
        if key is not None:
            request[bedrock_wire.KEY] = key
        if method in ("converse", "converse-stream"):
            return await self._serve(request, self.bedrock, model, method == "converse-stream")
        if method in ("invoke", "invoke-with-response-stream"):
            stream = method == "invoke-with-response-stream"
            return await self._serve(request, self.bedrock_invoke, model, stream)
        return _respond(self.bedrock.invalid(f"Unknown operation {method!r}", 404))

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        if method in ("embedContent", "batchEmbedContents") and model:
            return await self._embed(request, self.gemini, model, method == "batchEmbedContents")
        return await self._generate(request, self.gemini, model, method)

    async def _generate(
        self, request: web.Request, family: Family, model: str, method: str
    ) -> web.StreamResponse:
        """Gemini's generateContent / streamGenerateContent (the API's or Vertex AI's)."""
        if method == "generateContent" and model:
            return await self._serve(request, family, model, False)
        if method == "streamGenerateContent" and model:
            if request.query.get("alt") != "sse":
                return _respond(
                    family.invalid(
                        "this simulator streams only with ?alt=sse (JSON-array streaming is not "
                        "supported)"
                    )
                )
            return await self._serve(request, family, model, True)
        return _respond(family.invalid(f"method {method!r} not found for models/{model}", 404))

    async def _vertex(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        model, _, method = info["target"].rpartition(":")
        if info["version"] in VERSIONS and info["publisher"] == "google":
            return await self._generate(request, self.vertex_gemini, model, method)
        anthropic = info["version"] in VERSIONS and info["publisher"] == "anthropic"
        if anthropic and model and method in ("rawPredict", "streamRawPredict"):
            stream = method == "streamRawPredict"
            return await self._serve(request, self.vertex_anthropic, model, stream)
        where = f"publishers/{info['publisher']}/models/{info['target']}"
        return _respond(self.vertex_gemini.invalid(f"{where} ({info['version']}) not found", 404))

    async def _openai_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._embed(request, self.openai, None, False)

    async def _embed(
        self, request: web.Request, family: Family, path_model: str | None, batch: bool
    ) -> web.StreamResponse:
        """An embeddings request (:mod:`.embeddings`): keyed, planned and failed as a chat one."""
        raw = await request.read()
        self.received.append((request.path, raw))
        want_key = self.engine.scenario.api_key
        if want_key is not None and family.api_key(request) != want_key:
            return _respond(family.invalid("invalid or missing API key", 401))
        try:
            body = orjson.loads(raw)
            ask = (
                embeddings.parse_openai(body)
                if path_model is None
                else embeddings.parse_gemini(path_model, body, batch)
            )
        except orjson.JSONDecodeError as exc:
            return _respond(family.invalid(f"request body is not valid JSON: {exc}"))
        except WireError as exc:
            return _respond(family.invalid(exc.message, exc.status))
        rt = self.engine.runtime(ask.model)
        rt.stats.requests += 1
        prompt_tokens = max(1, sum(len(t) for t in ask.texts) // 4)
        plan = self.engine.plan(rt, prompt_hash("".join(ask.texts)), prompt_tokens, 1)
        await asyncio.sleep(plan.delay_s)
        if plan.kind is not None:
            rt.stats.errors[plan.kind] = rt.stats.errors.get(plan.kind, 0) + 1
            if plan.kind == "timeout":
                return await self._hang(request)
            ctx = ErrorContext(
                ask.model, False, plan.retry_after_s, prompt_tokens, rt.profile.context_window
            )
            kind = plan.kind if plan.kind in _ANSWERED_KINDS else "server_error"
            return _respond(family.error(kind, ctx))
        rt.stats.ok += 1
        body_bytes = (
            embeddings.render_openai(ask, prompt_tokens)
            if path_model is None
            else embeddings.render_gemini(ask, batch)
        )
        return web.Response(body=body_bytes, content_type=_JSON)

    async def _serve(
        self, request: web.Request, family: Family, path_model: str | None, stream_path: bool
    ) -> web.StreamResponse:
        raw = await request.read()
        self.received.append((request.path, raw))
        try:
            family.check_headers(request)
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _respond(family.invalid(f"request body is not valid JSON: {exc}"))
        except WireError as exc:
            return _respond(family.invalid(exc.message, exc.status))
        engine = self.engine
        want_key = engine.scenario.api_key
        if want_key is not None:
            key = family.api_key(request)
            if key != want_key:
                status = 403 if key is None and family is self.gemini else 401
                return _respond(family.invalid("invalid or missing API key", status))
        try:
            req = family.parse(body, path_model, stream_path)
        except WireError as exc:
            return _respond(family.invalid(exc.message, exc.status))
        rt = engine.runtime(req.model)
        stats = rt.stats
        stats.requests += 1
        if req.stream:
            stats.streams += 1
        prompt_tokens = max(1, req.prompt_chars // 4)
        phash = prompt_hash(req.prompt_text)
        plan = engine.plan(rt, phash, prompt_tokens, req.max_tokens)
        kind = plan.kind
        if kind is not None:
            stats.errors[kind] = stats.errors.get(kind, 0) + 1
            if kind in _ANSWERED_KINDS:
                await asyncio.sleep(plan.delay_s)
                ctx = ErrorContext(
                    req.model,
                    req.stream,
                    plan.retry_after_s,
                    prompt_tokens,
                    rt.profile.context_window,
                )
                return _respond(family.error(kind, ctx))
            if kind == "timeout":
                return await self._hang(request)
        if req.tool_name is not None:
            stats.tool_calls += 1
        phash = seeded(phash, req.seed)
        answer = _answer(req, variant(phash, 0), plan, rt, prompt_tokens)
        answer.alternatives = [
            _answer(req, variant(phash, i), plan, rt, prompt_tokens) for i in range(1, req.n)
        ]
        if req.stream:
            return await self._stream(request, family, req, answer, rt, plan)
        await asyncio.sleep(plan.delay_s + answer.completion_tokens * plan.token_s)
        body_bytes = family.render(req, answer)
        if kind == "stream_cut":
            return await self._cut_body(request, body_bytes)
        if kind == "stall":
            return await self._hang(request)
        stats.ok += 1
        return web.Response(body=body_bytes, content_type=_JSON)

    async def _stream(
        self,
        request: web.Request,
        family: Family,
        req: SimRequest,
        answer: Any,
        rt: ModelRuntime,
        plan: Plan,
    ) -> web.StreamResponse:
        frames = family.stream(req, answer, rt.profile.stream_chunk_tokens)
        resp = web.StreamResponse(headers=frames.headers or _SSE_HEADERS)
        await resp.prepare(request)
        if frames.head:
            await resp.write(frames.head)
        loop = asyncio.get_running_loop()
        at = loop.time() + plan.delay_s
        cut_at = -1
        if plan.kind in ("stream_cut", "stall"):
            cut_at = max(1, len(frames.pieces) // 2)
        for i, piece in enumerate(frames.pieces):
            if i == cut_at:
                break
            wait = at - loop.time()
            if wait > _MIN_SLEEP:
                await asyncio.sleep(wait)
            await resp.write(piece)
            at += frames.piece_tokens[i] * plan.token_s
        if cut_at >= 0:
            if plan.kind == "stall":
                await asyncio.sleep(self.engine.scenario.hang_s)
            _abort(request)
            return resp
        wait = at - loop.time()
        if wait > _MIN_SLEEP:
            await asyncio.sleep(wait)
        await resp.write(frames.tail)
        await resp.write_eof()
        rt.stats.ok += 1
        return resp

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        """Never answer: hold the request until the client leaves or hang_s passes."""
        await asyncio.sleep(self.engine.scenario.hang_s)
        _abort(request)
        return web.Response(status=504)

    async def _cut_body(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """Promise the whole body, send half of it, drop the connection."""
        resp = web.StreamResponse(headers={"Content-Type": _JSON})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        _abort(request)
        return resp

    # -- hooks --------------------------------------------------------------

    async def _reset(self, request: web.Request) -> web.Response:
        self.engine.reset()
        return web.Response(body=b'{"ok":true}', content_type=_JSON)

    async def _stats(self, request: web.Request) -> web.Response:
        stats = {**self.engine.stats_json(), "entra": self.entra.stats.as_json()}
        return web.Response(body=orjson.dumps(stats), content_type=_JSON)

    async def _requests(self, request: web.Request) -> web.Response:
        out = []
        for path, raw in self.received:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            out.append({"path": path, "body": body})
        return web.Response(body=orjson.dumps({"requests": out}), content_type=_JSON)

    async def _put_scenario(self, request: web.Request) -> web.Response:
        text = await request.read()
        try:
            scenario = load_scenario(text, "PUT /_sim/scenario")
        except ScenarioError as exc:
            return web.Response(
                status=400, content_type=_JSON, body=orjson.dumps({"error": str(exc)})
            )
        self.engine.load(scenario)
        return web.Response(body=b'{"ok":true}', content_type=_JSON)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=_JSON)


def _respond(r: Rendered) -> web.Response:
    return web.Response(status=r.status, headers=r.headers, body=r.body)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[v6]:PORT``) -> (host, port), with a clear error."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen: expected HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class TlsListen:
    """A second listener serving every path over TLS (``--tls-listen``, ``--tls-cert/-key``)."""

    host: str
    port: int
    cert: str  # PEM certificate (chain) file
    key: str  # its PEM private key


@dataclass(frozen=True, slots=True)
class Started:
    runner: web.AppRunner
    port: int
    tls_port: int | None  # None without a TLS listener


async def start(scenario: Scenario, host: str, port: int, tls: TlsListen | None = None) -> Started:
    """Start serving on (host, port), and over TLS on ``tls`` if given; learn the bound ports."""
    sim = Simulator(scenario)
    runner = web.AppRunner(sim.app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = _last_port(runner, port)
    tls_port: int | None = None
    if tls is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError) as exc:
            await runner.cleanup()
            raise ValueError(f"--tls-cert/--tls-key: cannot load {tls.cert}: {exc}") from None
        tls_site = web.TCPSite(runner, tls.host, tls.port, ssl_context=ctx, backlog=1024)
        await tls_site.start()
        tls_port = _last_port(runner, tls.port)
    return Started(runner, bound, tls_port)


def _last_port(runner: web.AppRunner, asked: int) -> int:
    """The port of the site started last (the kernel's choice when 0 was asked).

    ``runner.addresses`` lists the sites' sockets in the order they were started.
    """
    for address in reversed(runner.addresses):
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked


def main(
    listen: str = DEFAULT_LISTEN,
    scenario: str | None = None,
    tls_listen: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Run the simulator until interrupted (the ``skyroute providers`` command)."""
    try:
        host, port = parse_listen(listen)
        sc = load_scenario_file(scenario) if scenario else parse_scenario({}, "built-in defaults")
        tls: TlsListen | None = None
        if tls_listen is not None:
            if not tls_cert or not tls_key:
                raise ValueError("--tls-listen needs --tls-cert and --tls-key")
            tls = TlsListen(*parse_listen(tls_listen), tls_cert, tls_key)
        elif tls_cert or tls_key:
            raise ValueError("--tls-cert/--tls-key need --tls-listen")
    except (ValueError, ScenarioError) as exc:
        print(f"skyroute providers: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    async def serve() -> None:
        try:
            started = await start(sc, host, port, tls)
        except ValueError as exc:
            print(f"skyroute providers: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        also = f" and https://{tls.host}:{started.tls_port}" if tls is not None else ""
        print(
            f"skyroute providers listening on http://{host}:{started.port}{also} "
            f"(scenario: {scenario or 'built-in defaults'})",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await started.runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve())
        else:
            uvloop.run(serve())
