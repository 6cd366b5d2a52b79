"""The openai-compatible family against a REAL third-party server: llama-cpp-python's.

Not a stand-in: llama-cpp-python 0.3.36's own OpenAI-compatible server (built
from source once per machine by hack/llama/server.sh; tests/conftest.py waits
for that build before this module's first test), serving a tiny llama model
written at test time with ``gguf`` (tiny_gguf.py), on loopback. Three layers:

- what the server does (so a new version that changes it shows up here): no
  usage in streams whatever ``stream_options`` says, a request it cannot
  validate answered with a 500, FastAPI's 401 body, any model name served by
  its one model, ``n`` ignored, an assistant ``content: null`` refused;
- the router's adapter with the quirks declared: each of those is coped with;
- a real router in front of it, the official ``openai`` SDK as the client:
  unary and streamed answers, usage estimated (never 0) and within
  ``max_tokens``, a tool-call turn sent on, the server's validation 500 as a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from tiny_gguf import END_TOKENS, NON_ASCII_BYTES, write_model

from skyroute.router import providers
from skyroute.router.providers.types import (
    AUTH,
    CLIENT_ERROR,
    CONNECT,
    SERVER_ERROR,
    STREAM_CUT,
    ChatRequest,
    ProviderError,
    StreamEnd,
    StreamEvent,
    Target,
    TextDelta,
)

from harness import REPO, Proc, Stack, free_port, wait_until

KEY = "llama-test-key"
# What llama-cpp-python's server needs of the router, declared as the README says.
QUIRKS = frozenset({"rejects-null-content", "ignores-n", "errors-as-500", "overcounts-completion"})
CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
TOOL_TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "where is my order?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "shipped"},
]


@pytest.fixture(scope="module")
def llama_python() -> str:
    """The python of the server's own venv (built, or waited for, by hack/llama/server.sh)."""
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "llama" / "server.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def _serving(python: str, tmp: pytest.TempPathFactory, *flags: str) -> Iterator[str]:
    """The server on a free loopback port with ``flags``; yields its base URL (``.../v1``)."""
    model = write_model(tmp.mktemp("gguf") / "tiny.gguf")
    port = free_port()
    log = tmp.mktemp("llama") / "server.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [
                python,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--model_alias",
                "tiny-llama",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--api_key",
                KEY,
                "--n_ctx",
                "512",
                "--verbose",
                "False",
                *flags,
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        t0 = time.perf_counter()
        wait_until(lambda: _up(proc, url, log), timeout=60, what="llama-cpp-python server")
        print(f"llama-cpp-python server up in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def llama(llama_python: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Started as the README says: otherwise a second request cuts a running stream short."""
    with _serving(llama_python, tmp_path_factory, "--interrupt_requests", "False") as url:
        yield url


@pytest.fixture(scope="module")
def interrupting(llama_python: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Started with its defaults: a second request cuts the running stream short."""
    with _serving(llama_python, tmp_path_factory) as url:
        yield url


def _up(proc: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError("llama-cpp-python server exited:\n" + log.read_text(errors="replace"))
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url + "/models", headers={"Authorization": f"Bearer {KEY}"}),
            timeout=2,
        ) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _post(url: str, body: dict[str, Any], key: str = KEY) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as s:
            headers = {"Authorization": f"Bearer {key}"}
            async with s.post(url + "/chat/completions", json=body, headers=headers) as r:
                return r.status, await r.read()

    return asyncio.run(go())


def _sse(raw: bytes) -> list[dict[str, Any]]:
    lines = [ln[6:] for ln in raw.decode().splitlines() if ln.startswith("data: ")]
    return [orjson.loads(d) for d in lines if d.strip() != "[DONE]"]


def test_what_the_real_server_does(llama: str) -> None:
    hello = [{"role": "user", "content": "hello"}]
    # Any model name is served by its one model.
    status, raw = _post(llama, {"model": "gpt-4o", "messages": hello, "max_tokens": 4})
    assert status == 200, raw
    answer = orjson.loads(raw)
    assert answer["model"] == "gpt-4o" and answer["choices"][0]["finish_reason"] == "length"
    # It counts more completion tokens than max_tokens allowed.
    assert answer["usage"]["completion_tokens"] > 4
    # No usage in a stream, though asked for.
    body = {"model": "x", "messages": hello, "max_tokens": 4, "stream": True}
    status, raw = _post(llama, {**body, "stream_options": {"include_usage": True}})
    assert status == 200
    chunks = _sse(raw)
    assert chunks and not any(c.get("usage") for c in chunks)
    # n is ignored: one choice.
    status, raw = _post(llama, {"model": "x", "messages": hello, "max_tokens": 2, "n": 2})
    assert status == 200 and len(orjson.loads(raw)["choices"]) == 1
    # A request it cannot validate is a 500, and an assistant's null content is one.
    status, raw = _post(llama, {"model": "x", "messages": TOOL_TURNS, "max_tokens": 2})
    assert status == 500, raw
    assert "validation error" in orjson.loads(raw)["error"]["message"].lower()
    # A wrong key: FastAPI's body, not OpenAI's.
    status, raw = _post(llama, {"model": "x", "messages": hello}, key="wrong")
    assert (status, orjson.loads(raw)) == (401, {"detail": "Invalid API key"})


def _stream(t: Target, req: ChatRequest) -> list[StreamEvent]:
    async def go() -> list[StreamEvent]:
        async with aiohttp.ClientSession() as s:
            return [e async for e in providers.stream(s, t, req, 20, 30)]

    return asyncio.run(go())


def test_the_adapter_copes_with_each_quirk(llama: str) -> None:
    t = Target("openai-compatible", llama, "any-name", KEY, quirks=QUIRKS)
    events = _stream(t, ChatRequest([{"role": "user", "content": "hi"}], max_tokens=5))
    assert any(isinstance(e, TextDelta) for e in events)
    end = events[-1]
    assert isinstance(end, StreamEnd) and not end.reported and end.over_max
    # The null content goes as "" and the tool turn is answered.
    events = _stream(t, ChatRequest(TOOL_TURNS, max_tokens=3))
    assert isinstance(events[-1], StreamEnd)
    # Undeclared, the same turn is the server's 500: a server error without errors-as-500,
    # the request's own fault with it.
    plain = Target("openai-compatible", llama, "any-name", KEY)
    with pytest.raises(ProviderError) as err:
        _stream(plain, ChatRequest(TOOL_TURNS, max_tokens=3))
    assert err.value.error_class == SERVER_ERROR and err.value.status == 500
    only_500 = Target("openai-compatible", llama, "m", KEY, quirks=frozenset({"errors-as-500"}))
    with pytest.raises(ProviderError) as err:
        _stream(only_500, ChatRequest(TOOL_TURNS, max_tokens=3))
    assert err.value.error_class == CLIENT_ERROR
    with pytest.raises(ProviderError) as err:
        _stream(t, ChatRequest([{"role": "user", "content": "hi"}], options={"n": 2}))
    assert err.value.error_class == CLIENT_ERROR
    with pytest.raises(ProviderError) as err:
        _stream(Target("openai-compatible", llama, "m", "wrong-key-42"), ChatRequest(TOOL_TURNS))
    assert err.value.error_class == AUTH and "wrong-key-42" not in err.value.message


POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: local}}
spec:
  models:
    - name: tiny-llama
      provider: openai-compatible
      endpoint: "{LLAMA}"
      upstreamModel: whatever-the-server-has
      apiKey: {{env: LLAMA_TEST_API_KEY}}
      quirks: [rejects-null-content, ignores-n, errors-as-500, overcounts-completion]
      contextWindow: 512
      maxOutputTokens: 64
      timeoutMs: 30000
      pricing: {{inputPerMTok: 0.1, outputPerMTok: 0.2}}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: local}
spec:
  default: true
  defaultPool: local
  selection: {mode: ordered}
  limits: {requestTimeoutMs: 60000, firstTokenTimeoutMs: 30000}
"""


@pytest.fixture(scope="module")
def client(llama: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    procs: list[Proc] = []
    os.environ["LLAMA_TEST_API_KEY"] = KEY  # the router process inherits it
    try:
        stack = Stack(
            procs,
            tmp_path_factory.mktemp("selfhosted"),
            {"pools.yaml": POOLS.format(LLAMA=llama), "policy.yaml": POLICY},
            "seed: 1\n",
        )
        with openai.OpenAI(
            base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=60
        ) as c:
            yield c
    finally:
        os.environ.pop("LLAMA_TEST_API_KEY", None)
        for p in reversed(procs):
            p.stop()


def test_a_router_serves_the_real_server_to_the_openai_sdk(client: openai.OpenAI) -> None:
    t0 = time.perf_counter()
    answer = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "where is my refund?"}],
        max_tokens=6,
        extra_headers={"Cache-Control": "no-cache"},
    )
    assert time.perf_counter() - t0 < 30
    assert answer.model == "tiny-llama" and answer.choices[0].message.content is not None
    usage = answer.usage
    assert usage is not None
    # Estimated (the server streams no usage to the router), never 0, within max_tokens.
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 6
    stream = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "and my order?"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"Cache-Control": "no-cache"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1].usage
    assert text and last is not None and last.prompt_tokens > 0
    assert 0 < last.completion_tokens <= 5
    # A tool-call turn whose assistant content is null reaches the server as "".
    follow = client.chat.completions.create(
        model="auto",
        messages=TOOL_TURNS,  # type: ignore[arg-type]
        max_tokens=3,
        extra_headers={"Cache-Control": "no-cache"},
    )
    assert follow.choices[0].message.content is not None
    # A parameter the server cannot validate (llama.cpp's own min_p, sent on as the client
    # wrote it): the server's 500 is the request's fault, so the client's 400.
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=2,
            extra_body={"min_p": "high"},
            extra_headers={"Cache-Control": "no-cache"},
        )


def _two_at_once(t: Target) -> list[list[StreamEvent] | ProviderError]:
    """A long stream and, while it is answered, a short one: both, as they ended."""

    async def one(s: aiohttp.ClientSession, req: ChatRequest, started: asyncio.Event | None) -> Any:
        events: list[StreamEvent] = []
        try:
            async for e in providers.stream(s, t, req, 20, 60):
                events.append(e)
                if started is not None:
                    started.set()
        except ProviderError as exc:
            return exc
        return events

    async def go() -> list[Any]:
        async with aiohttp.ClientSession() as s:
            started = asyncio.Event()
            # The end tokens banned (llama.cpp's logit_bias), so it runs to its budget, and
            # the non-ASCII bytes, so its tokens stream as they come.
            ask = [{"role": "user", "content": "a long one"}]
            never_end = {"logit_bias": {str(t): -100 for t in END_TOKENS + NON_ASCII_BYTES}}
            long_req = ChatRequest(ask, max_tokens=300, options=never_end)
            long = asyncio.create_task(one(s, long_req, started))
            # The second request comes while the first is being answered (300 tokens take
            # longer than this), after its first token if that is out by then.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.wait(), 0.5)
            short = one(s, ChatRequest([{"role": "user", "content": "short"}], max_tokens=3), None)
            return list(await asyncio.gather(long, short))

    return asyncio.run(go())


def test_a_server_that_cuts_a_stream_for_the_next_request(interrupting: str) -> None:
    # Undeclared: the cut stream still ends with [DONE], but without a finish_reason, and
    # the family takes that for what it is, a cut (never a short answer passed off whole).
    plain = Target("openai-compatible", interrupting, "m", KEY)
    first, second = _two_at_once(plain)
    assert isinstance(first, ProviderError), first
    assert first.error_class in (STREAM_CUT, CONNECT)  # cut after or before its first token
    assert isinstance(second, list) and isinstance(second[-1], StreamEnd)
    # Declared: the router sends it one request at a time, and both answers are whole.
    serial = Target(
        "openai-compatible", interrupting, "m", KEY, quirks=frozenset({"serves-one-at-a-time"})
    )
    first, second = _two_at_once(serial)
    assert isinstance(first, list) and isinstance(second, list)
    end = first[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "length"
    assert sum(1 for e in first if isinstance(e, TextDelta)) >= 250
    assert isinstance(second[-1], StreamEnd)
