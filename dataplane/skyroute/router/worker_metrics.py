"""``/metrics`` of a router running as several workers: every worker's figures in one scrape.

With ``--workers N`` the kernel hands a scrape of the shared HTTP port to
any one worker, and each worker's instruments count only its own requests.
So each worker also serves its own exposition on a private loopback port
(chosen by the supervisor, one per worker), and the worker that receives
``GET /metrics`` fetches its siblings' and merges them: each sample gains a
``skyroute_worker`` label (so no two series collide, and ``sum by`` over
the usual labels gives the pod's figures), each family's ``# HELP`` and
``# TYPE`` appear once. A sibling that does not answer within a second is
left out of that scrape and counted in ``skyroute_router_worker_scrape_errors``
(a gauge appended to the merged text).

The same private ports carry cache invalidations between workers: each
worker's in-process cache is its own, so the worker that receives ``POST
/cache/invalidate`` on the admin port forwards it (with the caller's
``Authorization``) to every sibling's ``/cache/invalidate`` here
(:meth:`WorkerMetrics.fan_out`), which invalidates that worker alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import aiohttp
from aiohttp import web

from skyroute.router.telemetry import prometheus_text

LABEL = "skyroute_worker"


def _labelled(line: str, worker: str) -> str:
    """A sample line with ``skyroute_worker="<worker>"`` as its first label."""
    label = f'{LABEL}="{worker}"'
    brace, space = line.find("{"), line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        rest = line[brace + 1 :]
        return f"{line[:brace]}{{{label}{'' if rest.startswith('}') else ','}{rest}"
    return f"{line[:space]}{{{label}}}{line[space:]}"


def merge(expositions: Iterable[tuple[str, str]]) -> str:
    """Prometheus text expositions, one per (worker, text), as one exposition."""
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in expositions:
        family = ""
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                family = line.split(" ", 3)[2]
                head = headers.setdefault(family, [])
                if line not in head:
                    head.append(line)
            elif line and not line.startswith("#"):
                headers.setdefault(family, [])
                samples.setdefault(family, []).append(_labelled(line, worker))
    out: list[str] = []
    for family, head in headers.items():
        out += head
        out += samples.get(family, [])
    return "\n".join(out) + "\n"


class WorkerMetrics:
    """Worker ``index`` of ``peers`` (each a loopback HOST:PORT serving its own exposition)."""

    def __init__(
        self,
        index: int,
        peers: list[str],
        mount: Callable[[web.Application], None] | None = None,
    ) -> None:
        self.index = index
        self.peers = peers
        self._mount = mount  # adds the private port's other routes (cache invalidation)
        self.errors = 0
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def local(request: web.Request) -> web.Response:
            body, content_type = prometheus_text()
            return web.Response(body=body, headers={"Content-Type": content_type})

        app = web.Application()
        app.router.add_get("/metrics", local)
        if self._mount is not None:
            self._mount(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host, _, port = self.peers[self.index].rpartition(":")
        await web.TCPSite(self._runner, host, int(port)).start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _fetch(self, addr: str) -> str | None:
        assert self._session is not None
        try:
            async with self._session.get(f"http://{addr}/metrics") as resp:
                return await resp.text() if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def fan_out(self, body: bytes, authorization: str) -> tuple[int, int]:
        """``body`` to every sibling's ``/cache/invalidate``: (entries they removed, siblings
        that did not confirm)."""
        assert self._session is not None
        session = self._session
        headers = {"Authorization": authorization, "Content-Type": "application/json"}

        async def one(addr: str) -> int | None:
            try:
                async with session.post(
                    f"http://{addr}/cache/invalidate", data=body, headers=headers
                ) as resp:
                    if resp.status != 200:
                        return None
                    removed = (await resp.json()).get("invalidated")
                    return removed if isinstance(removed, int) else None
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                return None

        others = [self.peers[i] for i in range(len(self.peers)) if i != self.index]
        got = await asyncio.gather(*(one(a) for a in others))
        return sum(n for n in got if n is not None), sum(n is None for n in got)

    async def exposition(self) -> tuple[bytes, str]:
        """Every worker's exposition, merged (this one's read in process)."""
        own, content_type = prometheus_text()
        others = [i for i in range(len(self.peers)) if i != self.index]
        texts = await asyncio.gather(*(self._fetch(self.peers[i]) for i in others))
        parts = [(str(self.index), own.decode())]
        for i, text in zip(others, texts, strict=True):
            if text is None:
                self.errors += 1
            else:
                parts.append((str(i), text))
        merged = merge(parts)
        merged += (
            "# TYPE skyroute_router_worker_scrape_errors gauge\n"
            f'skyroute_router_worker_scrape_errors{{{LABEL}="{self.index}"}} {self.errors}\n'
        )
        return merged.encode(), content_type
