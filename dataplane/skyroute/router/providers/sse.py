"""A Server-Sent Events decoder that follows the WHATWG event-stream rules.

All three provider families stream SSE, and self-hosted servers speaking
their wire formats vary in how they frame it. The rules applied here are the
HTML standard's (section 9.2.6, "Interpreting an event stream"):

- lines end with CRLF, LF or a lone CR, also when a CRLF is split across two
  reads;
- one leading byte order mark is ignored, even when it arrives a byte at a
  time;
- a line starting with ``:`` is a comment; ``field: value`` drops one space
  after the colon; a line without a colon is a field with an empty value;
- every ``data`` line appends its value; a blank line dispatches the event
  with its data lines joined by LF (an event with no ``data`` line is not
  dispatched); ``event``, ``id`` and ``retry`` are read past, since the
  adapters need only the data (Anthropic repeats the event name inside it).

One deliberate leniency: at the end of the stream the standard discards an
event that lacked its final blank line; :meth:`SSEDecoder.close` dispatches
it, because some servers end the stream right after the last ``data`` line
and the adapters decide themselves whether the stream ended complete.

It is fed whatever bytes the socket delivered (``readany``), not lines, so
one await can yield many events and a long line is never limited by
aiohttp's ``readline`` buffer size. An event or line longer than
``max_event_bytes`` is a ``BAD_RESPONSE`` rather than unbounded memory.
Working on bytes is exact: CR and LF never occur inside a UTF-8 sequence.
"""

from __future__ import annotations

from skyroute.router.providers.types import BAD_RESPONSE, ProviderError

BOM = b"\xef\xbb\xbf"
MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEDecoder:
    __slots__ = ("_buf", "_data", "_max", "_size", "_skip_lf", "_start")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buf = b""  # an unfinished line (LF-normalised)
        self._data: list[bytes] = []  # the current event's data lines
        self._size = 0  # bytes held in _data
        self._max = max_event_bytes
        self._skip_lf = False  # the last read ended with CR: a leading LF completes a CRLF
        self._start = True  # still looking for the leading BOM

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the data payloads of the events they completed."""
        if self._start:
            chunk = self._buf + chunk
            self._buf = b""
            if len(chunk) < len(BOM) and BOM.startswith(chunk):
                self._buf = chunk  # maybe the start of a BOM: wait for more
                return []
            self._start = False
            if chunk.startswith(BOM):
                chunk = chunk[len(BOM) :]
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if not chunk:
            return []
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            self._skip_lf = False
        buf = self._buf + chunk if self._buf else chunk
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        if len(self._buf) > self._max:
            raise ProviderError(BAD_RESPONSE, f"sse: a line longer than {self._max} bytes")
        out: list[bytes] = []
        data = self._data
        for line in lines:
            if line.startswith(b"data:"):  # the common line, inline
                value = line[6:] if line[5:6] == b" " else line[5:]
                self._size += len(value) + 1
                if self._size > self._max:
                    raise ProviderError(
                        BAD_RESPONSE, f"sse: an event larger than {self._max} bytes"
                    )
                data.append(value)
            elif not line:
                if data:
                    out.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data = self._data = []
                    self._size = 0
            else:
                self._other(line)
        return out

    def _other(self, line: bytes) -> None:
        """A line that is neither ``data:...`` nor blank: a comment, a field, bare ``data``."""
        if line == b"data":  # a field without a colon has an empty value
            self._data.append(b"")
            self._size += 1
        # Comments, event, id, retry and unknown fields: nothing the adapters need.

    def close(self) -> list[bytes]:
        """End of stream: dispatch an event that lacked its final blank line."""
        out = self.feed(b"\n\n")
        self._buf, self._data, self._size = b"", [], 0
        self._skip_lf, self._start = False, True
        return out
