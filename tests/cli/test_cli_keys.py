"""``skyroute keys create|list|revoke`` in folder mode, as a user runs it: subprocesses.

The key is the last line of stdout and appears nowhere else (not in the file,
not in the compiled snapshot); the compiled snapshot's key ring accepts it,
and refuses it once revoked or expired.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skyroute.control.policy.compiler import compile_folder
from skyroute.router.ingress.guards.errors import GuardError
from skyroute.router.ingress.guards.from_snapshot import from_snapshot

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "acmeshop"
TENANTS = REPO / "examples" / "tenants" / "acmeshop.yaml"


def skyroute(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "acmeshop"
    shutil.copytree(EXAMPLE, out)
    shutil.copy(TENANTS, out / "tenants.yaml")
    return out


def _create(folder: Path, tenant: str, *extra: str) -> str:
    r = skyroute("keys", "create", "--tenant", tenant, "--source", str(folder), *extra)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("sk-sr-")
    assert r.stdout.count(key) == 1 and key not in r.stderr
    return key


def test_create_writes_only_the_digest_and_the_key_verifies(folder: Path) -> None:
    before = (folder / "tenants.yaml").read_text()
    key = _create(folder, "acme-web")
    text = (folder / "tenants.yaml").read_text()
    secret = key.rsplit("-", 1)[1]
    assert secret not in text and key.split("-")[2] in text
    # Comments and the rest of the file survive the edit.
    assert all(line in text.splitlines() for line in before.splitlines())
    snap = compile_folder(folder)
    assert secret not in str(snap)
    tenants, ring = from_snapshot(snap)
    assert ring.verify(key, time.time()).tenant == "acme-web"
    assert tenants["acme-web"].tier == "standard"


def test_several_keys_list_and_revoke(folder: Path) -> None:
    a = _create(folder, "partner-gateway")
    b = _create(folder, "partner-gateway", "--expires", "1h")
    a_id, b_id = a.split("-")[2], b.split("-")[2]
    listed = skyroute("keys", "list", "--source", str(folder))
    assert listed.returncode == 0
    assert a_id in listed.stdout and b_id in listed.stdout and a not in listed.stdout
    r = skyroute("keys", "revoke", "--tenant", "partner-gateway", "--source", str(folder), a_id)
    assert r.returncode == 0, r.stderr
    _, ring = from_snapshot(compile_folder(folder))
    with pytest.raises(GuardError) as exc:
        ring.verify(a, time.time())
    assert "revoked" in exc.value.message
    assert ring.verify(b, time.time()).tenant == "partner-gateway"
    with pytest.raises(GuardError) as exc:
        ring.verify(b, time.time() + 3700)
    assert "expired" in exc.value.message


def test_unknown_tenant_key_and_bad_duration(folder: Path) -> None:
    assert skyroute("keys", "create", "--tenant", "nobody", "--source", str(folder)).returncode == 1
    r = skyroute("keys", "revoke", "--tenant", "acme-web", "--source", str(folder), "0" * 12)
    assert r.returncode == 1
    r = skyroute(
        "keys", "create", "--tenant", "acme-web", "--source", str(folder), "--expires", "soon"
    )
    assert r.returncode == 2 and "--expires" in r.stderr


def test_an_all_digit_key_id_stays_a_string_and_comments_survive() -> None:
    """A 12-hex-digit id can be all digits (about 1 in 280 keys); unquoted, YAML reads
    it as a number, the textual edit fails its check and the rewrite drops comments."""
    import yaml

    from skyroute.cli.keys import _insert_key

    part = "kind: Tenant\nmetadata:\n  name: t\nspec:\n  # keep me\n  tier: standard\n"
    entry = {"id": "123456789012", "digest": "sha256:" + "a" * 64}
    text = _insert_key(part, entry)
    assert "# keep me" in text
    assert yaml.safe_load(text)["spec"]["keys"] == [entry]
