"""Tenants and keys reach the routers with the snapshot, and a revocation within 2 s.

A real control plane watching a folder, a real router: ``skyroute keys
create`` writes a key into the Tenant's file, the router's door holds it
(``/debug/status`` ``door``), ``skyroute keys revoke`` marks it revoked and the
router has the revocation with the next push.
"""

from __future__ import annotations

from pathlib import Path

from skyroute.control.distribution.status import door_text, fetch_status

from harness import Proc, Stack, wait_until
from harness import keys_cli as keys
from policies import FILES, SCENARIO

TENANT = """\
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata:
  name: shop
spec:
  tier: standard
  policies: [support]
  rateLimits:
    requestsPerMinute: 600
"""


def test_keys_follow_the_folder_to_the_router(procs: list[Proc], tmp_path: Path) -> None:
    stack = Stack(procs, tmp_path, {**FILES, "tenants.yaml": TENANT}, SCENARIO)
    wait_until(lambda: stack.router_status()["door"]["tenants"] == 1, what="tenant pushed")
    door = stack.router_status()["door"]
    assert door["keys"] == 0 and door["anonymous_allowed"] is False
    assert door["limits_backend"] == "memory"
    key = keys("create", "--tenant", "shop", "--source", str(stack.source))
    wait_until(lambda: stack.router_status()["door"]["keys"] == 1, what="key pushed")
    key_id = key.split("-")[2]
    # skyroute status shows the same door, as each router reported it with its ACK.
    wait_until(
        lambda: fetch_status(stack.control_addr).routers[0].door.keys == 1, what="key in status"
    )
    (router,) = fetch_status(stack.control_addr).routers
    assert router.door.mode == "keys" and (router.door.tenants, router.door.keys) == (1, 1)
    assert not router.door.anonymous_allowed and router.door.open_without_tenants
    assert door_text(router).plain == "keys 1t/1k (open without tenants)"
    keys("revoke", "--tenant", "shop", "--source", str(stack.source), key_id)
    wait_until(
        lambda: stack.router_status()["door"]["keys_revoked"] == 1, timeout=10, what="revoked"
    )
    # The key's secret never reaches the router's status or logs.
    secret = key.rsplit("-", 1)[1]
    assert secret not in str(stack.router_status()) and secret not in stack.routers[0][0].output()
