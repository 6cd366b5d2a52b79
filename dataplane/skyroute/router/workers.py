"""``skyroute router --workers N``: N router processes sharing the same two ports.

One Python process serves on one core. To use every core a container is
given, the router runs as N independent worker processes, each a whole
router (its own snapshot subscription, engine, outcome reporter and node id
``<id>-w<i>``), all bound to the same gRPC and HTTP ports with
``SO_REUSEPORT``: the kernel spreads incoming connections over them. The
parent only supervises: it forwards SIGTERM/SIGINT to every worker, and when
one worker exits it stops the others and exits with that worker's code, so
the container restarts as a whole (a half-dead pod never stays Ready).
Workers die with the parent (``PR_SET_PDEATHSIG``) even if it is SIGKILLed.
Each worker also serves its own ``/metrics`` on a private loopback port, and
``/metrics`` on the shared port merges them all (:mod:`.worker_metrics`).

``--workers auto`` is the container's CPU limit, read from cgroups: v2
``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) along the
process's cgroup path, else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
(quota ``-1`` is no limit), rounded up; with no limit, ``os.cpu_count()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
_PR_SET_PDEATHSIG = 1


def _v2_limit(root: Path, rel: str) -> float | None:
    """The smallest ``cpu.max`` quota/period from the process's cgroup up to the root."""
    best: float | None = None
    path = root / rel.strip("/")
    while True:
        try:
            quota, period = (path / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            quota, period = "max", "1"
        if quota != "max" and float(period) > 0:
            limit = float(quota) / float(period)
            best = limit if best is None else min(best, limit)
        if path == root or root not in path.parents:
            return best
        path = path.parent


def _v1_limit(root: Path, controllers: str, rel: str) -> float | None:
    for name in (controllers, "cpu,cpuacct", "cpu"):
        base = root / name
        for path in (base / rel.strip("/"), base):
            try:
                quota = float((path / "cpu.cfs_quota_us").read_text())
                period = float((path / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            return quota / period if quota > 0 and period > 0 else None
    return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs the cgroup allows this process (e.g. 1.5), or None when unlimited or unknown."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = ["0::/"]
    v1: tuple[str, str] | None = None
    for line in lines:
        _, controllers, rel = [*line.split(":", 2), "", ""][:3]
        if controllers == "":
            limit = _v2_limit(root, rel)
            if limit is not None:
                return limit
        elif "cpu" in controllers.split(","):
            v1 = (controllers, rel)
    if (root / "cpu.max").exists():
        return _v2_limit(root, "/")
    return _v1_limit(root, *v1) if v1 else _v1_limit(root, "cpu", "/")


def resolve(spec: str, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The worker count for ``--workers``: a positive integer, or ``auto`` (see module doc)."""
    if spec == "auto":
        limit = cgroup_cpu_limit(root, proc_cgroup)
        if limit is not None:
            return max(1, math.ceil(limit - 1e-9))
        return max(1, os.cpu_count() or 1)
    try:
        n = int(spec)
    except ValueError:
        n = 0
    if n < 1:
        raise SystemExit(
            f"skyroute router: --workers must be a positive integer or auto, not {spec!r}"
        )
    return n


def worker_argv(argv: Sequence[str], index: int, peers: Sequence[str] = ()) -> list[str]:
    """The parent's ``router`` arguments for worker ``index``: one process, shared ports.

    ``peers``: every worker's private loopback address for its own ``/metrics``.
    """
    out: list[str] = []
    it = iter(argv)
    node_id = ""
    for arg in it:
        if arg in ("--workers", "--id"):
            value = next(it, "")
            if arg == "--id":
                node_id = value
            continue
        if arg.startswith(("--workers=", "--id=")):
            if arg.startswith("--id="):
                node_id = arg.split("=", 1)[1]
            continue
        out.append(arg)
    out += ["--workers", "1", "--reuse-port", "--worker-index", str(index)]
    if peers:
        out += ["--worker-peers", ",".join(peers)]
    if node_id:
        out += ["--id", f"{node_id}-w{index}"]
    return out


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all sockets stay bound until every port is chosen,
    so the kernel cannot hand the same ephemeral port out twice."""
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(n)
        ]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(n: int, argv: Sequence[str]) -> int:
    """Run ``n`` workers of ``skyroute router <argv>`` until one exits; returns its code."""
    peers = [f"127.0.0.1:{port}" for port in _free_ports(n)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "skyroute.cli.main", "router", *worker_argv(argv, i, peers)],
            preexec_fn=_die_with_parent,
        )
        for i in range(n)
    ]
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = 0
    while True:
        done = [p for p in procs if p.poll() is not None]
        if done:
            code = done[0].returncode
            break
        time.sleep(0.2)
    if not stopping:  # a worker died on its own: take the others down too
        for p in procs:
            if p.poll() is None:
                p.terminate()
    for p in procs:
        p.wait()
        code = code or p.returncode
    return 0 if stopping and code in (0, -signal.SIGTERM, -signal.SIGINT) else code
