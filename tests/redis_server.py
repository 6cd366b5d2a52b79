"""A real redis-server for tests: Debian's package, a free loopback port, a temp dir.

Any suite can use it (the semantic cache, idempotency keys, ...)::

    from redis_server import start_redis

    server = start_redis()          # installs redis-server first if it is missing
    try:
        use(server.url)             # redis://127.0.0.1:<port>/0
        server.kill()               # an outage: the port stops answering
        server.start()              # back on the same port, empty
    finally:
        server.stop()

or the ``redis_server`` fixture in ``tests/cache/conftest.py``.

If ``/usr/bin/redis-server`` is missing, :func:`ensure_redis_server` runs
``apt-get update`` and ``apt-get install -y redis-server`` (the test
machines run as root; CI is a fresh machine). The install is serialized
with a file lock so concurrent test processes do not race apt. The server
runs without persistence (no RDB, no AOF), bound to 127.0.0.1 only, with
its working directory in a fresh temporary folder, and with a memory cap
and LRU eviction like a cache deployment would use.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness import free_port

REDIS_SERVER = Path("/usr/bin/redis-server")
_LOCK = Path(tempfile.gettempdir()) / "skyroute-redis-install.lock"


def ensure_redis_server() -> Path:
    """Path of redis-server, installing Debian's package if needed (root, apt-get)."""
    if REDIS_SERVER.exists():
        return REDIS_SERVER
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not REDIS_SERVER.exists():
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for cmd in (
                ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "redis-server"],
            ):
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
                if r.returncode != 0:
                    raise RuntimeError(
                        f"{' '.join(cmd)} failed ({r.returncode}):\n"
                        f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
                    )
    if not REDIS_SERVER.exists():
        raise RuntimeError("apt-get installed redis-server but /usr/bin/redis-server is missing")
    return REDIS_SERVER


class RedisProcess:
    """One redis-server process; :meth:`kill` and :meth:`start` simulate an outage."""

    def __init__(self, port: int | None = None, maxmemory: str = "256mb") -> None:
        self.binary = ensure_redis_server()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.maxmemory = maxmemory
        self.dir = Path(tempfile.mkdtemp(prefix="skyroute-redis-"))
        self.log = self.dir / "redis.log"
        self.p: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> RedisProcess:
        """Start (or restart, empty) on this object's port; waits until it answers PING."""
        if self.alive():
            return self
        self.p = subprocess.Popen(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--maxmemory",
                self.maxmemory,
                "--maxmemory-policy",
                "allkeys-lru",
                "--logfile",
                str(self.log),
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.p.returncode}:\n"
                    f"{self.log.read_text(errors='replace')[-2000:]}"
                )
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill(self) -> None:
        """SIGKILL: the abrupt outage (connections reset, port refuses)."""
        if self.p is not None and self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(maxmemory: str = "256mb") -> RedisProcess:
    """Start a fresh redis-server on a free 127.0.0.1 port; ``.url`` is its redis:// URL."""
    return RedisProcess(maxmemory=maxmemory).start()
