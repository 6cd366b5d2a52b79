"""Operators' endpoints live on the admin listener, never on the client port.

``/debug/status`` lists every upstream endpoint and ``/metrics`` names upstream
hosts in its labels: a real router serves both on ``--admin-listen`` only, and
its client port answers those paths with the API's own JSON 404 (issue 16).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from harness import BASE_POOL, Stack, http_get, running_stack

FILES = {
    "pool.yaml": BASE_POOL,
    "policy.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: admin}
spec:
  default: true
  rules: []
  defaultPool: base
  selection: {mode: ordered}
""",
}
SCENARIO = """\
defaults:
  ttft_ms: {p50: 1, p95: 2}
  tokens_per_s: 50000
  completion_tokens: {p50: 4, p95: 4, min: 4, max: 4}
  error_rate: 0
"""
ADMIN_ONLY = ("/metrics", "/debug/status")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("admin"), FILES, SCENARIO) as stack:
        yield stack


@pytest.mark.parametrize("path", ADMIN_ONLY)
def test_client_port_answers_admin_paths_with_a_json_404(stack: Stack, path: str) -> None:
    code, body = http_get(stack.routers[0][2] + path)
    assert code == 404, body
    err = json.loads(body)["error"]
    assert err["type"] == "not_found_error" and path in err["message"]
    assert b"127.0.0.1:" + str(stack.sim_port).encode() not in body


def test_admin_port_serves_status_and_metrics(stack: Stack) -> None:
    admin = stack.router_admins[0]
    client = openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    )
    done = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hi"}]
    )
    assert done.model == "base-model"
    code, body = http_get(admin + "/debug/status")
    assert code == 200, body
    status = json.loads(body)
    assert status["node"] == "router-0" and status["version"] == stack.router_version()
    assert any(str(stack.sim_port) in e["endpoint"] for e in status["endpoints"]), status
    code, body = http_get(admin + "/metrics")
    assert code == 200 and b"# TYPE " in body, body[:200]
    assert http_get(admin + "/readyz")[0] == 200
    # The admin listener is not a second API door.
    code, body = http_get(admin + "/v1/models")
    assert code == 404 and json.loads(body)["error"]["message"]


def test_router_help_documents_the_admin_listener() -> None:
    from skyroute.cli.main import DEFAULT_ROUTER_ADMIN, _parser

    parser = _parser()
    assert parser.parse_args(["router"]).admin_listen == DEFAULT_ROUTER_ADMIN
    assert DEFAULT_ROUTER_ADMIN.startswith("127.0.0.1:")  # loopback unless deploy/ says so
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "--admin-listen" in sub.choices["router"].format_help()  # type: ignore[attr-defined]
