"""``skyroute outcomes export --since ... --format jsonl``: outcomes with feedback, for evals.

Asks the control plane's admin API (``GET /outcomes``, behind the admin token
when one is configured: pass ``--admin-token-file``, and ``--admin-ca`` for an
HTTPS admin port) for the recent outcomes joined with their feedback and
writes one JSON object per line, oldest first, to stdout or ``--out``: the
request id, time, tenant, paying account, key id, charge id, policy and
its version, pool, model, intent, latency, tokens, cost, success and the
feedback pieces (source, kind, value).
No prompt text: outcomes carry none. The control plane keeps a capped ring
(``learning/recent.py``), so an export reaches back only as far as that; the
summary on stderr says how far (``oldest``) and how many were pushed out.
``--since`` takes what ``skyroute spend`` takes (``90m``, ``24h``, a UTC time,
unix ms).

Exit codes: 0 written, 1 refused (a bad argument, or the token), 2 unreachable.
"""

from __future__ import annotations

import sys
import urllib.parse
from pathlib import Path

import orjson

from skyroute.cli.rollout import admin_request
from skyroute.cli.spend import since_ms

#: Export formats (one today: JSON lines).
FORMATS = ("jsonl",)


def main(
    since: str | None,
    *,
    admin: str,
    fmt: str = "jsonl",
    out: str | None = None,
    admin_token_file: str | None = None,
    admin_ca: str | None = None,
) -> int:
    if fmt not in FORMATS:
        print(f"skyroute outcomes export: --format one of {', '.join(FORMATS)}", file=sys.stderr)
        return 1
    try:
        start = since_ms(since)
    except ValueError as exc:
        print(f"skyroute outcomes export: {exc}", file=sys.stderr)
        return 1
    scheme = "https" if admin_ca else "http"
    url = f"{scheme}://{admin}/outcomes?{urllib.parse.urlencode({'since': start})}"
    try:
        token = Path(admin_token_file).read_text().strip() if admin_token_file else None
        code, body = admin_request("GET", url, token, admin_ca)
    except (OSError, ValueError) as exc:
        print(f"skyroute outcomes export: cannot reach {admin}: {exc}", file=sys.stderr)
        return 2
    if code != 200:
        print(f"skyroute outcomes export: {code}: {body.get('error', body)}", file=sys.stderr)
        return 1
    rows = body.get("outcomes", [])
    data = b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in rows)
    if out:
        try:
            Path(out).write_bytes(data)
        except OSError as exc:
            print(f"skyroute outcomes export: cannot write {out}: {exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    print(
        f"{len(rows)} outcomes exported (ring: {body.get('kept')} of {body.get('capacity')} kept, "
        f"oldest unix ms {body.get('oldest_unix_ms')}, {body.get('evicted')} pushed out)",
        file=sys.stderr,
    )
    return 0
