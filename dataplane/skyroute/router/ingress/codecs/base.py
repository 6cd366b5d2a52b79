"""What a codec and a transport's sink promise the pipeline.

A codec is one API's wire format. It decodes the API's request into an
:class:`~skyroute.router.ingress.types.Inbound`, and encodes everything the
pipeline answers with: a unary answer, an error (in the API's own error
format), a dry-run decision, and a stream's frames (through a
:class:`StreamEncoder`, which holds one stream's framing state).

A sink is the transport's end of one request: it sends a whole reply, or
opens a stream, writes its frames and closes it. Codecs never touch sockets
and sinks never look inside what they send, so a new API is a codec and a
new transport is a sink.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from skyroute.router.engine import Served
from skyroute.router.ingress.types import Answer, Inbound, Prepared, Rejection

W_contra = TypeVar("W_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)
F_co = TypeVar("F_co", covariant=True)
R_contra = TypeVar("R_contra", contravariant=True)
F_contra = TypeVar("F_contra", contravariant=True)


class StreamEncoder(Protocol[F_co]):
    """One stream's frames in an API's framing."""

    def head(self, facts: Mapping[str, str]) -> Mapping[str, str]:
        """Headers (or metadata) to open the stream with."""
        ...

    def start(self, model: str) -> Sequence[F_co]:
        """The frames that open the stream, once the answering model is known."""
        ...

    def text(self, text: str) -> F_co: ...

    def tool_call(self, call: dict[str, Any]) -> F_co: ...

    def thinking(self, block: dict[str, Any]) -> F_co | None:
        """An Anthropic thinking block, or None where the API has no such thing."""
        ...

    def done(self, answer: Answer) -> Sequence[F_co]:
        """The frames that end a complete stream."""
        ...

    def cut(self, served: Served) -> F_co:
        """The frame that ends a stream which failed after it started."""
        ...


class Codec(Protocol[W_contra, R_co, F_co]):
    """One API: its request decoder and its encoders."""

    def decode(self, wire: W_contra) -> Inbound:
        """The internal request, or raise :class:`Rejection` (malformed input)."""
        ...

    def answer(self, answer: Answer) -> R_co: ...

    def reject(self, rejection: Rejection) -> R_co: ...

    def explained(self, prepared: Prepared) -> R_co:
        """The decision of a dry run (Explain)."""
        ...

    def stream(self, prepared: Prepared) -> StreamEncoder[F_co]: ...


class Sink(Protocol[R_contra, F_contra]):
    """A transport's end of one request."""

    async def send(self, reply: R_contra) -> None:
        """A whole reply: an answer, an error or a decision."""
        ...

    async def open(self, head: Mapping[str, str]) -> None: ...

    async def write(self, frame: F_contra) -> None: ...

    async def close(self, cut: bool = False) -> None:
        """End the stream; ``cut`` when it failed after it started."""
        ...
