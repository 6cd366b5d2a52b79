"""The HTTP door holds: JSON errors in the door's own format, and slow bodies lock no one out.

A real router (``--max-inflight 20``) with the provider simulator upstream.
Every door (Chat, Messages, Responses, Embeddings, feedback) answers 404,
405, 429 (its slots held by slow requests), an upstream failure (502, no
upstream host in it) and 413 as JSON in its own error format.
A prompt no model of the pool can hold is refused with
``context_length_exceeded`` on every door, and no upstream is called.
aiohttp's own answers (404, 405, 413 for a body over the limit) come back
as JSON in OpenAI's error shape, or Anthropic's on ``/v1/messages``. Twenty
real sockets that send their headers and then dribble their bodies do not
take the in-flight slots: a normal request through the official ``openai``
SDK is served while they are still sending.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import anthropic
import grpc
import openai
import pytest

from skyroute.link import DOOR_MAX_BYTES
from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import BASE_POOL, Proc, Stack, http_get, wait_until

FILES = {
    "pools.yaml": BASE_POOL
    + """\
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: dead}
spec:
  models:
    - name: dead-model
      provider: openai
      endpoint: "http://127.0.0.9:9/secret-upstream/v1"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
    - name: dead-embed
      provider: openai
      endpoint: "http://127.0.0.9:9/secret-upstream/v1"
      embeddingSpace: dead
      pricing: {inputPerMTok: 1.0, outputPerMTok: 0.0}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: slow}
spec:
  models:
    - name: slow-model
      provider: openai
      endpoint: "{SIM}/openai/v1"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: small}
spec:
  models:
    - name: small-a
      provider: openai
      endpoint: "{SIM}/openai/v1"
      contextWindow: 1000
      maxOutputTokens: 500
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
    - name: small-b
      provider: anthropic
      endpoint: "{SIM}/anthropic"
      contextWindow: 2000
      maxOutputTokens: 500
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
""",
    "policy.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: limits}
spec:
  default: true
  rules:
    - {name: dead, match: {tenants: [to-dead]}, pool: dead}
    - {name: small, match: {tenants: [to-small]}, pool: small}
    - {name: slow, match: {tenants: [to-slow]}, pool: slow}
  defaultPool: base
  selection: {mode: ordered}
""",
}
SCENARIO = """\
seed: 3
defaults:
  ttft_ms: {p50: 1, p95: 2}
  tokens_per_s: 50000
  completion_tokens: {p50: 8, p95: 8, min: 8, max: 8}
  error_rate: 0
models:
  slow-model: {ttft_ms: {p50: 6000, p95: 6000}}
"""
SLOTS = 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    procs: list[Proc] = []
    try:
        yield Stack(
            procs,
            tmp_path_factory.mktemp("limits"),
            FILES,
            SCENARIO,
            router_args=["--max-inflight", str(SLOTS)],
        )
    finally:
        for p in reversed(procs):
            p.stop()


def _call(url: str, method: str, data: bytes | None = None) -> tuple[int, str, dict[str, object]]:
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers["Content-Type"], json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], json.loads(e.read())


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [
        ("/v1/no-such-thing", "GET", 404),
        ("/v1/chat/completions", "GET", 405),
        ("/v1/models", "POST", 405),
    ],
)
def test_aiohttp_errors_are_openai_shaped_json(
    stack: Stack, path: str, method: str, status: int
) -> None:
    code, ctype, body = _call(
        stack.routers[0][2] + path, method, b"{}" if method == "POST" else None
    )
    assert code == status and ctype.startswith("application/json")
    err = body["error"]
    assert isinstance(err, dict) and path in err["message"] and err["type"]


def test_messages_door_errors_are_anthropic_shaped(stack: Stack) -> None:
    code, ctype, body = _call(stack.routers[0][2] + "/v1/messages", "GET")
    assert code == 405 and ctype.startswith("application/json")
    assert body["type"] == "error"
    err = body["error"]
    assert isinstance(err, dict) and "/v1/messages" in err["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_connect_error_does_not_echo_the_upstream(stack: Stack, stream: bool) -> None:
    client = openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    )
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
            extra_headers={"x-skyroute-tenant": "to-dead", "Cache-Control": "no-cache"},
        )
    assert exc.value.status_code == 502
    text = exc.value.response.text
    assert "connect" in text and "dead-model" in text  # the class and the model, no more
    for leak in ("127.0.0.9", "secret-upstream", ":9"):
        assert leak not in text, text


def _raw(stack: Stack) -> socket.socket:
    u = urlsplit(stack.routers[0][2])
    return socket.create_connection((u.hostname, u.port), timeout=30)


def test_a_body_over_the_limit_is_a_json_413(stack: Stack) -> None:
    size = DOOR_MAX_BYTES + 1024
    with _raw(stack) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
        )
        chunk = b" " * (1 << 20)
        sent = 0
        try:
            while sent < size:
                s.sendall(chunk[: size - sent])
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the router answered and closed before the rest arrived
        answer = b""
        while part := s.recv(65536):
            answer += part
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"application/json" in head.lower()
    err = json.loads(body)["error"]
    assert str(DOOR_MAX_BYTES) in err["message"]


def test_slow_bodies_do_not_take_the_inflight_slots(stack: Stack) -> None:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}).encode()
    slow: list[socket.socket] = []
    try:
        for _ in range(SLOTS + 5):
            s = _raw(stack)
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:5]  # and the rest never comes while the normal request is served
            )
            slow.append(s)
        client = openai.OpenAI(
            base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
        )
        for _ in range(3):
            out = client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "still served?"}]
            )
            assert out.choices[0].message.content
        # The slow ones finish their bodies, one after another, and are served too.
        for s in slow:
            s.sendall(body[5:])
            assert s.recv(12).startswith(b"HTTP/1.1 200")
    finally:
        for s in slow:
            s.close()


LONG = "please tell me about my order status " * 400  # about 15k characters: ~3.7k tokens


def _sim_requests(stack: Stack) -> int:
    status, raw = http_get(stack.sim + "/_sim/stats", timeout=5)
    assert status == 200
    models = json.loads(raw)["models"]
    return sum(models.get(m, {}).get("requests", 0) for m in ("small-a", "small-b"))


def test_a_prompt_no_window_holds_is_refused_before_any_upstream_call(stack: Stack) -> None:
    before = _sim_requests(stack)
    to_small = {"x-skyroute-tenant": "to-small", "Cache-Control": "no-cache"}
    client = openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    )
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as exc:
            client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": LONG}],
                stream=stream,
                extra_headers=to_small,
            )
        assert exc.value.code == "context_length_exceeded" and exc.value.param == "messages"
        assert "2000" in exc.value.message  # the largest window of the pool
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(model="auto", input=LONG, extra_headers=to_small)
    assert exc.value.code == "context_length_exceeded"
    ant = anthropic.Anthropic(
        base_url=stack.routers[0][2], api_key="unused", max_retries=0, timeout=20
    )
    with pytest.raises(anthropic.BadRequestError) as aexc:
        ant.messages.create(
            model="auto",
            max_tokens=64,
            messages=[{"role": "user", "content": LONG}],
            extra_headers=to_small,
        )
    assert aexc.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "context window" in aexc.value.message
    with grpc.insecure_channel(stack.routers[0][1]) as ch, pytest.raises(grpc.RpcError) as gexc:
        router_pb2_grpc.RouterStub(ch).Complete(
            router_pb2.CompletionRequest(
                policy="auto",
                messages=[router_pb2.Message(role="user", content=LONG)],
                tenant="to-small",
                no_cache=True,
            ),
            timeout=20,
        )
    assert gexc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "context window" in (gexc.value.details() or "")
    # The dry runs still answer: count_tokens counts, Explain explains.
    counted = ant.messages.count_tokens(
        model="auto", messages=[{"role": "user", "content": LONG}], extra_headers=to_small
    )
    assert counted.input_tokens > 2000
    assert _sim_requests(stack) == before  # no upstream was called
    # A prompt that fits the larger window is served by it (the smaller one skipped).
    out = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": LONG[:6000]}],
        extra_headers=to_small,
    )
    assert out.headers["x-skyroute-model"] == "small-b"


# One valid body per door (the feedback door's names no answer: a 404 in its shape).
BODIES: dict[str, dict[str, object]] = {
    "/v1/chat/completions": {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages": {
        "model": "auto",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/responses": {"model": "auto", "input": "hi"},
    "/v1/embeddings": {"model": "auto", "input": "hi"},
    "/v1/feedback": {"request_id": "fb-none", "value": True},
}


def _shape(door: str, status: int, ctype: str, body: dict[str, object]) -> None:
    """JSON in the door's own error format: Anthropic's on /v1/messages, OpenAI's elsewhere."""
    assert ctype.startswith("application/json"), (door, status, ctype)
    err = body["error"]
    assert isinstance(err, dict) and isinstance(err["message"], str) and err["message"], body
    if door == "/v1/messages":
        assert body["type"] == "error" and isinstance(err["type"], str), body
    else:
        assert set(err) >= {"message", "type", "param", "code"}, body


def _post(stack: Stack, door: str, headers: dict[str, str]) -> tuple[int, str, dict[str, object]]:
    req = urllib.request.Request(
        stack.routers[0][2] + door,
        data=json.dumps(BODIES[door]).encode(),
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers["Content-Type"], json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], json.loads(e.read())


@pytest.mark.parametrize("door", list(BODIES))
def test_every_door_answers_404_and_405_in_its_own_shape(stack: Stack, door: str) -> None:
    code, ctype, body = _call(stack.routers[0][2] + door, "GET")
    assert code == 405
    _shape(door, code, ctype, body)
    code, ctype, body = _call(stack.routers[0][2] + door + "/no/such/thing", "POST", b"{}")
    assert code == 404
    _shape(door, code, ctype, body)


@pytest.mark.parametrize("door", ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"])
def test_every_door_answers_an_upstream_failure_in_its_own_shape(stack: Stack, door: str) -> None:
    code, ctype, body = _post(stack, door, {"x-skyroute-tenant": "to-dead"})
    assert code == 502
    _shape(door, code, ctype, body)
    text = json.dumps(body)
    for leak in ("127.0.0.9", "secret-upstream"):
        assert leak not in text, text


def test_every_door_answers_overload_429_in_its_own_shape(stack: Stack) -> None:
    """Twenty slow requests hold the twenty slots: every door then sheds with a JSON 429.

    (Feedback calls no model and is not counted against ``--max-inflight``.)
    """
    results: list[int] = []

    def hold() -> None:
        results.append(_post(stack, "/v1/chat/completions", {"x-skyroute-tenant": "to-slow"})[0])

    holders = [threading.Thread(target=hold) for _ in range(SLOTS)]
    for t in holders:
        t.start()
    try:
        wait_until(
            lambda: _post(stack, "/v1/embeddings", {})[0] == 429, timeout=5, what="slots full"
        )
        for door in BODIES:
            if door == "/v1/feedback":
                continue
            code, ctype, body = _post(stack, door, {})
            assert code == 429, (door, code, body)
            _shape(door, code, ctype, body)
            if door == "/v1/messages":
                assert body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    finally:
        for t in holders:
            t.join(30)
    # The holders were admitted (their slow upstream times them out), none shed.
    assert len(results) == SLOTS and 429 not in results, results


def test_the_messages_door_answers_413_in_anthropic_s_shape(stack: Stack) -> None:
    size = DOOR_MAX_BYTES + 1024
    with _raw(stack) as s:
        s.sendall(
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
        )
        chunk = b" " * (1 << 20)
        sent = 0
        try:
            while sent < size:
                s.sendall(chunk[: size - sent])
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while part := s.recv(65536):
            answer += part
    head, _, raw = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    body = json.loads(raw)
    _shape("/v1/messages", 413, "application/json", body)
    assert body["error"]["type"] == "request_too_large"
