"""``skyroute top``: the control plane's live aggregate in the terminal.

The case study is told in five figures per pool and policy version: the
router mix (each row's share of the traffic), p95 latency, success rate,
cost per 1,000 requests and cache hit rate. The control plane already
aggregates every router's outcomes; this view polls its admin endpoint
(``GET /debug/outcomes``, field ``by_policy_version_pool``) and redraws, so
an operator watching a rollout sees the new version's figures next to the
old one's without a Prometheus or Grafana at hand.

During a rollout the ``track`` column says which row is the stable version
and which the candidate (with its share of traffic and the rollout's phase),
from ``GET /debug/rollouts``; a control plane without rollouts leaves it
empty.

``--once`` prints one table and exits (for scripts and tests). An admin
address that does not answer is a clear error naming the address, not a
traceback.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


class TopError(Exception):
    pass


def fetch(admin: str, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Rows (policy, version, pool with their figures) from the admin endpoint at ``admin``."""
    base = admin if admin.startswith(("http://", "https://")) else f"http://{admin}"
    url = base.rstrip("/") + "/debug/outcomes"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TopError(f"skyroute top: cannot read {url}: {exc}") from None
    rows = data.get("by_policy_version_pool") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise TopError(
            f"skyroute top: {url} has no 'by_policy_version_pool' list "
            "(is this a skyroute control plane's admin address?)"
        )
    return rows


def fetch_tracks(admin: str, timeout: float = 3.0) -> dict[tuple[str, str], str]:
    """(policy, version) -> "stable" / "candidate 5% Progressing", from /debug/rollouts."""
    base = admin if admin.startswith(("http://", "https://")) else f"http://{admin}"
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/debug/rollouts", timeout=timeout) as r:
            data = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return {}  # an older control plane, or none: the view works without it
    out: dict[tuple[str, str], str] = {}
    for key, entry in data.items() if isinstance(data, dict) else ():
        rollout = entry.get("rollout", {}) if isinstance(entry, dict) else {}
        name, phase = key.rpartition("/")[2], str(rollout.get("phase", ""))
        candidate = str(rollout.get("candidateVersion", "")).replace("-", "")
        if candidate:
            out[(name, candidate)] = f"candidate {rollout.get('weight', 0)}% {phase}"
            out[(name, str(rollout.get("stableVersion", "")))] = "stable"
        elif rollout.get("stableVersion"):
            out[(name, str(rollout["stableVersion"]))] = phase.lower()
    return out


def table(
    rows: list[dict[str, Any]], admin: str, tracks: dict[tuple[str, str], str] | None = None
) -> Table:
    total = sum(int(r.get("requests", 0)) for r in rows)
    t = Table(title=f"skyroute top: {admin}, {total} requests", title_justify="left")
    for name, justify in (
        ("policy", "left"),
        ("version", "left"),
        ("pool", "left"),
        ("requests", "right"),
        ("mix", "right"),
        ("p95 ms", "right"),
        ("success", "right"),
        ("cost/1k $", "right"),
        ("hit rate", "right"),
        ("track", "left"),
    ):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in sorted(rows, key=lambda r: (r["policy"], r["policy_version"], -r["requests"])):
        success = float(r.get("success_rate", 1.0))
        t.add_row(
            str(r["policy"]),
            str(r["policy_version"])[:19],
            str(r["pool"]),
            str(r["requests"]),
            f"{float(r.get('share', 0.0)):.1%}",
            f"{float(r.get('p95_latency_ms', 0.0)):.0f}",
            f"[{'green' if success >= 0.99 else 'red'}]{success:.2%}[/]",
            f"{float(r.get('cost_per_1k_usd', 0.0)):.4f}",
            f"{float(r.get('cache_hit_rate', 0.0)):.1%}",
            (tracks or {}).get((str(r["policy"]), str(r["policy_version"])), ""),
        )
    if not rows:
        t.caption = "no outcomes reported yet"
    return t


def main(
    admin: str, interval: float = 2.0, once: bool = False, console: Console | None = None
) -> int:
    console = console or Console()
    try:
        if once:
            console.print(table(fetch(admin), admin, fetch_tracks(admin)))
            return 0
        with Live(
            table(fetch(admin), admin, fetch_tracks(admin)), console=console, auto_refresh=False
        ) as live:
            while True:
                time.sleep(interval)
                live.update(table(fetch(admin), admin, fetch_tracks(admin)), refresh=True)
    except TopError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    except KeyboardInterrupt:
        return 0
