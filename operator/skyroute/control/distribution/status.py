"""``skyroute status``: which version each router serves, at a glance.

Modelled on ``istioctl proxy-status``: one line per router with its sync
state (SYNCED, STALE, NOT SENT, DISCONNECTED), the version it ACKed and the
version last sent to it, its door (``closed``: no Tenant, every caller
refused; ``open``: no Tenant and a flag, no key asked; ``keys 2t/3k``: two
Tenants and three keys loaded, ``+anonymous`` with ``--allow-anonymous``),
so that a rollout that did not land is visible before its effects are. The
control plane's own version, its serving policies and its last rejected input
go on top, because "why is my change not live?"
is most often answered by the last error, not by any router. Each tenant's
spend follows (the ledger: spend in its first budget's period, the budget
left, all-time total and requests; ``spend`` in ``--json``), then what feedback
has taught: per (model, intent) the offline eval prior, the feedback count and
the posterior mean quality (``quality`` in ``--json``).

The exit status is non-zero when the control plane cannot be reached, so the
command also works as a scripted check.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import grpc
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from skyroute.control.distribution import pages
from skyroute.control.distribution.admin import status_to_dict
from skyroute.control.distribution.tls import channel_credentials
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

_STATE = {
    distribution_pb2.SYNC_STATE_SYNCED: ("SYNCED", "green"),
    distribution_pb2.SYNC_STATE_STALE: ("STALE", "yellow"),
    distribution_pb2.SYNC_STATE_NOT_SENT: ("NOT SENT", "cyan"),
    distribution_pb2.SYNC_STATE_DISCONNECTED: ("DISCONNECTED", "red"),
}


def fetch_status(
    control: str,
    timeout: float = 3.0,
    max_pages: int = 10_000,
    credentials: grpc.ChannelCredentials | None = None,
) -> distribution_pb2.ControlStatus:
    """Ask the control plane at ``control`` for its status, every page; raises grpc.RpcError.

    Each page is one message under gRPC's default 4 MiB limit, whatever the fleet's size.
    With ``credentials`` (``tls.channel_credentials``) over mutual TLS.
    """
    channel = (
        grpc.insecure_channel(control)
        if credentials is None
        else grpc.secure_channel(control, credentials)
    )
    with channel:
        stub = distribution_pb2_grpc.PolicyDistributionStub(channel)
        status: distribution_pb2.ControlStatus = stub.GetStatus(
            distribution_pb2.StatusRequest(), timeout=timeout
        )
        for _ in range(max_pages):
            if not status.next_page_token:
                break
            page: distribution_pb2.ControlStatus = stub.GetStatus(
                distribution_pb2.StatusRequest(page_token=status.next_page_token), timeout=timeout
            )
            pages.merge(status, page)
        return status


def _ago(unix_ms: int, now_ms: int) -> str:
    if not unix_ms:
        return "-"
    seconds = max(0, (now_ms - unix_ms) // 1000)
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


#: How each door mode is shown: closed refuses everyone, open asks nobody for a key.
_DOOR_STYLE = {"closed": "yellow", "open": "red", "keys": "green"}


def door_text(router: distribution_pb2.RouterStatus) -> Text:
    """The DOOR column: mode, tenants and keys loaded, and whether anonymous callers get in."""
    if not router.HasField("door"):
        return Text("-")
    door = router.door
    label = door.mode or "?"
    if door.mode == "keys":
        label += f" {door.tenants}t/{door.keys}k"
    if door.anonymous_allowed:
        label += " +anonymous"
    elif door.open_without_tenants and door.mode != "open":
        label += " (open without tenants)"
    style = _DOOR_STYLE.get(door.mode, "magenta")
    if door.limits == "redis":
        label += " redis"
    elif door.limits == "redis-down":
        # Each tenant's redisDown choice applies: fail-open on a local share, or 503.
        label += f" REDIS DOWN ({door.tenants_fail_closed} fail closed)"
        style = "red"
    if door.shadow_denied:
        label += f" shadow:{door.shadow_denied}"
    return Text(label, style=style)


def render_spend(status: distribution_pb2.ControlStatus, console: Console) -> None:
    """One row per tenant: spend in its first budget's period, what is left, all time."""
    if not status.spend:
        return
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    for column in ("TENANT", "SPEND", "PERIOD", "BUDGET LEFT", "TOTAL", "REQUESTS"):
        table.add_column(column, no_wrap=True, justify="left" if column == "TENANT" else "right")
    for t in status.spend:
        left = f"${t.budget_left_usd:,.4f}" if t.HasField("budget_left_usd") else "-"
        table.add_row(
            t.tenant,
            f"${t.usd:,.6f}",
            t.period,
            left,
            f"${t.total_usd:,.6f}",
            str(t.requests),
        )
    console.print(table)


def render_learned(status: distribution_pb2.ControlStatus, now_ms: int, console: Console) -> None:
    """One line: what the learning loop holds, and what its start restored."""
    if not status.HasField("learned"):
        return
    ls = status.learned
    held = (
        f"{ls.models} model and {ls.intents} (model, intent) sketches, {ls.priors} priors, "
        f"{ls.tool_use} tool-use rates, {ls.quality} quality posteriors, "
        f"{ls.signal_fits} signal fits"
    )
    if ls.restore_error:
        restored = Text(f"; nothing restored from {ls.restored_from}: {ls.restore_error}", "red")
    elif ls.restored_saved_unix_ms:
        restored = Text(
            f"; restored {ls.restored_series} series and {ls.restored_priors} priors "
            f"from {ls.restored_from} (saved {_ago(ls.restored_saved_unix_ms, now_ms)}"
            + (f", {ls.restored_skipped} malformed skipped" if ls.restored_skipped else "")
            + ")"
        )
    else:
        restored = Text(
            "; nothing restored" + (f" ({ls.restored_from})" if ls.restored_from else "")
        )
    console.print(Text.assemble(("Learned ", "bold"), held, restored))


def render_quality(status: distribution_pb2.ControlStatus, console: Console) -> None:
    """One row per (model, intent) with feedback: prior (eval), n, good/bad, posterior."""
    if not status.quality:
        return
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    for column in ("MODEL", "INTENT", "PRIOR", "WEIGHT", "N", "GOOD", "BAD", "SCORES", "POSTERIOR"):
        table.add_column(
            column, no_wrap=True, justify="left" if column in ("MODEL", "INTENT") else "right"
        )
    for q in status.quality:
        moved = q.posterior - q.prior
        style = "red" if moved < -0.05 else "green" if moved > 0.05 else ""
        table.add_row(
            q.model,
            q.intent or "-",
            f"{q.prior:.3f}",
            f"{q.prior_weight:g}",
            f"{q.n:g}",
            f"{q.good:g}",
            f"{q.bad:g}",
            f"{q.scores:g}",
            Text(f"{q.posterior:.3f}", style=style),
        )
    console.print(Text("Quality (feedback posteriors)", style="bold"))
    console.print(table)


def render(status: distribution_pb2.ControlStatus, control: str, console: Console) -> None:
    """Header (version, policies, last error, outcomes) and one table row per router."""
    now_ms = int(time.time() * 1000)
    header = Text()
    header.append("Control plane ", style="bold")
    header.append(f"{control}  ")
    header.append("version ", style="bold")
    header.append(status.version or "(none: no valid snapshot yet)")
    if status.source:
        header.append("  source ", style="bold")
        header.append(status.source)
    if status.authentication:
        header.append("  auth ", style="bold")
        header.append(status.authentication)
    console.print(header)
    policies = ", ".join(f"{name} {ver}" for name, ver in sorted(status.policies.items()))
    console.print(Text.assemble(("Policies ", "bold"), policies or "-"))
    if status.last_error:
        console.print(Text.assemble(("Last error ", "bold red"), (status.last_error, "red")))
    else:
        console.print(Text.assemble(("Last error ", "bold"), "none"))
    pools = ", ".join(f"{c.key} {c.requests}" for c in status.outcomes_by_pool)
    by_pool = f" ({pools})" if pools else ""
    console.print(Text.assemble(("Outcomes ", "bold"), str(status.outcomes_total), by_pool))
    if status.source_broken_since_unix_ms:
        since = _ago(status.source_broken_since_unix_ms, now_ms)
        console.print(Text.assemble(("Source ", "bold red"), (f"broken since {since}", "red")))
    if status.rejected:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(status.rejected.items()))
        console.print(Text.assemble(("Rejected ", "bold yellow"), counts))
    for task in status.failing_tasks:
        console.print(Text.assemble(("Failing task ", "bold red"), (task, "red")))

    render_learned(status, now_ms, console)
    render_spend(status, console)
    render_quality(status, console)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    columns = ("ROUTER", "STATE", "ACKED", "SENT", "OUTCOMES", "LAST SEEN", "DOOR", "LAST NACK")
    for column in columns:
        table.add_column(column, no_wrap=column != "LAST NACK", overflow="fold")
    for router in status.routers:
        name, style = _STATE.get(router.state, ("UNKNOWN", "magenta"))
        label = name
        nacked = router.sent_version and router.last_nack.startswith(router.sent_version + ":")
        if router.state == distribution_pb2.SYNC_STATE_STALE and nacked:
            label = "STALE (NACKed)"
        table.add_row(
            router.node.id,
            Text(label, style=style),
            router.acked_version or "-",
            router.sent_version or "-",
            str(router.outcomes),
            _ago(router.last_seen_unix_ms, now_ms),
            door_text(router),
            router.last_nack or "-",
        )
    if status.routers:
        console.print(table)
    else:
        console.print("No routers connected.")


def main(control: str, as_json: bool, ca: str | None = None, identity: str | None = None) -> int:
    """Print the status of the control plane at ``control``; 1 if it cannot be reached."""
    credentials = None
    if ca or identity:
        if not (ca and identity):
            print("skyroute status: --control-ca and --identity go together", file=sys.stderr)
            return 1
        try:
            credentials = channel_credentials(Path(ca), Path(identity))
        except OSError as exc:
            print(f"skyroute status: cannot read TLS files: {exc}", file=sys.stderr)
            return 1
    try:
        status = fetch_status(control, credentials=credentials)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "ERROR"
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        print(
            f"skyroute status: cannot reach the control plane at {control} ({code}: {detail})",
            file=sys.stderr,
        )
        return 1
    if as_json:
        sys.stdout.write(
            orjson.dumps(status_to_dict(status), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
        return 0
    console = Console(width=None if sys.stdout.isatty() else 160)
    render(status, control, console)
    return 0
