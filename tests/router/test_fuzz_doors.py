"""Every door holds under malformed, mistyped and oversized input (property-based).

One real router over loopback with the provider simulator upstream.
``hypothesis`` builds bodies three ways: bytes that are not JSON, JSON that
is not an object, and a valid request with fields replaced by values of
the wrong type, out of range, nested, empty or oversized, or dropped. Each
body is POSTed to every door: ``/v1/chat/completions``, ``/v1/messages``,
``/v1/responses``, ``/v1/embeddings`` and ``/v1/feedback`` (its valid body
names a real answer's feedback id); the stored responses' ``GET``/``DELETE``
and ``input_items`` get arbitrary ids and queries; the gRPC ``Router``
service gets messages built from arbitrary field values through its
generated stubs. Every answer must come
within the client timeout, never be a 5xx (gRPC: never ``INTERNAL``,
``UNKNOWN``, ``UNAVAILABLE`` or a deadline), be either a success or the
door's own error shape, and the router must serve a valid request after
each door's run. The runs are derandomized with no example database, so CI
sees the same examples every time.
"""

from __future__ import annotations

import copy
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import BASE_POOL, Stack, running_stack

# The base pool plus an embedding model, which only the Embeddings door reaches.
EMBED_MODEL = """\
    - name: base-embed
      provider: openai
      endpoint: "{SIM}/openai/v1"
      embeddingSpace: base
      pricing: {inputPerMTok: 0.02, outputPerMTok: 0.0}
"""
FILES = {
    "pools.yaml": BASE_POOL
    + EMBED_MODEL
    + """\
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: broken}
spec:
  models:
    - name: err-model
      provider: openai
      endpoint: "{SIM}/openai/v1"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
""",
    "policy.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: fuzz}
spec:
  default: true
  defaultPool: base
  selection: {mode: ordered}
---
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: broken}
spec:
  defaultPool: broken
  selection: {mode: ordered}
""",
}
SCENARIO = """\
seed: 7
defaults:
  ttft_ms: {p50: 1, p95: 1}
  tokens_per_s: 100000
  completion_tokens: {p50: 4, p95: 4, min: 4, max: 4}
  error_rate: 0
models:
  err-model: {error_rate: 1, errors: {server_error: 1}}
"""
TIMEOUT = 15.0  # a request the router holds longer than this counts as hung
FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-cache"}
# A valid request per door, and the fields the fuzzer replaces (known names and a stranger).
VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "fuzz",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 16,
    },
    "/v1/messages": {
        "model": "fuzz",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    },
    "/v1/responses": {
        "model": "fuzz",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "max_output_tokens": 16,
    },
    "/v1/embeddings": {"model": "fuzz", "input": ["hi", "there"], "dimensions": 8},
    # The id is a real answer's feedback id, set by the ``http`` fixture.
    "/v1/feedback": {"request_id": "", "value": 0.5, "source": "user", "range": [0, 1]},
}
FIELDS: dict[str, list[str]] = {
    "/v1/chat/completions": [
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
        "n", "stream", "stream_options", "stop", "tools", "tool_choice", "response_format",
        "seed", "logprobs", "top_logprobs", "logit_bias", "presence_penalty",
        "frequency_penalty", "reasoning_effort", "parallel_tool_calls", "user", "metadata",
    ],
    "/v1/messages": [
        "model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k",
        "stop_sequences", "stream", "tools", "tool_choice", "metadata", "thinking",
    ],
    "/v1/responses": [
        "model", "input", "instructions", "max_output_tokens", "temperature", "top_p",
        "stream", "tools", "tool_choice", "text", "user", "store", "reasoning",
        "previous_response_id",
    ],
    "/v1/embeddings": ["model", "input", "dimensions", "encoding_format", "user"],
    "/v1/feedback": ["request_id", "value", "source", "range"],
}  # fmt: skip


# Inner paths that hold typed parts: a message, its content, a content part's fields.
def _inner(root: str, *item: str) -> list[tuple[Any, ...]]:
    """The paths under a request's first message (or item): the item, its fields, its part."""
    first, part = (root, 0), (root, 0, "content", 0)
    return [
        first,
        *((*first, f) for f in ("role", *item, "content")),
        part,
        (*part, "type"),
        (*part, "text"),
    ]


INNER = {
    "/v1/chat/completions": _inner("messages"),
    "/v1/messages": _inner("messages"),
    "/v1/responses": _inner("input", "type"),
    "/v1/embeddings": [("input", 0), ("input", 1)],
    "/v1/feedback": [("range", 0), ("range", 1)],
}
DOORS = list(VALID)
CHAT = "/v1/chat/completions"
SERVED_BY = {"/v1/embeddings": "base-embed"}  # the others: base-model

# Values of every JSON type, with the edges that break naive checks.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2, 3, 129, 2**31, 2**63, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.5, 0.0, 0.5, 1.0, 1.5, 2.5, 1e308, -1e308]),
    st.text(max_size=20),
    st.sampled_from(["", "true", "false", "1", "auto", "text", "json_schema", "user"]),
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["type", "text", "role", "content", "name"]), inner,
                        max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=12,
)  # fmt: skip
OVERSIZED = st.sampled_from(
    ["x" * 200_000, ["x"] * 5_000, {"k" * 10_000: 1}, [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]
)
VALUE = st.one_of(JSON, OVERSIZED)


def _replace(body: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set ``body[path]`` to a copy of ``value`` where the path still exists (else leave it).

    A copy: the same drawn list set at a path and inside itself would be a cycle.
    """
    value = copy.deepcopy(value)
    for key in path[:-1]:
        ok = (isinstance(body, dict) and key in body) or (
            isinstance(body, list) and isinstance(key, int) and key < len(body)
        )
        if not ok:
            return
        body = body[key]
    last = path[-1]
    if isinstance(body, dict) or (
        isinstance(body, list) and isinstance(last, int) and last < len(body)
    ):
        body[last] = value


@st.composite
def mutated(draw: st.DrawFn, door: str) -> bytes:
    """A door's valid request with a few fields replaced or dropped."""
    body = json.loads(json.dumps(VALID[door]))
    paths = [(f,) for f in FIELDS[door]] + INNER[door] + [("x_unknown",)]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths))
        if draw(st.integers(min_value=0, max_value=5)) == 0 and len(path) == 1:
            body.pop(path[0], None)
        else:
            _replace(body, path, draw(VALUE))
    return json.dumps(body).encode()


def bodies(door: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated(door),
        mutated(door),
        mutated(door),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=64),
        st.sampled_from([b"", b"{", b'{"model": "fuzz"', b"\xff\xfe{}", b"[]", b"null"]),
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("fuzz"), FILES, SCENARIO) as stack:
        yield stack


@pytest.fixture(scope="module")
def http(stack: Stack) -> str:
    base = stack.routers[0][2]
    # A real answer's feedback id, for the feedback door's valid body.
    _, headers, _ = _post(base, "/v1/chat/completions", json.dumps(VALID[CHAT]).encode())
    VALID["/v1/feedback"]["request_id"] = headers["x-skyroute-feedback-id"]
    return base


def _post(
    base: str, door: str, data: bytes | None, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """One request: status, headers (lower-cased names), body; a timeout fails the test."""
    req = urllib.request.Request(base + door, data=data, headers=HEADERS, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
    except (TimeoutError, urllib.error.URLError):  # pragma: no cover - a hung or dropped request
        pytest.fail(f"{door} hung on {data[:200]!r}")


@pytest.fixture(scope="module")
def stub(stack: Stack) -> Iterator[router_pb2_grpc.RouterStub]:
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        yield router_pb2_grpc.RouterStub(ch)


def _error_shape(door: str, status: int, body: Any) -> None:
    """The door's own error body: Anthropic's on /v1/messages, OpenAI's elsewhere."""
    assert isinstance(body, dict), body
    err = body.get("error")
    assert isinstance(err, dict), body
    assert isinstance(err.get("message"), str) and err["message"], body
    assert isinstance(err.get("type"), str) and err["type"], body
    if door == "/v1/messages":
        assert body["type"] == "error", body
    elif status == 400:
        assert "param" in err, body


def _check(http: str, door: str, data: bytes) -> None:
    status, headers, raw = _post(http, door, data)
    assert status < 500, (status, raw[:500], data[:500])
    ctype = headers.get("content-type", "")
    if status == 200 and ctype.startswith("text/event-stream"):
        assert raw.startswith((b"event:", b"data:")), raw[:200]
        return
    assert ctype.startswith("application/json"), (status, ctype, raw[:200], data[:200])
    body = json.loads(raw)
    if status == 200:
        assert isinstance(body, dict) and body.get("error") is None, body
    else:
        _error_shape(door, status, body)


def _serves(http: str, door: str) -> None:
    status, headers, raw = _post(http, door, json.dumps(VALID[door]).encode())
    assert status == 200, raw
    if door == "/v1/feedback":  # taken: it names the answer's model
        assert json.loads(raw)["model"] == "base-model", raw
        return
    assert headers["x-skyroute-model"] == SERVED_BY.get(door, "base-model")


@pytest.mark.parametrize("door", DOORS)
def test_http_door_answers_every_body_in_its_own_shape(http: str, door: str) -> None:
    _serves(http, door)

    @FUZZ
    @given(data=bodies(door))
    def fuzz(data: bytes) -> None:
        _check(http, door, data)

    fuzz()
    _serves(http, door)


_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(["", "user", "tool", "auto", "fuzz"]))
_MESSAGE = st.builds(
    router_pb2.Message,
    role=st.one_of(st.sampled_from(["user", "system", "assistant", "tool"]), _TEXT),
    content=st.one_of(_TEXT, st.just("x" * 100_000)),
    tool_calls=st.lists(
        st.builds(router_pb2.ToolCall, id=_TEXT, name=_TEXT, arguments=_TEXT), max_size=2
    ),
    tool_call_id=_TEXT,
    name=_TEXT,
)
_TOOL = st.builds(
    router_pb2.Tool,
    name=_TEXT,
    description=_TEXT,
    parameters=st.one_of(_TEXT, JSON.map(json.dumps)),
)


@st.composite
def completion_requests(draw: st.DrawFn) -> router_pb2.CompletionRequest:
    req = router_pb2.CompletionRequest(
        policy=draw(st.one_of(st.just("fuzz"), _TEXT)),
        messages=draw(st.lists(_MESSAGE, max_size=3)),
        tools=draw(st.lists(_TOOL, max_size=2)),
        max_tokens=draw(st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        intent=draw(_TEXT),
        user=draw(_TEXT),
        tenant=draw(_TEXT),
        locale=draw(_TEXT),
        user_tier=draw(_TEXT),
        request_id=draw(st.one_of(_TEXT, st.just("r" * 10_000))),
        idempotency_key=draw(_TEXT),
        no_cache=True,
        session=draw(_TEXT),
        safety_class=draw(_TEXT),
    )
    temperature = draw(st.one_of(st.none(), st.floats(), st.sampled_from([math.nan, 3.0])))
    if temperature is not None:
        req.temperature = temperature
    return req


# A gRPC status that means the server gave way (or held the call past the deadline).
BROKEN = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}


def _valid_request() -> router_pb2.CompletionRequest:
    msg = router_pb2.Message(role="user", content="hi")
    return router_pb2.CompletionRequest(policy="fuzz", messages=[msg], max_tokens=16, no_cache=True)


@pytest.mark.parametrize("method", ["Complete", "StreamComplete", "Explain"])
def test_grpc_router_answers_every_request_with_a_status(
    stub: router_pb2_grpc.RouterStub, method: str
) -> None:
    call = getattr(stub, method)

    def run(req: router_pb2.CompletionRequest) -> None:
        out = call(req, timeout=TIMEOUT)
        if method == "StreamComplete":
            list(out)

    @FUZZ
    @given(req=completion_requests())
    def fuzz(req: router_pb2.CompletionRequest) -> None:
        try:
            run(req)
        except grpc.RpcError as e:
            assert e.code() not in BROKEN, (e.code(), e.details(), req)
            assert e.details(), (e.code(), req)

    run(_valid_request())
    fuzz()
    run(_valid_request())
    assert stub.Complete(_valid_request(), timeout=TIMEOUT).model == "base-model"


def _not_number(lo: float, hi: float) -> st.SearchStrategy[Any]:
    fin = {"allow_nan": False, "allow_infinity": False}
    return st.one_of(
        st.floats(max_value=lo, exclude_max=True, **fin),
        st.floats(min_value=hi, exclude_min=True, **fin),
        st.sampled_from(["1", "0.5", True, False, [0.5], {"v": 0.5}]),
    )


def _not_integer(lo: int, hi: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(max_value=lo - 1),
        st.integers(min_value=hi + 1, max_value=2**64),
        st.sampled_from([1.5, "16", True, [16]]),
    )


_NOT_BOOL = st.sampled_from(["false", "true", 0, 1, [], {}])
# Per door: each bounded parameter and values its API refuses.
OUT_OF_RANGE: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "/v1/chat/completions": {
        "temperature": _not_number(0, 2),
        "top_p": _not_number(0, 1),
        "max_tokens": _not_integer(1, 2**31 - 1),
        "stream": _NOT_BOOL,
    },
    "/v1/messages": {
        "temperature": _not_number(0, 1),
        "top_p": _not_number(0, 1),
        "top_k": _not_integer(0, 2**31 - 1),
        "max_tokens": _not_integer(1, 2**31 - 1),
        "stream": _NOT_BOOL,
    },
    "/v1/responses": {
        "temperature": _not_number(0, 2),
        "top_p": _not_number(0, 1),
        "max_output_tokens": _not_integer(1, 2**31 - 1),
        "stream": _NOT_BOOL,
        "store": _NOT_BOOL,
    },
    "/v1/embeddings": {
        "dimensions": _not_integer(1, 16_384),
        "encoding_format": st.sampled_from(["hex", "", "FLOAT", 1, [], {}]),
    },
    "/v1/feedback": {
        "value": st.sampled_from([1.5, -0.1, 1e308, None, [], {}]),
        "source": st.sampled_from(["robot", "", 1, None, []]),
        "range": st.sampled_from([[1, 0], [0, 0], [0], "0-1", [0, "1"], {}]),
        "request_id": st.sampled_from(["", 5, None, [], {}]),
    },
}


@st.composite
def out_of_range(draw: st.DrawFn, door: str) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(OUT_OF_RANGE[door])))
    return name, draw(OUT_OF_RANGE[door][name])


@pytest.mark.parametrize("door", DOORS)
def test_out_of_range_parameters_are_refused_naming_them(http: str, door: str) -> None:
    @FUZZ
    @given(bad=out_of_range(door))
    def fuzz(bad: tuple[str, Any]) -> None:
        name, value = bad
        status, _, raw = _post(http, door, json.dumps({**VALID[door], name: value}).encode())
        body = json.loads(raw)
        assert status == 400, (name, value, status, body)
        _error_shape(door, status, body)
        if door == "/v1/messages":
            assert body["error"]["message"].startswith(name), body
        else:
            assert body["error"]["param"] == name, body

    fuzz()


@pytest.mark.parametrize(
    "req",
    [
        router_pb2.CompletionRequest(temperature=2.5),
        router_pb2.CompletionRequest(temperature=-0.1),
        router_pb2.CompletionRequest(temperature=math.nan),
        router_pb2.CompletionRequest(temperature=math.inf),
        router_pb2.CompletionRequest(max_tokens=-1),
        router_pb2.CompletionRequest(tools=[router_pb2.Tool(name="t", parameters="[1]")]),
        router_pb2.CompletionRequest(messages=[router_pb2.Message(role="robot", content="x")]),
    ],
    ids=["hot", "negative", "nan", "inf", "max_tokens", "tool-parameters", "role"],
)
def test_grpc_out_of_range_fields_are_invalid_argument(
    stub: router_pb2_grpc.RouterStub, req: router_pb2.CompletionRequest
) -> None:
    full = _valid_request()
    full.MergeFrom(req)
    with pytest.raises(grpc.RpcError) as bad:
        stub.Complete(full, timeout=TIMEOUT)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad.value.details()


def test_grpc_stream_failing_before_content_keeps_its_failure_under_the_key(
    stub: router_pb2_grpc.RouterStub,
) -> None:
    """gRPC's error reply raises (an abort): the key must keep the failure, not 'interrupted'."""
    req = _valid_request()
    req.policy, req.idempotency_key = "broken", "stream-fails-before-content"
    seen = []
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as bad:
            list(stub.StreamComplete(req, timeout=TIMEOUT))
        seen.append((bad.value.code(), bad.value.details()))
    assert seen[0][0] == grpc.StatusCode.UNAVAILABLE and "server_error" in seen[0][1], seen
    assert seen[1] == seen[0], seen  # the repeat is answered with the first outcome


# The stored responses' routes (method, path after the id) and the query input_items takes.
STORED = [("GET", ""), ("DELETE", ""), ("GET", "/input_items")]
_QUERY = st.dictionaries(
    st.sampled_from(["limit", "order", "after", "include"]), st.text(max_size=30), max_size=3
)


def test_stored_response_routes_answer_every_id_in_openai_shape(http: str) -> None:
    status, _, raw = _post(http, "/v1/responses", json.dumps(VALID["/v1/responses"]).encode())
    assert status == 200, raw
    stored_id = json.loads(raw)["id"]

    @FUZZ
    @given(
        rid=st.one_of(st.just(stored_id), st.text(min_size=1, max_size=300)),
        route=st.sampled_from(STORED[::-1]),  # DELETE last among equals: the id mostly stays
        query=_QUERY,
    )
    def fuzz(rid: str, route: tuple[str, str], query: dict[str, str]) -> None:
        method, tail = route
        path = f"/v1/responses/{urllib.parse.quote(rid, safe='')}{tail}"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        status, headers, raw = _post(http, path, None, method)
        assert status < 500, (status, raw[:500], path)
        assert headers.get("content-type", "").startswith("application/json"), (status, raw)
        body = json.loads(raw)
        if status != 200:
            _error_shape("/v1/responses", status, body)
        elif method == "DELETE":
            assert body == {"id": rid, "object": "response", "deleted": True}, body
        else:
            assert body["object"] in ("response", "list"), body

    fuzz()


_BLOCK = st.builds(
    router_pb2.ContentBlock,
    type=st.one_of(
        st.sampled_from(
            ["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"]
        ),
        _TEXT,
    ),
    text=_TEXT,
    media_type=_TEXT,
    data=_TEXT,
    url=_TEXT,
    id=_TEXT,
    name=_TEXT,
    input=st.one_of(_TEXT, JSON.map(json.dumps)),
    tool_use_id=_TEXT,
    is_error=st.booleans(),
    signature=_TEXT,
)
_TURN = st.builds(
    router_pb2.MessagesTurn,
    role=st.one_of(st.sampled_from(["user", "assistant"]), _TEXT),
    content=st.lists(_BLOCK, max_size=3),
)


@st.composite
def messages_requests(draw: st.DrawFn) -> router_pb2.MessagesRequest:
    req = router_pb2.MessagesRequest(
        policy=draw(st.one_of(st.just("fuzz"), _TEXT)),
        system=draw(_TEXT),
        messages=draw(st.lists(_TURN, max_size=3)),
        max_tokens=draw(st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        stop_sequences=draw(st.lists(_TEXT, max_size=3)),
        tools=draw(
            st.lists(
                st.builds(
                    router_pb2.MessagesTool,
                    name=_TEXT,
                    description=_TEXT,
                    input_schema=st.one_of(_TEXT, JSON.map(json.dumps)),
                ),
                max_size=2,
            )
        ),
        tool_choice=draw(st.one_of(st.sampled_from(["auto", "any", "none", "tool"]), _TEXT)),
        tool_choice_name=draw(_TEXT),
        thinking_budget_tokens=draw(st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        user_id=draw(st.one_of(_TEXT, st.just("u" * 300))),
        intent=draw(_TEXT),
        tenant=draw(_TEXT),
        no_cache=True,
    )
    for name, value in (
        ("temperature", draw(st.one_of(st.none(), st.floats()))),
        ("top_p", draw(st.one_of(st.none(), st.floats()))),
        ("top_k", draw(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)))),
    ):
        if value is not None:
            setattr(req, name, value)
    return req


def _valid_messages() -> router_pb2.MessagesRequest:
    hi = router_pb2.ContentBlock(type="text", text="hi")
    turn = router_pb2.MessagesTurn(role="user", content=[hi])
    return router_pb2.MessagesRequest(policy="fuzz", messages=[turn], max_tokens=16, no_cache=True)


@pytest.mark.parametrize("method", ["Messages", "StreamMessages", "ExplainMessages"])
def test_grpc_messages_answers_every_request_with_a_status(
    stub: router_pb2_grpc.RouterStub, method: str
) -> None:
    call = getattr(stub, method)

    def run(req: router_pb2.MessagesRequest) -> None:
        out = call(req, timeout=TIMEOUT)
        if method == "StreamMessages":
            list(out)

    @FUZZ
    @given(req=messages_requests())
    def fuzz(req: router_pb2.MessagesRequest) -> None:
        try:
            run(req)
        except grpc.RpcError as e:
            assert e.code() not in BROKEN, (e.code(), e.details(), req)
            assert e.details(), (e.code(), req)

    fuzz()
    assert stub.Messages(_valid_messages(), timeout=TIMEOUT).model == "base-model"
