"""Closed by default: a router whose snapshot has no Tenant admits no caller.

A real control plane whose folder declares no Tenant and two real routers on
it: one started without ``--allow-anonymous`` refuses every request, keyless
or not, on every door in that API's own error shape (OpenAI Chat and
Responses through the official ``openai`` SDK, Anthropic Messages through the
official ``anthropic`` SDK and a bare keyless POST, gRPC ``Complete``), with a
message that tells the operator what to do; the other, started with the flag,
is open and says so loudly (start-up warning, ``/readyz``, ``/debug/status``).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator

import anthropic
import grpc
import openai
import pytest

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import BASE_POOL, Proc, Stack, control_status, free_port, http_get, wait_until

FILES = {
    "pool.yaml": BASE_POOL,
    "policy.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: shop}
spec:
  default: true
  defaultPool: base
""",
}
SCENARIO = """\
defaults:
  ttft_ms: {p50: 2, p95: 4}
  tokens_per_s: 20000
  completion_tokens: {p50: 8, p95: 8, min: 8, max: 8}
  error_rate: 0
"""
ASK = [{"role": "user", "content": "hello"}]
# What the refusal must tell the operator: both ways out.
WHY = ("no Tenant configured", "declare a Tenant", "--allow-anonymous")


def _says_why(message: str) -> None:
    for part in WHY:
        assert part in message, message


class Routers:
    def __init__(
        self, stack: Stack, anon: Proc, anon_grpc: str, anon_http: str, anon_admin: str
    ) -> None:
        self.stack = stack
        self.closed_grpc, self.closed_http = stack.routers[0][1], stack.routers[0][2]
        self.closed_admin = stack.router_admins[0]
        self.anon, self.anon_grpc, self.anon_http = anon, anon_grpc, anon_http
        self.anon_admin = anon_admin


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routers]:
    procs: list[Proc] = []
    try:
        stack = Stack(
            procs, tmp_path_factory.mktemp("closed"), FILES, SCENARIO, open_without_tenants=False
        )
        g, h = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        a = f"127.0.0.1:{free_port()}"
        anon = stack.start(
            "router-anon",
            [
                "router",
                "--insecure",
                "--control",
                stack.control_addr,
                "--grpc",
                g,
                "--http",
                h,
                "--admin-listen",
                a,
                "--id",
                "router-anon",
                "--allow-anonymous",
            ],
        )
        url = f"http://{h}"
        wait_until(lambda: http_get(url + "/readyz")[0] == 200, what=f"anon\n{anon.output()}")
        yield Routers(stack, anon, g, url, f"http://{a}")
    finally:
        for p in reversed(procs):
            p.stop()


def _status(url: str) -> dict:  # type: ignore[type-arg]
    return json.loads(http_get(url + "/debug/status")[1])


def _post(url: str, body: dict[str, object]) -> tuple[int, dict]:  # type: ignore[type-arg]
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _grpc(addr: str, key: str | None) -> grpc.RpcError | None:
    req = router_pb2.CompletionRequest(messages=[router_pb2.Message(role="user", content="hi")])
    md = (("authorization", f"Bearer {key}"),) if key else ()
    with grpc.insecure_channel(addr) as ch:
        try:
            router_pb2_grpc.RouterStub(ch).Complete(req, metadata=md, timeout=20)
        except grpc.RpcError as e:
            return e
    return None


def test_openai_doors_refuse_every_caller_with_the_reason(routers: Routers) -> None:
    url = routers.closed_http
    # Keyless: no Authorization at all.
    code, body = _post(url + "/v1/chat/completions", {"model": "auto", "messages": ASK})
    assert code == 401, body
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["type"] == "invalid_request_error"
    _says_why(body["error"]["message"])
    # A key of any kind changes nothing: there is no tenant it could belong to.
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-sr-aaaa", max_retries=0, timeout=20)
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model="auto", messages=ASK)  # type: ignore[arg-type]
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    _says_why(e.value.message)
    with pytest.raises(openai.AuthenticationError) as r:
        client.responses.create(model="auto", input="hello")
    assert r.value.status_code == 401
    _says_why(r.value.message)


def test_anthropic_door_refuses_in_anthropic_shape(routers: Routers) -> None:
    url = routers.closed_http
    ask = {"model": "auto", "max_tokens": 16, "messages": ASK}
    code, body = _post(url + "/v1/messages", ask)
    assert code == 401, body
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    _says_why(body["error"]["message"])
    client = anthropic.Anthropic(base_url=url, api_key="sk-sr-aaaa", max_retries=0, timeout=20)
    with pytest.raises(anthropic.AuthenticationError) as e:
        client.messages.create(model="auto", max_tokens=16, messages=ASK)  # type: ignore[arg-type]
    assert e.value.status_code == 401
    _says_why(e.value.message)


def test_grpc_door_refuses_unauthenticated(routers: Routers) -> None:
    for key in (None, "sk-sr-aaaa"):
        err = _grpc(routers.closed_grpc, key)
        assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED
        _says_why(err.details() or "")


def test_a_closed_router_says_so(routers: Routers) -> None:
    url = routers.closed_http
    door = _status(routers.closed_admin)["door"]
    assert door["mode"] == "closed" and door["open"] is False
    assert door["anonymous_allowed"] is False and door["tenants"] == 0
    _says_why(door["warning"])
    code, body = http_get(url + "/readyz")
    text = body.decode()
    assert code == 200 and text.startswith("door CLOSED: "), text
    assert text.split()[-1] == routers.stack.router_version()
    # Every refusal above (and below) is counted.
    _post(url + "/v1/chat/completions", {"model": "auto", "messages": ASK})
    assert _status(routers.closed_admin)["door"]["refused"]["unauthenticated"] >= 1


def test_allow_anonymous_opens_it_loudly(routers: Routers) -> None:
    url = routers.anon_http
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=20)
    resp = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=ASK,  # type: ignore[arg-type]
        extra_headers={"x-skyroute-tenant": "lab"},
    )
    assert resp.parse().model == "base-model"
    assert _grpc(routers.anon_grpc, None) is None
    door = _status(routers.anon_admin)["door"]
    assert door["mode"] == "open" and door["open"] is True and door["anonymous_allowed"] is True
    assert door["warning"].startswith("OPEN: ")
    code, body = http_get(url + "/readyz")
    assert code == 200 and body.decode().startswith("door OPEN: "), body
    warned = routers.anon.events("anonymous_allowed")
    assert warned and "OPEN" in str(warned[0]["note"]), routers.anon.output()


def test_skyroute_status_shows_each_routers_door(routers: Routers) -> None:
    def doors() -> dict[str, dict]:  # type: ignore[type-arg]
        data = json.loads(control_status(routers.stack, "--json"))
        return {r["node"]["id"]: r.get("door", {}) for r in data["routers"]}

    wait_until(lambda: len(doors()) == 2, what="both routers listed with their door")
    got = doors()
    closed = got["router-0"]
    assert closed["mode"] == "closed" and not closed.get("anonymous_allowed")
    assert not closed.get("open_without_tenants") and not closed.get("tenants")
    anon = got["router-anon"]
    assert anon["mode"] == "open"
    assert anon["anonymous_allowed"] is True and anon["open_without_tenants"] is True
    table = control_status(routers.stack)
    rows = {line.split()[0]: line for line in table.splitlines() if line.startswith("router-")}
    assert re.search(r"\sclosed\s", rows["router-0"] + " "), table
    assert re.search(r"\sopen \+anonymous\s", rows["router-anon"] + " "), table
