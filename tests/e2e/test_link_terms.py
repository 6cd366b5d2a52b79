"""One receive limit for both doors, and keepalive terms both ends of the link accept.

``skyroute.link`` declares them once. A real router on loopback takes a
6 MiB request on both doors (gRPC's own default would refuse anything over
4 MiB) and refuses one over 32 MiB on both: HTTP 413, gRPC
``RESOURCE_EXHAUSTED``. Keepalive: the server side lets clients ping more
often than routers do, with or without calls in flight, so a router's pings
never earn a ``too_many_pings`` GOAWAY.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from skyroute import link
from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Proc, Stack
from policies import FILES, SCENARIO

MiB = 1 << 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    procs: list[Proc] = []
    s = Stack(procs, tmp_path_factory.mktemp("limits"), FILES, SCENARIO)
    yield s
    for p in reversed(procs):
        p.stop()


def prompt(size: int) -> str:
    return "compare plan A and B " + "x" * size


def http_explain(url: str, size: int) -> tuple[int, bytes]:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": prompt(size)}]})
    req = urllib.request.Request(
        url + "/v1/explain", data=body.encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def grpc_explain(addr: str, size: int) -> router_pb2.Decision:
    options = [("grpc.max_send_message_length", 2 * link.DOOR_MAX_BYTES)]
    with grpc.insecure_channel(addr, options=options) as ch:
        req = router_pb2.CompletionRequest(
            messages=[router_pb2.Message(role="user", content=prompt(size))]
        )
        return router_pb2_grpc.RouterStub(ch).Explain(req, timeout=60)


def test_both_doors_take_more_than_grpcs_default_limit(stack: Stack) -> None:
    _, grpc_addr, url = stack.routers[0]
    code, body = http_explain(url, 6 * MiB)
    assert code == 200, body[:500]
    assert json.loads(body)["signals"]["intent"] == "reasoning.compare"
    decision = grpc_explain(grpc_addr, 6 * MiB)
    assert decision.signals.intent == "reasoning.compare" and decision.pool == "smart"


def test_both_doors_refuse_past_the_one_limit(stack: Stack) -> None:
    _, grpc_addr, url = stack.routers[0]
    assert 32 * MiB == link.DOOR_MAX_BYTES
    code, _ = http_explain(url, link.DOOR_MAX_BYTES + MiB)
    assert code == 413
    with pytest.raises(grpc.RpcError) as refused:
        grpc_explain(grpc_addr, link.DOOR_MAX_BYTES + MiB)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(link.DOOR_MAX_BYTES) in (refused.value.details() or "")
    # The router is unharmed: the next request is served.
    assert http_explain(url, 1024)[0] == 200


def test_servers_allow_the_pings_routers_send() -> None:
    server = dict(link.server_options(link.DOOR_MAX_BYTES))
    client = dict(link.link_channel_options())
    assert server["grpc.http2.min_ping_interval_without_data_ms"] < client["grpc.keepalive_time_ms"]
    assert (
        server["grpc.keepalive_permit_without_calls"]
        == client["grpc.keepalive_permit_without_calls"]
    )
    assert client["grpc.keepalive_timeout_ms"] < client["grpc.keepalive_time_ms"]
    # The link carries whole snapshots: what one end sends, the other receives.
    assert client["grpc.max_send_message_length"] == server["grpc.max_send_message_length"]
    assert client["grpc.max_receive_message_length"] == link.LINK_MAX_BYTES
