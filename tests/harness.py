"""Process harness shared by the suites: real skyroute processes on loopback.

Integration tests start the real console-script roles (``skyroute
providers``, ``skyroute control``, ``skyroute router``) as subprocesses on
free 127.0.0.1 ports, wait for them to answer, and stop them afterwards.
Nothing of skyroute's own is mocked; the provider simulator stands in for
the LLM providers this machine cannot reach.

The processes log in their default format, one JSON object per line.
``Proc.events()`` parses those lines; ``Proc.output()`` shows them as logfmt
(``event=push router=r1 ...``), the form that tests match substrings in and
that reads well in a failure message.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# One OpenAI-family pool on the simulator (``{SIM}``): the smallest thing a policy can route to.
BASE_POOL = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: base}
spec:
  models:
    - name: base-model
      provider: openai
      endpoint: "{SIM}/openai/v1"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
"""


def keys_cli(*args: str) -> str:
    """``skyroute keys ARGS`` as an operator runs it; the last line it prints (a new key)."""
    r = subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", "keys", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port never handed out before in this process (two binds in a row can
    get the same ephemeral port once the first socket is closed)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: {last}")


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and not any(ch in text for ch in ' "=\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def _log_record(line: str) -> dict[str, object] | None:
    """A JSON log line as a dict (None for any other line, e.g. the simulator's)."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "event" in record else None


class Proc:
    """One skyroute role as a subprocess, its output kept in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.log = Path(tempfile.mkstemp(prefix=f"skyroute-{name}-", suffix=".log")[1])
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.p: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        fh = self.log.open("ab")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "skyroute.cli.main", *self.args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=REPO,
        )
        fh.close()

    def raw(self) -> str:
        """Everything the process wrote to stdout and stderr, as written."""
        return self.log.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, object]]:
        """The JSON log lines, parsed; only those whose ``event`` is ``name`` if given."""
        records = (_log_record(line) for line in self.raw().split("\n"))
        return [r for r in records if r is not None and (name is None or r["event"] == name)]

    def output(self) -> str:
        """The output with each JSON log line shown as logfmt (``key=value ...``)."""
        lines = []
        for line in self.raw().split("\n"):
            record = _log_record(line)
            lines.append(
                line
                if record is None
                else " ".join(f"{k}={_logfmt_value(v)}" for k, v in record.items())
            )
        return "\n".join(lines)

    def stop(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)

    def kill(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None


class Stack:
    """Simulator + control plane + routers, wired together on free ports.

    ``files`` maps file names to YAML text in which ``{SIM}`` stands for the
    simulator's base URL; they are written to a fresh source folder that the
    control plane watches (``self.source``).
    """

    def __init__(
        self,
        procs: list[Proc],
        tmp: Path,
        files: dict[str, str],
        scenario: str,
        routers: int = 1,
        router_args: list[str] | None = None,
        open_without_tenants: bool = True,
        simulator_args: list[str] | None = None,
    ) -> None:
        self.procs = procs
        self.sim_port = free_port()
        self.sim = f"http://127.0.0.1:{self.sim_port}"
        scen = tmp / "scenario.yaml"
        scen.write_text(scenario)
        self.source = tmp / "policies"
        self.source.mkdir()
        for name, text in files.items():
            self.write(name, text)
        self.simulator = self.start(
            "providers",
            [
                "providers",
                "--listen",
                f"127.0.0.1:{self.sim_port}",
                "--scenario",
                str(scen),
                *(simulator_args or []),
            ],
        )
        self.control_addr = f"127.0.0.1:{free_port()}"
        self.admin = f"http://127.0.0.1:{free_port()}"
        self.control = self.start("control", self.control_args())
        # Routers are closed by default (no Tenant: every caller refused). The harness's are
        # a local experiment: open while the folder declares no Tenant, keys once it does.
        opened = ["--open-without-tenants"] if open_without_tenants else []
        self.router_args = [*opened, *(router_args or [])]
        self.routers: list[tuple[Proc, str, str]] = []
        # Each router's admin listener (/metrics, /debug/status): never its client port.
        self.router_admins: list[str] = []
        for i in range(routers):
            g, h = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            a = f"127.0.0.1:{free_port()}"
            p = self.start(
                f"router-{i}",
                [
                    "router",
                    "--insecure",
                    "--control",
                    self.control_addr,
                    "--grpc",
                    g,
                    "--http",
                    h,
                    "--admin-listen",
                    a,
                    "--id",
                    f"router-{i}",
                    *self.router_args,
                ],
            )
            self.routers.append((p, g, f"http://{h}"))
            self.router_admins.append(f"http://{a}")
        wait_until(lambda: http_get(self.sim + "/healthz")[0] == 200, what="simulator")
        for p, _, url in self.routers:
            wait_until(
                lambda url=url: http_get(url + "/readyz")[0] == 200,
                what=f"{p.name} ready\n{self.control.output()}\n{p.output()}",
            )

    def control_args(self) -> list[str]:
        return [
            "control",
            "--insecure",
            "--source",
            str(self.source),
            "--listen",
            self.control_addr,
            "--admin",
            self.admin.removeprefix("http://"),
        ]

    def start(self, name: str, args: list[str]) -> Proc:
        p = Proc(name, args)
        self.procs.append(p)
        return p

    def write(self, name: str, text: str) -> None:
        path = self.source / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text.replace("{SIM}", self.sim))
        tmp.rename(path)  # atomic, as a git checkout or ConfigMap update would be

    def status(self) -> dict:  # type: ignore[type-arg]
        import json

        code, body = http_get(self.admin + "/debug/status")
        assert code == 200, body
        return json.loads(body)

    def router_version(self, i: int = 0) -> str:
        code, body = http_get(self.routers[i][2] + "/readyz")
        return body.decode().split()[-1] if code == 200 else ""

    def router_status(self, i: int = 0) -> dict:  # type: ignore[type-arg]
        import json

        return json.loads(http_get(self.router_admins[i] + "/debug/status")[1])

    def put_scenario(self, text: str) -> None:
        req = urllib.request.Request(self.sim + "/_sim/scenario", data=text.encode(), method="PUT")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200

    def sim_stats(self) -> dict:  # type: ignore[type-arg]
        import json

        return json.loads(http_get(self.sim + "/_sim/stats")[1])

    def reset_sim(self) -> None:
        req = urllib.request.Request(self.sim + "/_sim/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` in os.environ (the processes a Stack starts inherit it), put back afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def running_stack(tmp: Path, files: dict[str, str], scenario: str, **kw: Any) -> Iterator[Stack]:
    """A :class:`Stack` for a ``with`` block (a module fixture's body), stopped after it."""
    procs: list[Proc] = []
    try:
        yield Stack(procs, tmp, files, scenario, **kw)
    finally:
        for p in reversed(procs):
            p.stop()


def control_status(stack: Stack, *flags: str) -> str:
    """``skyroute status`` as an operator runs it, against the stack's control plane."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "status",
            "--control",
            stack.control_addr,
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout
