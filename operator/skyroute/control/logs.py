"""Structured log lines on stderr, one event per line, logfmt style.

The control plane's log is its audit trail: every compile, push, ACK, NACK
and rejection is a line that an operator greps (``event=rejected``) or a test
parses. logfmt (``key=value`` pairs) stays readable in a terminal yet splits
reliably; values with spaces, quotes or newlines are quoted and escaped so a
multi-problem error still occupies exactly one line.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

_FIELDS = "skyroute_fields"


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and not any(ch in text for ch in ' "=\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... logger=... event=... key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"event={_quote(record.getMessage())}",
        ]
        fields: dict[str, Any] = getattr(record, _FIELDS, {})
        parts.extend(f"{key}={_quote(value)}" for key, value in fields.items())
        if record.exc_info:
            parts.append(f"exception={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: object) -> None:
    """Log ``event=name`` with ``fields`` as key=value pairs."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={_FIELDS: fields})


def configure(level: int = logging.INFO) -> None:
    """Send skyroute.* logs to stderr as logfmt (idempotent)."""
    root = logging.getLogger("skyroute")
    if any(getattr(h, "_skyroute", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    handler._skyroute = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
