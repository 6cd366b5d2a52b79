"""Slow senders are bounded: a body timeout (408) and a cap on requests still sending (429).

A real router started with ``--body-timeout 3 --max-sending 3
--header-timeout 3`` and the
provider simulator upstream, driven over raw loopback sockets (headers, then
part of a body that never completes) and the official ``openai`` SDK. A body
that does not arrive in time is a JSON 408 in the door's own error format;
beyond three requests still sending, a fourth slow one is a JSON 429 after
a second's grace, while a request that sends its body at once (the SDK's)
is served all along. A connection that never sends a whole request head is
closed after the header timeout, and malformed HTTP (a bad request line, an
over-long header, a bad ``Content-Length``) is a JSON 400 in the door's
format that does not quote the input back.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import openai
import pytest

from harness import BASE_POOL, Stack, running_stack

FILES = {
    "pools.yaml": BASE_POOL,
    "policy.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: bodies}
spec:
  default: true
  defaultPool: base
  selection: {mode: ordered}
""",
}
SCENARIO = """\
seed: 2
defaults:
  ttft_ms: {p50: 1, p95: 2}
  tokens_per_s: 50000
  completion_tokens: {p50: 4, p95: 4, min: 4, max: 4}
  error_rate: 0
"""
TIMEOUT_S = 3
SENDING = 3
BODY = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    args = [
        *("--body-timeout", str(TIMEOUT_S), "--max-sending", str(SENDING)),
        *("--header-timeout", str(TIMEOUT_S)),
    ]
    with running_stack(
        tmp_path_factory.mktemp("bodies"), FILES, SCENARIO, router_args=args
    ) as stack:
        yield stack


def _slow(stack: Stack, path: str) -> socket.socket:
    """A request whose headers are sent and whose body stops after five bytes."""
    u = urlsplit(stack.routers[0][2])
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY[:5]
    )
    return s


def _answer(s: socket.socket) -> tuple[bytes, dict[str, object]]:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        part = s.recv(65536)
        if not part:
            break
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), head
    return head, json.loads(body)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_body_that_never_arrives_is_a_json_408(stack: Stack, path: str) -> None:
    started = time.monotonic()
    with _slow(stack, path) as s:
        head, body = _answer(s)
    waited = time.monotonic() - started
    assert head.startswith(b"HTTP/1.1 408"), head
    assert TIMEOUT_S - 0.5 <= waited < TIMEOUT_S + 10, waited
    err = body["error"]
    assert isinstance(err, dict) and f"within {TIMEOUT_S} s" in err["message"]
    if path == "/v1/messages":
        assert body["type"] == "error"
    else:
        assert err["type"] == "invalid_request_error" and "param" in err


def test_beyond_the_cap_of_senders_a_request_is_a_json_429_and_whole_bodies_still_pass(
    stack: Stack,
) -> None:
    held = [_slow(stack, "/v1/chat/completions") for _ in range(SENDING)]
    try:
        time.sleep(0.3)  # the router has taken all three as still sending
        started = time.monotonic()
        with _slow(stack, "/v1/chat/completions") as extra:
            head, body = _answer(extra)
        assert time.monotonic() - started < TIMEOUT_S  # the grace, not the body timeout
        assert head.startswith(b"HTTP/1.1 429"), head
        assert b"retry-after: 1" in head.lower()
        err = body["error"]
        assert isinstance(err, dict) and "still sending" in err["message"]
        assert err["type"] == "rate_limit_error"
        client = openai.OpenAI(
            base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
        )
        out = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "whole body"}]
        )
        assert out.choices[0].message.content
        # The held ones finish their bodies in time and are served.
        for s in held:
            s.sendall(BODY[5:])
            assert s.recv(12).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()


def _connect(stack: Stack) -> socket.socket:
    u = urlsplit(stack.routers[0][2])
    return socket.create_connection((u.hostname, u.port), timeout=30)


def test_a_connection_that_never_finishes_its_head_is_closed(stack: Stack) -> None:
    started = time.monotonic()
    with _connect(stack) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert s.recv(1024) == b""  # closed by the router, nothing answered
    assert TIMEOUT_S - 0.5 <= time.monotonic() - started < TIMEOUT_S + 10


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE-SECRET\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: SECRET"
        + b"a" * 9000
        + b"\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: SECRET\r\n\r\n{}",
    ],
    ids=["request-line", "long-header", "content-length"],
)
def test_malformed_http_is_a_json_400_that_echoes_nothing(stack: Stack, raw: bytes) -> None:
    """OpenAI's error shape: no door is known before a request head parses."""
    with _connect(stack) as s:
        s.sendall(raw)
        head, body = _answer(s)
    assert head.split(b"\r\n", 1)[0].endswith(b"400 Bad Request"), head
    assert b"SECRET" not in head and "SECRET" not in json.dumps(body)
    err = body["error"]
    assert isinstance(err, dict) and err["message"].startswith("malformed HTTP request")
    assert err["type"] == "invalid_request_error" and "param" in err
