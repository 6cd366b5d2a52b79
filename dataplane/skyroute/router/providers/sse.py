"""A minimal, allocation-light Server-Sent Events decoder.

All three provider families stream SSE, with small differences that a
line-by-line reader would trip on: OpenAI ends with ``data: [DONE]``,
Anthropic names its events (``event: content_block_delta``) but repeats the
name inside the JSON, Gemini frames with CRLF. Only the ``data`` field
matters to the adapters, so this decoder returns the data of each complete
event (multi-line data joined with newlines, as the SSE spec says) and
ignores ``event:``, ``id:``, ``retry:`` and comment lines.

It is fed whatever bytes the socket delivered (``readany``), not lines, so
one await can yield many events and a long line is never limited by
aiohttp's ``readline`` buffer size.
"""

from __future__ import annotations


class SSEDecoder:
    __slots__ = ("_buf", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the data payloads of the events they completed."""
        buf = self._buf + chunk if self._buf else chunk
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        out: list[bytes] = []
        data = self._data
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    out.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data = self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
        return out

    def close(self) -> list[bytes]:
        """End of stream: flush an event that lacked its final blank line."""
        tail = self._buf.rstrip(b"\r")
        self._buf = b""
        if tail.startswith(b"data:"):
            value = tail[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        out = [b"\n".join(self._data)] if self._data else []
        self._data = []
        return out
