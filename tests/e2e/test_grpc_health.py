"""gRPC health (``grpc.health.v1``) and server reflection on every gRPC server.

Real processes on loopback, asked by the standard health and reflection
clients (what Kubernetes ``grpc:`` probes, grpcurl and meshes use): a router
reports ``skyroute.v1.Router`` SERVING exactly while ``/readyz`` is 200 (a
snapshot is loaded), the control plane reports
``skyroute.v1.PolicyDistribution`` SERVING while it has a snapshot compiled.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from harness import Proc, free_port, http_get, wait_until
from policies import FILES

ROUTER = "skyroute.v1.Router"
DISTRIBUTION = "skyroute.v1.PolicyDistribution"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(addr: str, service: str) -> int:
    with grpc.insecure_channel(addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status)


def services(addr: str) -> set[str]:
    """The service names server reflection lists (as ``grpcurl list`` shows them)."""
    with grpc.insecure_channel(addr) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        reqs = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        (resp,) = list(stub.ServerReflectionInfo(reqs, timeout=2))
        return {s.name for s in resp.list_services_response.service}


def symbol_file(addr: str, symbol: str) -> bytes:
    with grpc.insecure_channel(addr) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        reqs = iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)])
        (resp,) = list(stub.ServerReflectionInfo(reqs, timeout=2))
        return b"".join(resp.file_descriptor_response.file_descriptor_proto)


def test_router_health_follows_its_snapshot(procs: list[Proc], tmp_path: Path) -> None:
    control_addr = f"127.0.0.1:{free_port()}"
    grpc_addr, http_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    router = Proc(
        "router",
        [
            "router",
            "--insecure",
            "--control",
            control_addr,
            "--grpc",
            grpc_addr,
            "--http",
            http_addr,
            "--admin-listen",
            f"127.0.0.1:{free_port()}",
        ],
    )
    procs.append(router)
    # No control plane yet: alive, not ready, on both doors alike.
    wait_until(lambda: check(grpc_addr, "") == SERVING, what=f"router up\n{router.output()}")
    assert check(grpc_addr, ROUTER) == NOT_SERVING
    assert http_get(f"http://{http_addr}/readyz")[0] == 503
    with grpc.insecure_channel(grpc_addr) as ch:
        try:
            health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=2
            )
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND
        else:
            raise AssertionError("an unknown service must be NOT_FOUND")
    assert {ROUTER, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= (
        services(grpc_addr)
    )
    assert b"CompletionRequest" in symbol_file(grpc_addr, ROUTER)

    # The control plane comes up with the folder: the router loads a snapshot and is ready.
    stack_dir = tmp_path / "policies"
    stack_dir.mkdir()
    sim = f"http://127.0.0.1:{free_port()}"
    for name, text in FILES.items():
        (stack_dir / name).write_text(text.replace("{SIM}", sim))
    control = Proc(
        "control", ["control", "--insecure", "--source", str(stack_dir), "--listen", control_addr]
    )
    procs.append(control)
    wait_until(
        lambda: check(grpc_addr, ROUTER) == SERVING,
        what=f"router SERVING\n{control.output()}\n{router.output()}",
    )
    assert http_get(f"http://{http_addr}/readyz")[0] == 200
    assert check(control_addr, DISTRIBUTION) == SERVING
    assert check(control_addr, "") == SERVING
    assert {DISTRIBUTION, "grpc.health.v1.Health"} <= services(control_addr)


def test_control_plane_not_serving_without_a_snapshot(procs: list[Proc], tmp_path: Path) -> None:
    source = tmp_path / "policies"
    source.mkdir()
    (source / "policy.yaml").write_text("kind: RoutingPolicy\nspec: [not, valid\n")
    addr = f"127.0.0.1:{free_port()}"
    control = Proc(
        "control",
        ["control", "--insecure", "--source", str(source), "--listen", addr, "--admin", ""],
    )
    procs.append(control)
    wait_until(lambda: check(addr, "") == SERVING, what=f"control up\n{control.output()}")
    assert check(addr, DISTRIBUTION) == NOT_SERVING
    # The folder is fixed: the first good compile makes it SERVING.
    sim = f"http://127.0.0.1:{free_port()}"
    (source / "policy.yaml").unlink()
    for name, text in FILES.items():
        (source / name).write_text(text.replace("{SIM}", sim))
    wait_until(lambda: check(addr, DISTRIBUTION) == SERVING, what=f"SERVING\n{control.output()}")
