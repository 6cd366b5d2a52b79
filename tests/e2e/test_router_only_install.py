"""A router with only its own lock's packages importable still serves both doors.

The router image installs ``requirements/router.txt`` only (no pydantic,
watchfiles, rich, kopf, kubernetes). Building that image needs Docker, so
the same constraint is enforced in a real router process: a
``sitecustomize`` makes every third-party module whose distribution is not
pinned in ``router.txt`` absent (``None`` in ``sys.modules``: ``import``
raises ``ModuleNotFoundError`` and ``find_spec`` answers ``None``, as for a
package that is not installed). The
router then takes a snapshot from a real control plane and answers the
official OpenAI SDK and the gRPC stub, streams included; the finder is shown
to refuse a control-plane package in the same environment, so it is not a
finder that lets everything through.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import openai

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import REPO, Proc, Stack, free_port, http_get, wait_until
from policies import FILES, SCENARIO

ONLY_LOCKED = '''\
"""Third-party modules whose distribution is not in $SKYROUTE_ONLY_LOCK: absent."""
import importlib.metadata
import os
import re
import sys


def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


_lock = open(os.environ["SKYROUTE_ONLY_LOCK"]).read()
_allowed = {_canon(m.group(1)) for m in re.finditer(r"^([A-Za-z0-9._-]+)==", _lock, re.M)}
for _top, _dists in importlib.metadata.packages_distributions().items():
    if _top in sys.modules or _top in sys.stdlib_module_names:
        continue  # already in (coverage, site), or the standard library
    if not any(_canon(d) in _allowed for d in _dists):
        sys.modules[_top] = None  # import raises ModuleNotFoundError, find_spec says None
'''


def only_locked_env(tmp: Path) -> dict[str, str]:
    site = tmp / "only-locked"
    site.mkdir()
    (site / "sitecustomize.py").write_text(ONLY_LOCKED)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "SKYROUTE_ONLY_LOCK": str(REPO / "requirements" / "router.txt")}


def test_what_the_router_lock_lacks_is_absent(tmp_path: Path) -> None:
    env = {**os.environ, **only_locked_env(tmp_path)}

    def run(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )

    for control_plane in ("pydantic", "kopf", "kubernetes", "rich", "watchfiles"):
        refused = run(f"import {control_plane}")
        assert refused.returncode != 0, control_plane
        assert f"import of {control_plane} halted; None in sys.modules" in refused.stderr, (
            refused.stderr
        )
    fine = run("import yaml, grpc, aiohttp, numpy, skyroute.router.server")
    assert fine.returncode == 0, fine.stderr


def test_a_router_with_only_its_lock_serves_both_doors(procs: list[Proc], tmp_path: Path) -> None:
    stack = Stack(procs, tmp_path, FILES, SCENARIO, routers=0)
    grpc_addr, http_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    admin_addr = f"127.0.0.1:{free_port()}"
    router = Proc(
        "router-only-locked",
        [
            "router",
            "--insecure",
            "--control",
            stack.control_addr,
            "--grpc",
            grpc_addr,
            "--http",
            http_addr,
            "--admin-listen",
            admin_addr,
            "--open-without-tenants",
        ],
        env=only_locked_env(tmp_path),
    )
    procs.append(router)
    url = f"http://{http_addr}"
    wait_until(lambda: http_get(url + "/readyz")[0] == 200, what=f"ready\n{router.output()}")

    c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=20)
    done = c.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Please compare plan A and B"}]
    )
    assert done.model == "smart-model" and done.choices[0].message.content
    chunks = list(
        c.chat.completions.create(
            model="support", stream=True, messages=[{"role": "user", "content": "reset password"}]
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    with grpc.insecure_channel(grpc_addr) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        req = router_pb2.CompletionRequest(
            messages=[router_pb2.Message(role="user", content="compare the premium and basic")]
        )
        assert stub.Complete(req, timeout=10).model == "smart-model"
        assert list(stub.StreamComplete(req, timeout=10))[-1].WhichOneof("chunk") == "done"
    code, _ = http_get(f"http://{admin_addr}/metrics")
    assert code == 200
    assert router.alive()
