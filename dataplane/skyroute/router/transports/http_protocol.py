"""The HTTP door's connection level: malformed HTTP answered as JSON, and a header deadline.

Malformed HTTP (a bad request line, a header line over aiohttp's 8190 bytes,
a non-numeric ``Content-Length``) never reaches a door: aiohttp answers it
from its protocol handler, by default as plain text quoting the input back.
:class:`Runner` serves the client port with a handler that answers it as
JSON in OpenAI's error format (no door is known before a request head
parses; a later fault of a known path uses that door's, :func:`door_codec`),
naming the kind of fault and never echoing the input, and that closes a
connection which has not sent one whole request head within
``--header-timeout`` seconds (slow headers would hold a socket for aiohttp's
keep-alive timeout, an hour, otherwise). Later requests on a kept-alive
connection are bounded by aiohttp's keep-alive timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from skyroute.router.ingress.codecs.anthropic_messages import AnthropicMessages
from skyroute.router.ingress.codecs.base import Codec
from skyroute.router.ingress.codecs.openai_chat import HttpIn, HttpReply, OpenAIChat
from skyroute.router.ingress.types import INVALID, UPSTREAM, Rejection

_CHAT = OpenAIChat()
_MESSAGES = AnthropicMessages()


def door_codec(path: str) -> Codec[HttpIn, HttpReply, bytes]:
    """The codec whose error format a path's answers use."""
    return _MESSAGES if path.startswith("/v1/messages") else _CHAT


class _Handler(RequestHandler):
    """aiohttp's request handler with JSON protocol errors and a deadline for the head."""

    __slots__ = ("_head_timer",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        seconds = getattr(self._manager, "header_timeout_s", 0.0)
        self._head_timer: asyncio.TimerHandle | None = (
            self._loop.call_later(seconds, self._head_deadline) if seconds > 0 else None
        )

    def _head_deadline(self) -> None:
        if self._request_count == 0 and self.transport is not None:
            self.transport.close()  # no whole request head in time

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs; closes after
        if status == 400:
            what = type(exc).__name__ if exc is not None else "malformed request"
            rejection = Rejection(400, f"malformed HTTP request ({what})", INVALID, code=what)
        else:
            rejection = Rejection(status, "the router could not answer this request", UPSTREAM)
        reply = door_codec(_path(request)).reject(rejection)
        resp = web.Response(status=plain.status, body=reply.body, content_type=reply.content_type)
        resp.force_close()
        return resp


def _path(request: BaseRequest) -> str:
    try:
        return request.path
    except Exception:  # a request line too broken to have a path
        return "/"


class _Server(web.Server):
    """aiohttp's server, making :class:`_Handler` connections."""

    header_timeout_s: float = 0.0

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An ``AppRunner`` whose connections answer malformed HTTP as JSON, heads in time."""

    def __init__(self, app: web.Application, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout_s = header_timeout_s

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        assert isinstance(server, _Server)
        server.header_timeout_s = self._header_timeout_s
        return server
