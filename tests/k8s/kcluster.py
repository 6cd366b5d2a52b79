"""Handle on the envtest-style API server used by tests/k8s (see conftest.py).

Kept out of conftest.py so test modules can import ``Cluster`` by a unique
module name (two conftest.py files in one session would clash on import).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack" / "cluster"
CHART = REPO / "deploy" / "helm" / "skyroute"


def cluster_env(name: str) -> str:
    """A value computed by hack/cluster/env.sh (one source of truth for paths)."""
    out = subprocess.run(
        ["bash", "-c", f'. "{HACK}/env.sh" && printf %s "${name}"'],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@dataclass(frozen=True)
class Cluster:
    """A running API server: where its kubeconfig and kubectl are."""

    kubeconfig: Path
    kubectl_bin: Path
    start_seconds: float

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; with ``check`` a failure raises with its stderr."""
        proc = subprocess.run(
            [str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
            )
        return proc


def cluster_script(
    name: str, *args: str, state_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run hack/cluster/<name> (bins.sh, up.sh, down.sh), optionally for one state dir."""
    env = dict(os.environ)
    if state_dir is not None:
        env["SKYROUTE_CLUSTER_DIR"] = str(state_dir)
    return subprocess.run(
        ["bash", str(HACK / name), *args], env=env, capture_output=True, text=True, timeout=300
    )


class HelmError(AssertionError):
    """helm exited non-zero; the message holds its stderr."""


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the helm that hack/cluster/bins.sh built; a non-zero exit raises HelmError.

    Helm's config, cache and data homes are a temporary folder, so a test never
    reads or writes a developer's ~/.config/helm (repositories, registry logins).
    """
    binary = Path(cluster_env("HELM"))
    if not binary.is_file():
        raise AssertionError(
            f"helm not built at {binary}: run `make cluster-bins` (make test does)"
        )
    home = Path(tempfile.gettempdir()) / f"skyroute-helm-home-{os.getuid()}"
    env = dict(os.environ)
    for var in ("HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=180, cwd=REPO, env=env
    )
    if proc.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc
