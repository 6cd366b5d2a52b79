"""Helpers for the observability tests: scraping, an OTLP receiver, a recording upstream."""

from __future__ import annotations

import asyncio
import gzip
import threading

import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from harness import http_get


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of ``url`` (a /metrics endpoint) as (name, labels, value)."""
    code, body = http_get(url, timeout=5)
    assert code == 200, body
    return [
        (s.name, dict(s.labels), s.value)
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
    ]


def total(
    samples: list[tuple[str, dict[str, str], float]],
    name: str,
    by: tuple[str, ...] = (),
    **match: str,
) -> dict[tuple[str, ...], float]:
    """Sum of ``name`` samples whose labels include ``match``, grouped by the ``by`` labels."""
    out: dict[tuple[str, ...], float] = {}
    for n, labels, value in samples:
        if n != name or any(labels.get(k) != v for k, v in match.items()):
            continue
        key = tuple(labels.get(k, "") for k in by)
        out[key] = out.get(key, 0.0) + value
    return out


class Loopback:
    """An aiohttp app served from a background thread on 127.0.0.1 (port 0)."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        ready = threading.Event()
        self.port = 0

        async def start() -> None:
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = self.runner.addresses[0][1]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10), "loopback server did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class OTLPReceiver(Loopback):
    """OTLP/HTTP (protobuf) receiver: keeps every span and every raw export body."""

    def __init__(self) -> None:
        self.spans: list[trace_pb2.Span] = []
        self.bodies: list[bytes] = []
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._other)
        app.router.add_post("/v1/logs", self._other)
        super().__init__(app)

    async def _body(self, request: web.Request) -> bytes:
        raw = await request.read()
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        self.bodies.append(raw)
        return raw

    async def _traces(self, request: web.Request) -> web.Response:
        msg = trace_service_pb2.ExportTraceServiceRequest.FromString(await self._body(request))
        for rs in msg.resource_spans:
            for ss in rs.scope_spans:
                self.spans.extend(ss.spans)
        return web.Response(
            body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def _other(self, request: web.Request) -> web.Response:
        await self._body(request)
        return web.Response(body=b"", content_type="application/x-protobuf")


def attrs(span: trace_pb2.Span) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in span.attributes:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


class RecordingProxy(Loopback):
    """An upstream stand-in: records request headers, forwards to ``target`` (the simulator)."""

    def __init__(self) -> None:
        self.target = ""
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        super().__init__(app)

    async def _forward(self, request: web.Request) -> web.Response:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        body = await request.read()
        self.bodies.append(body)
        skip = {"host", "content-length", "transfer-encoding"}
        fwd = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with (
            aiohttp.ClientSession() as s,
            s.request(request.method, self.target + request.path_qs, data=body, headers=fwd) as r,
        ):
            payload = await r.read()
            ctype = r.headers.get("content-type", "application/json")
            return web.Response(status=r.status, body=payload, headers={"Content-Type": ctype})
