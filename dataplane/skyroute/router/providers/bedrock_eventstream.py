"""AWS's binary event stream (``application/vnd.amazon.eventstream``), cut into payloads.

Bedrock's ConverseStream answers with the AWS event-stream framing, not SSE:
each message is a prelude (total and header lengths, with a CRC32), typed
headers, a payload and a CRC32 of the whole message. botocore's
:class:`~botocore.eventstream.EventStreamBuffer` parses it and checks both
checksums and the size limits (128 KiB of headers, 24 MiB of payload), so a
corrupt or oversized frame is a BAD_RESPONSE here, never unbounded memory.

The headers say what a message is: ``:message-type`` ``event`` with
``:event-type`` (``messageStart``, ``contentBlockDelta``...), ``exception``
with ``:exception-type`` (``throttlingException``...), or ``error`` with
``:error-code`` and ``:error-message``. Each message becomes one payload in
the shape boto3 gives its caller, ``{"<type>": <payload JSON>}``, built by
concatenation (the type is checked to be a plain name, the payload is not
parsed here), and an ``error`` message becomes ``{"error": {"code",
"message"}}``. The adapter (:mod:`.bedrock_adapter`) reads those.
"""

from __future__ import annotations

import re
import struct

import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from skyroute.router.providers.types import BAD_RESPONSE, ProviderError

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


class EventStreamDecoder:
    """The :class:`~.common.Framing` of the ``bedrock`` family."""

    __slots__ = ("_buffer", "_pending", "_seen")

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._seen = False  # a whole message has been parsed
        self._pending = 0  # bytes fed that no whole message has used yet

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer.add_data(chunk)
        self._pending += len(chunk)
        out: list[bytes] = []
        try:
            for message in self._buffer:
                self._pending -= message.prelude.total_length
                out.append(payload(message))
        except (ParserError, struct.error, UnicodeDecodeError, ValueError) as exc:
            raise ProviderError(
                BAD_RESPONSE, f"bedrock: bad event-stream frame: {type(exc).__name__}: {exc}"[:300]
            ) from None
        self._seen = self._seen or bool(out)
        return out

    def close(self) -> list[bytes]:
        """End of body. Bytes that never made one whole frame are not an event stream at all;
        a partial frame after whole ones is a cut, which the adapter's end check reports."""
        if not self._seen and self._pending:
            raise ProviderError(BAD_RESPONSE, "bedrock: the body is not an AWS event stream")
        return []


def payload(message: EventStreamMessage) -> bytes:
    """``{"<event or exception type>": <payload>}`` (or ``{"error": ...}``) for one message."""
    headers = message.headers
    kind = headers.get(":message-type")
    if kind == "event":
        name = headers.get(":event-type")
    elif kind == "exception":
        name = headers.get(":exception-type")
    elif kind == "error":
        return orjson.dumps(
            {
                "error": {
                    "code": str(headers.get(":error-code", "")),
                    "message": str(headers.get(":error-message", "")),
                }
            }
        )
    else:
        raise ValueError(f":message-type {kind!r} is not event, exception or error")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"event type {name!r} is not a name")
    return b'{"' + name.encode() + b'":' + (message.payload or b"{}") + b"}"
