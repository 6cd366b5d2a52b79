"""Run the simulator in a background thread, for tests that need a real socket.

Tests across the project (the simulator's own, the provider adapters', the
router's) need a live provider on a free loopback port without paying for a
subprocess start. :class:`SimulatorThread` runs the same
:func:`skyroute.simulator.server.start` on its own event loop in a daemon
thread, binds port 0 so parallel runs never collide, and exposes the base URL
and the hooks (reset, stats, scenario replacement) as plain methods.

Usage::

    with SimulatorThread({"models": {"m": {"error_rate": 0}}}) as sim:
        client = openai.OpenAI(base_url=sim.url + "/openai/v1", api_key="x")
"""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from types import TracebackType
from typing import Any

import orjson

from skyroute.simulator.scenario import Scenario, load_scenario, parse_scenario
from skyroute.simulator.server import TlsListen, start


class SimulatorThread:
    """A simulator serving on 127.0.0.1:<free port> until :meth:`stop`."""

    def __init__(
        self,
        scenario: Scenario | dict[str, Any] | str | None = None,
        host: str = "127.0.0.1",
        tls: tuple[str, str] | None = None,
    ) -> None:
        """``tls``: (certificate, key) PEM files for a second, TLS listener (:attr:`tls_url`)."""
        if scenario is None:
            scenario = {}
        if isinstance(scenario, dict):
            scenario = parse_scenario(scenario, "SimulatorThread scenario")
        elif isinstance(scenario, str):
            scenario = load_scenario(scenario, "SimulatorThread scenario")
        self._scenario = scenario
        self._host = host
        self._tls = tls
        self.tls_port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="skyroute-sim", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("SimulatorThread was started without tls=(cert, key)")
        return f"https://{self._host}:{self.tls_port}"

    def start(self) -> SimulatorThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("simulator did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"simulator failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            tls = TlsListen(self._host, 0, *self._tls) if self._tls else None
            started = await start(self._scenario, self._host, 0, tls)
            runner, self.port, self.tls_port = started.runner, started.port, started.tls_port
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- hooks --------------------------------------------------------------

    def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return orjson.loads(resp.read())

    def reset(self) -> None:
        self._call("POST", "/_sim/reset", b"")

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sim/stats")
        return result

    def set_scenario(self, scenario: dict[str, Any] | str) -> None:
        body = orjson.dumps(scenario) if isinstance(scenario, dict) else scenario.encode()
        self._call("PUT", "/_sim/scenario", body)
