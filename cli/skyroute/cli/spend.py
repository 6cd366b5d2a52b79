"""``skyroute spend --tenant NAME [--since ...]``: what a tenant spent, per model.

Reads the control plane's spend ledger through its admin API (``GET
/spend``, behind the admin token when one is configured: pass
``--admin-token-file``, and ``--admin-ca`` for an HTTPS admin port) and
prints one row per model (or per key, ``--by key``) with requests, tokens
and USD, the total, and each budget of the tenant with what is left in its
current period. ``--json`` prints the API's answer as it came.

``--since`` takes a duration back from now (``90m``, ``24h``, ``7d``), a UTC
date or time (``2026-12-01``, ``2026-12-01T09:00``), ``today`` or ``month``
(the start of the current UTC day or month, a budget's periods), or unix
milliseconds; without it, all time. The ledger keeps spend per UTC hour, so
a ``--since`` inside an hour counts that whole hour; the table says from
when it counted.

Exit codes: 0 shown, 1 refused (a bad argument, or the token), 2 unreachable.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import urllib.parse
from typing import Any

from rich.console import Console
from rich.table import Table

from skyroute.cli.admin_auth import admin_bearer
from skyroute.cli.rollout import admin_request

_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_ms(text: str | None, now: dt.datetime | None = None) -> int:
    """``--since`` as unix milliseconds (0: all time); ValueError names what is accepted."""
    if not text:
        return 0
    now = now or dt.datetime.now(dt.UTC)
    t = text.strip()
    m = _DURATION.match(t)
    if m:
        return int((now.timestamp() - int(m.group(1)) * _UNIT_S[m.group(2)]) * 1000)
    if t in ("today", "month"):
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return int((start.replace(day=1) if t == "month" else start).timestamp() * 1000)
    if t.isdigit():
        return int(t)
    try:
        when = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r}: a duration (90m, 24h, 7d), a UTC date or time "
            "(2026-12-01, 2026-12-01T09:00), today, month, or unix milliseconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def fetch(
    admin: str, tenant: str, since: int, by: str, token: str | None, ca: str | None
) -> tuple[int, dict[str, Any]]:
    scheme = "https" if ca else "http"
    query = urllib.parse.urlencode({"tenant": tenant, "since": since, "by": by})
    return admin_request("GET", f"{scheme}://{admin}/spend?{query}", token, ca)


def _when(ms: int) -> str:
    if not ms:
        return "the start of the ledger"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def render(body: dict[str, Any], console: Console) -> None:
    by = str(body.get("by", "model"))
    title = f"Spend of tenant {body['tenant']} since {_when(int(body['since_unix_ms']))}"
    table = Table(title=title, header_style="bold", title_justify="left")
    first = {"model": "MODEL", "key": "KEY", "key,model": "KEY / MODEL"}.get(by, "MODEL")
    table.add_column(first)
    for column in ("REQUESTS", "PROMPT TOKENS", "COMPLETION TOKENS", "USD"):
        table.add_column(column, justify="right")

    def label(row: dict[str, Any]) -> str:
        if by == "key":
            return row["key_id"] or "(service account)"
        if by == "key,model":
            return f"{row['key_id'] or '(service account)'} / {row['model'] or '-'}"
        return row["model"] or "(no model)"

    for row in body["rows"]:
        table.add_row(
            label(row),
            str(row["requests"]),
            str(row["prompt_tokens"]),
            str(row["completion_tokens"]),
            f"{row['cost_usd']:.6f}",
        )
    total = body["total"]
    table.add_section()
    table.add_row(
        "total",
        str(total["requests"]),
        str(total["prompt_tokens"]),
        str(total["completion_tokens"]),
        f"{total['cost_usd']:.6f}",
        style="bold",
    )
    console.print(table)
    for b in body.get("budgets") or []:
        shadow = " (shadow)" if b.get("shadow") else ""
        console.print(
            f"budget {b['name']}{shadow}: {b['spent_usd']:.6f} of {b['usd']:.2f} USD this "
            f"{b['period']}, {b['left_usd']:.6f} left"
        )


def main(
    tenant: str,
    since: str | None,
    *,
    admin: str,
    by: str = "model",
    as_json: bool = False,
    admin_token_file: str | None = None,
    admin_ca: str | None = None,
) -> int:
    err = Console(stderr=True, highlight=False)
    try:
        start = since_ms(since)
    except ValueError as exc:
        err.print(f"skyroute spend: {exc}")
        return 1
    try:
        token = admin_bearer(admin_token_file, bool(admin_ca))
        code, body = fetch(admin, tenant, start, by, token, admin_ca)
    except (OSError, ValueError) as exc:
        err.print(f"skyroute spend: cannot reach the control plane admin API at {admin}: {exc}")
        return 2
    if code != 200:
        err.print(f"skyroute spend: {code}: {body.get('error', body)}")
        return 1
    if as_json:
        sys.stdout.write(json.dumps(body, indent=2, sort_keys=True) + "\n")
        return 0
    render(body, Console(highlight=False, width=None if sys.stdout.isatty() else 120))
    return 0
