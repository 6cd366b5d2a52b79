"""``skyroute keys`` against the real kube-apiserver: a labelled Secret per key.

The Secret holds the public id and digest only; the key is the last line of
stdout and is nowhere in the cluster.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

from kcluster import Cluster

REPO = Path(__file__).resolve().parents[2]


def skyroute(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "keys",
            *args,
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_list_revoke_as_secrets(k8s_cluster: Cluster) -> None:
    ns = f"keys-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl("create", "namespace", ns)
    r = skyroute(k8s_cluster, "create", "--tenant", "acme-web", "-n", ns, "--expires", "30d")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    key_id, secret = key.split("-")[2], key.split("-")[3]
    got = json.loads(
        k8s_cluster.kubectl(
            "get", "secrets", "-n", ns, "-l", "skyroute.io/tenant=acme-web", "-o", "json"
        ).stdout
    )
    [item] = got["items"]
    assert item["metadata"]["labels"]["skyroute.io/key-id"] == key_id
    data = {k: base64.b64decode(v).decode() for k, v in item["data"].items()}
    assert data["id"] == key_id and data["digest"].startswith("sha256:")
    assert "expiresAt" in data
    assert secret not in json.dumps(got)
    listed = skyroute(k8s_cluster, "list", "-n", ns)
    assert listed.returncode == 0 and key_id in listed.stdout and secret not in listed.stdout
    assert skyroute(k8s_cluster, "revoke", "--tenant", "other", "-n", ns, key_id).returncode == 1
    assert skyroute(k8s_cluster, "revoke", "--tenant", "acme-web", "-n", ns, key_id).returncode == 0
    left = k8s_cluster.kubectl("get", "secrets", "-n", ns, "-l", "skyroute.io/tenant", "-o", "name")
    assert left.stdout.strip() == ""
