"""The spend ledger on disk: one JSON document, written whole and atomically.

``dump`` turns the ledger (rows and the charge ids already counted) into a
document; ``restore`` reads one back. In folder mode ``SpendFile`` keeps it
next to ``--state`` (``FILE.spend``, written with ``files.write_atomic``:
the whole new file or the old one, never half); on a cluster the operator's
leader keeps the same document in a ConfigMap (``kube/spendmap.py``).

The document is input like any other (old, hand-edited, truncated): its size
and every row and number are checked; a malformed row is skipped and
counted, a document that cannot be read restores nothing and says why, and
neither stops the control plane from starting.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyroute.control.files import write_atomic
from skyroute.control.limits import MAX_NAME, MAX_TEXT
from skyroute.control.logs import event
from skyroute.control.spend.ledger import EARLIER, HOUR_MS, Ledger, Row

log = logging.getLogger("skyroute.control.spend")

FORMAT = 1
MAX_FILE_BYTES = 64 * 1024 * 1024
_MAX_COUNT = 1 << 62


@dataclass(slots=True)
class Restored:
    """What ``restore`` brought back (logged, and in ``GET /spend``)."""

    where: str = ""
    rows: int = 0
    charges: int = 0
    skipped: int = 0
    error: str = ""


def dump(ledger: Ledger) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "charges": ledger.charges,
        "duplicates": ledger.duplicates,
        "rows": [[*k, *r.as_list()] for k, r in sorted(ledger.rows.items())],
        "seen": list(ledger.seen),
    }


def _count(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _MAX_COUNT:
        raise ValueError(f"{v!r} is not a count")
    return v


def _text(v: object, limit: int, empty: bool = True) -> str:
    if not isinstance(v, str) or len(v) > limit or (not empty and not v):
        raise ValueError(f"{v!r} is not a name")
    return v


def restore(ledger: Ledger, doc: object, where: str = "") -> Restored:
    """Load ``dump``'s document into ``ledger``; a malformed row is skipped and counted."""
    out = Restored(where=where)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        out.error = f"not a spend ledger of format {FORMAT}"
        return out
    rows, seen = doc.get("rows"), doc.get("seen")
    if not isinstance(rows, list) or not isinstance(seen, list):
        out.error = "rows and seen must be lists"
        return out
    for item in rows:
        try:
            if not isinstance(item, list) or len(item) != 8:
                raise ValueError(
                    "not [hour, tenant, key, model, requests, prompt, completion, nano]"
                )
            hour = _count(item[0])
            if hour != EARLIER and hour % HOUR_MS:
                raise ValueError(f"{hour} is not the start of an hour")
            key = (
                hour,
                _text(item[1], MAX_NAME, empty=False),
                _text(item[2], MAX_NAME),
                _text(item[3], MAX_NAME),
            )
            row = Row(*(_count(x) for x in item[4:]))
        except ValueError as exc:
            out.skipped += 1
            event(log, "spend_row_skipped", logging.WARNING, where=where, error=str(exc)[:200])
            continue
        ledger.rows.setdefault(key, Row()).add(row)
        out.rows += 1
    for charge in seen[-ledger.max_seen :]:
        if isinstance(charge, str) and len(charge) <= 2 * MAX_TEXT:
            ledger.seen[charge] = None
    try:
        ledger.charges = _count(doc.get("charges", 0))
        ledger.duplicates = _count(doc.get("duplicates", 0))
    except ValueError:
        out.skipped += 1
    out.charges = ledger.charges
    return out


class SpendFile:
    """The ledger in one JSON file next to ``--state`` (``FILE.spend``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saves = 0
        self._saved_at = -1

    def load(self, ledger: Ledger) -> Restored:
        """Restore from the file if there is one; never raises for a bad file."""
        out = Restored(where=str(self.path))
        try:
            size = self.path.stat().st_size
            if size > MAX_FILE_BYTES:
                out.error = f"{size} bytes, over {MAX_FILE_BYTES}"
            else:
                out = restore(ledger, json.loads(self.path.read_bytes()), str(self.path))
        except FileNotFoundError:
            return out
        except (OSError, ValueError) as exc:
            out.error = f"unreadable: {exc}"
        if out.error:
            event(
                log, "spend_ledger_refused", logging.WARNING, path=str(self.path), error=out.error
            )
        else:
            event(log, "spend_ledger_restored", path=str(self.path), rows=out.rows)
        self._saved_at = ledger.changes
        return out

    def save(self, ledger: Ledger, force: bool = False) -> bool:
        """Write the ledger if it changed since the last save (atomically)."""
        if not force and ledger.changes == self._saved_at:
            return False
        write_atomic(self.path, json.dumps(dump(ledger), separators=(",", ":")))
        self._saved_at = ledger.changes
        self.saves += 1
        return True
