"""How every skyroute process writes its log: one event per line, JSON by default.

Each process is started by this CLI (``skyroute control``, ``operator``,
``router``), which calls :func:`configure` before handing over; the control
plane and the router only emit events (``skyroute.control.logs.event``,
``skyroute.router.logs.event``: the event name as the message, its fields
under the record attribute ``skyroute_fields``). The formatting lives here,
once, because the two planes must not import each other and the CLI is the
one package that may import both.

Log pipelines (Loki, Elasticsearch, Cloud Logging) ingest one JSON object per
line without a parsing rule, so that is the default; each line holds ``ts``
(RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``event`` and the
event's own fields as typed values, plus ``trace_id``/``span_id`` while an
OpenTelemetry span is current (to jump from a log line to its trace) and
``exc`` for an exception's traceback, escaped so that it stays on its line.

Two other formats are kept for people rather than pipelines, chosen with
``--log-format`` or ``SKYROUTE_LOG_FORMAT``: ``logfmt`` (``key=value``, the
format of earlier releases; values with spaces, quotes or newlines quoted and
escaped, so it is still one line per event) and ``text`` (a timestamp, the
level, the logger and the message, for a terminal).

The handler goes on the root logger, so warnings from libraries (kopf, grpc,
aiohttp, asyncio) and Python ``warnings`` come out in the same format rather
than as bare lines in between; libraries log from WARNING up, skyroute's own
loggers from ``SKYROUTE_LOG_LEVEL`` (INFO by default).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson
from opentelemetry import trace

FORMATS = ("json", "logfmt", "text")
FORMAT_ENV = "SKYROUTE_LOG_FORMAT"
LEVEL_ENV = "SKYROUTE_LOG_LEVEL"
# Where ``event()`` (skyroute.control.logs, skyroute.router.logs) puts the fields.
_FIELDS = "skyroute_fields"
_BASE = ("ts", "level", "logger", "event")


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and not any(ch in text for ch in ' "=\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _fields(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, Any]:
    """ts, level, logger, event, the event's fields, trace ids and ``exc``, in that order."""
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    for key, value in getattr(record, _FIELDS, {}).items():
        out.setdefault(key, value)  # an event field never hides one of the four above
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        out["trace_id"] = format(ctx.trace_id, "032x")
        out["span_id"] = format(ctx.span_id, "016x")
    if record.exc_info:
        out["exc"] = formatter.formatException(record.exc_info)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line (values JSON can't hold are written as ``str(value)``)."""

    def format(self, record: logging.LogRecord) -> str:
        out = _fields(self, record)
        try:
            return orjson.dumps(out, default=str).decode()
        except TypeError:  # e.g. an int beyond 64 bits: that value as a string
            return orjson.dumps(
                {k: v if _dumps(v) else str(v) for k, v in out.items()}, default=str
            ).decode()


def _dumps(value: object) -> bool:
    try:
        orjson.dumps(value, default=str)
    except TypeError:
        return False
    return True


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... logger=... event=... key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_quote(v)}" for k, v in _fields(self, record).items())


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger message key=value ...``; a traceback on the lines below."""

    def format(self, record: logging.LogRecord) -> str:
        out = _fields(self, record)
        exc = out.pop("exc", None)
        head = f"{out['ts']} {record.levelname} {record.name} {out['event']}"
        rest = " ".join(f"{k}={_quote(v)}" for k, v in out.items() if k not in _BASE)
        line = f"{head} {rest}" if rest else head
        return f"{line}\n{exc}" if exc else line


_FORMATTERS: dict[str, type[logging.Formatter]] = {
    "json": JsonFormatter,
    "logfmt": LogfmtFormatter,
    "text": TextFormatter,
}


def log_format(value: str | None = None, env: dict[str, str] | None = None) -> str:
    """``value`` (the flag), else ``SKYROUTE_LOG_FORMAT``, else json; anything else is an error."""
    raw = value if value else (env if env is not None else os.environ).get(FORMAT_ENV, "")
    fmt = raw.strip().lower() or "json"
    if fmt not in FORMATS:
        where = "--log-format" if value else FORMAT_ENV
        raise SystemExit(f"{where}={raw!r} is not one of {', '.join(FORMATS)}")
    return fmt


def _level(value: int | str | None) -> int:
    raw = value if value is not None else os.environ.get(LEVEL_ENV, "") or "INFO"
    if isinstance(raw, int):
        return raw
    level = logging.getLevelName(raw.strip().upper())
    if not isinstance(level, int):
        raise SystemExit(
            f"{LEVEL_ENV}={raw!r} is not a log level (DEBUG, INFO, WARNING, ERROR or CRITICAL)"
        )
    return level


def configure(fmt: str | None = None, level: int | str | None = None) -> None:
    """Send logs to stderr in ``fmt`` (see :func:`log_format`); the first call wins."""
    root = logging.getLogger()
    if any(getattr(h, "_skyroute", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FORMATTERS[log_format(fmt)]())
    handler._skyroute = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    own = logging.getLogger("skyroute")
    own.setLevel(_level(level))
    own.propagate = True
    logging.captureWarnings(True)
