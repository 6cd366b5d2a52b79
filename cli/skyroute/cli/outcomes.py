"""``skyroute outcomes export --since ... --format jsonl``: outcomes with feedback, for evals.

Asks the control plane's admin API (``GET /outcomes``, behind the admin token
when one is configured: pass ``--admin-token-file``, and ``--admin-ca`` for an
HTTPS admin port) for the recent outcomes joined with their feedback and
writes one JSON object per line, oldest first, to stdout or ``--out``: the
request id, time, tenant, paying account, key id, charge id, policy and
its version, pool, model, intent, latency, tokens, cost, success and the
feedback pieces (source, kind, value).
No prompt text unless the policy opts in (``spec.outcomes.promptText``: then
``prompt``, the last user message as written, its first 2,000 characters).
The control plane keeps a capped ring
(``learning/recent.py``), so an export reaches back only as far as that; the
summary on stderr says how far (``oldest``) and how many were pushed out.
``--since`` takes what ``skyroute spend`` takes (``90m``, ``24h``, a UTC time,
unix ms).

``--format evals`` writes instead what ``skyroute evals backfill --sample``
reads: one graded line per rating (a boolean as ``pass``, a score as
``score``, normalised to [0, 1] by the router), with ``id`` (the request),
``model``, ``intent``, ``pool`` and ``grader`` (the feedback's source);
comments and outcomes without a rating are left out. So live feedback
becomes the offline evals the next policy version starts from.

Exit codes: 0 written, 1 refused (a bad argument, or the token), 2 unreachable.
"""

from __future__ import annotations

import sys
import urllib.parse
from pathlib import Path

import orjson

from skyroute.cli.admin_auth import admin_bearer
from skyroute.cli.rollout import admin_request
from skyroute.cli.spend import since_ms

#: Export formats: every outcome as JSON lines, or the graded sample evals backfill reads.
FORMATS = ("jsonl", "evals")


def graded(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One evals-sample line per boolean or score rating of an outcome with model and intent."""
    out: list[dict[str, object]] = []
    for r in rows:
        model, intent, pieces = r.get("model"), r.get("intent"), r.get("feedback")
        if not (isinstance(model, str) and model and isinstance(intent, str) and intent):
            continue
        for f in pieces if isinstance(pieces, list) else ():
            if not isinstance(f, dict) or f.get("kind") not in ("good", "score"):
                continue
            line: dict[str, object] = {
                "id": str(r.get("request_id", "")),
                "model": model,
                "intent": intent,
                "pool": str(r.get("pool", "")),
                "grader": str(f.get("source", "")),
            }
            line["pass" if f["kind"] == "good" else "score"] = f.get("value")
            out.append(line)
    return out


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
        token = admin_bearer(admin_token_file, bool(admin_ca))
        code, body = admin_request("GET", url, token, admin_ca)
    except (OSError, ValueError) as exc:
        print(f"skyroute outcomes export: cannot reach {admin}: {exc}", file=sys.stderr)
        return 2
    if code != 200:
        print(f"skyroute outcomes export: {code}: {body.get('error', body)}", file=sys.stderr)
        return 1
    rows = body.get("outcomes", [])
    lines = graded(rows) if fmt == "evals" else rows
    data = b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in lines)
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
        (f"{len(lines)} ratings of " if fmt == "evals" else "")
        + f"{len(rows)} outcomes exported (ring: {body.get('kept')} of "
        f"{body.get('capacity')} kept, oldest unix ms {body.get('oldest_unix_ms')}, "
        f"{body.get('evicted')} pushed out)",
        file=sys.stderr,
    )
    return 0
