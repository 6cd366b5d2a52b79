"""Start and stop the demo's real processes: control plane, two routers, provider simulator.

The demo is only convincing if it exercises the same processes a deployment
runs, talking over real sockets: so each role is started as its own
``python -m skyroute.cli.main <role>`` subprocess (the console script's code
path, without depending on the script being on PATH), with its output in a
log file under ``demo-out/logs/`` for when something goes wrong.

Ports: the control plane and routers take free ports chosen here; the
simulator must listen where the example pools point (127.0.0.1:8790), so that
port is checked first and a clear error names it when it is taken.

Readiness is observed, never assumed: the simulator when its port accepts
connections, the routers when ``GET /readyz`` answers 200 (a snapshot from the
control plane is loaded). A process that exits while we wait is reported with
the tail of its log. Teardown sends SIGTERM, waits, then SIGKILLs stragglers;
it runs on every exit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

from skyroute.control.distribution.tls import create as create_certs

HOST = "127.0.0.1"
SIMULATOR_PORT = 8790


class DemoError(RuntimeError):
    """The demo cannot run; the message says what and where."""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this process handed out before: the
    kernel may give the same ephemeral port to two binds in a row once the first
    socket is closed, and two of the demo's servers would then collide."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` (SO_REUSEADDR, as aiohttp sets: sockets
    left in TIME-WAIT by a previous run do not count as taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


@dataclass(slots=True)
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def exited(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass(slots=True)
class Stack:
    """The running processes and where they listen."""

    source: Path
    scenario: Path
    out_dir: Path
    simulator_port: int = SIMULATOR_PORT  # where the source's pools point
    control: str = ""
    admin: str = ""
    simulator: str = ""
    router_http: list[str] = field(default_factory=list)
    router_grpc: list[str] = field(default_factory=list)
    # Extra arguments for every router (the benchmark's ``--workers N``).
    router_args: tuple[str, ...] = ()
    procs: list[Proc] = field(default_factory=list)
    tls_dir: Path = Path()

    def _proc(self, name: str, *args: str) -> Proc:
        logs = self.out_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return Proc(name, [sys.executable, "-m", "skyroute.cli.main", *args], logs / f"{name}.log")

    def start(self, routers: int = 2) -> None:
        if not port_is_free(self.simulator_port):
            raise DemoError(
                f"port {HOST}:{self.simulator_port} is taken; the provider simulator must "
                f"listen there because the pools in {self.source} point to it. Stop whatever "
                "listens there (another `skyroute providers`?) and retry."
            )
        self.simulator = f"{HOST}:{self.simulator_port}"
        self.control = f"{HOST}:{free_port()}"
        self.admin = f"{HOST}:{free_port()}"
        # TLS on, as in production: a private CA, the control plane's certificate and
        # one client certificate per router (`skyroute certs create`).
        rids = [f"router-{chr(ord('a') + i)}" for i in range(routers)]
        self.tls_dir = self.out_dir / "tls"
        create_certs(self.tls_dir, hosts=["localhost", HOST], routers=rids, admins=["admin"])
        self.procs.append(
            self._proc(
                "providers",
                "providers",
                "--listen",
                self.simulator,
                "--scenario",
                str(self.scenario),
            )
        )
        self.procs.append(
            self._proc(
                "control",
                "control",
                "--source",
                str(self.source),
                "--listen",
                self.control,
                "--admin",
                self.admin,
                "--tls-dir",
                str(self.tls_dir),
            )
        )
        for rid in rids:
            http = f"{HOST}:{free_port()}"
            grpc = f"{HOST}:{free_port()}"
            self.router_http.append(http)
            self.router_grpc.append(grpc)
            self.procs.append(
                self._proc(
                    rid,
                    "router",
                    "--control",
                    self.control,
                    "--grpc",
                    grpc,
                    "--http",
                    http,
                    "--admin-listen",  # /metrics, /debug/status: never the client port
                    f"{HOST}:{free_port()}",
                    "--id",
                    rid,
                    "--control-ca",
                    str(self.tls_dir / "ca.crt"),
                    "--identity",
                    str(self.tls_dir / "clients" / rid),
                    *self.router_args,
                )
            )
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "SKYROUTE_LOG_LEVEL": os.environ.get("SKYROUTE_LOG_LEVEL", "WARNING"),
        }
        for p in self.procs:
            p.start(env)

    def check_alive(self) -> None:
        for p in self.procs:
            code = p.exited()
            if code is not None:
                raise DemoError(
                    f"`skyroute {' '.join(p.argv[3:5])}` ({p.name}) exited with "
                    f"code {code}; last lines of {p.log_path}:\n{p.log_tail()}"
                )

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until the simulator accepts connections and every router's /readyz is 200."""
        deadline = time.monotonic() + timeout_s
        pending = {"providers": self.simulator, **{f"router {h}": h for h in self.router_http}}
        async with aiohttp.ClientSession() as session:
            while pending:
                self.check_alive()
                for name, addr in list(pending.items()):
                    if await _ready(session, name, addr):
                        del pending[name]
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"not ready after {timeout_s:.0f} s: {', '.join(sorted(pending))} "
                        f"(logs in {self.out_dir / 'logs'})"
                    )
                await asyncio.sleep(0.1)

    def stop(self, grace_s: float = 5.0) -> None:
        for p in self.procs:
            if p.popen is not None and p.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in self.procs:
            if p.popen is None:
                continue
            try:
                p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.popen.kill()
                p.popen.wait()
            if p.log_file is not None:
                p.log_file.close()


async def _ready(session: aiohttp.ClientSession, name: str, addr: str) -> bool:
    if name == "providers":
        host, _, port = addr.rpartition(":")
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    try:
        async with session.get(
            f"http://{addr}/readyz", timeout=aiohttp.ClientTimeout(total=1)
        ) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False
