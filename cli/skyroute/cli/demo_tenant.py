"""The demo's caller: a Tenant beside the example policies, and one key for it.

``make demo`` runs its routers closed, as a deployment does (no
``--allow-anonymous``, no ``--open-without-tenants``): every request carries
an API key. So that the example folder stays as shipped (a key's digest is
written into the Tenant's file), the demo copies ``examples/acmeshop/`` to
``demo-out/source/``, writes the Tenant there and makes the key with
:func:`skyroute.cli.keys.create_folder`, the code ``skyroute keys create
--tenant acmeshop --source DIR`` runs; the key is held in memory only, never
written to disk.

The Tenant delegates (``delegate: true``, as a shop's own gateway would): the
sample's three surfaces (``acmeshop-web``, ``-mobile``, ``-sellers``) keep
their own cache partitions (``acmeshop/acmeshop-web``, ...) and user tiers
through the ``x-skyroute-tenant`` and ``x-skyroute-user-tier`` headers, so the
figures compare with a keyless run. Its rate limits are far above what the
replay sends: they are reserved and settled on every request (the door's
whole path), without ever refusing one. Before the replay, :func:`keyless_status`
shows each router refusing a request without the key.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import aiohttp

from skyroute.cli.keys import create_folder

TENANT = "acmeshop"
#: How long the demo's key is valid: one run, with room to spare.
KEY_LIFETIME = dt.timedelta(hours=1)

TENANT_YAML = f"""\
# Written by `skyroute demo`: who may call the demo's routers. The key below
# was made by the same code as `skyroute keys create --tenant {TENANT}`.
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata:
  name: {TENANT}
spec:
  tier: standard
  policies: [acmeshop, baseline]
  delegate: true
  rateLimits:
    requestsPerMinute: 1000000
    concurrentRequests: 10000
"""


def prepare(example: Path, out_dir: Path) -> tuple[Path, str]:
    """A fresh copy of ``example`` under ``out_dir`` with the Tenant; (folder, the new key)."""
    source = out_dir / "source"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(example, source)
    (source / "tenant.yaml").write_text(TENANT_YAML, encoding="utf-8")
    _, key = create_folder(source, TENANT, dt.datetime.now(dt.UTC) + KEY_LIFETIME)
    return source, key


async def keyless_status(router: str) -> int:
    """The HTTP status a keyless chat request gets from ``router`` (closed: 401)."""
    ask = {"model": "acmeshop", "messages": [{"role": "user", "content": "hello"}]}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"http://{router}/v1/chat/completions", json=ask) as resp,
    ):
        return resp.status
