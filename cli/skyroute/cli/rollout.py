"""``skyroute policy promote|abort|status``: manual gates and a view of a rollout.

On a cluster the rollout's state is the RoutingPolicy's ``status.rollout``
and ``status.history``, and a manual decision is the one-shot annotation
``skyroute.io/rollout-action=promote|abort`` that the operator's leader acts
on and removes (the same thing ``kubectl annotate`` does; this command also
waits for the outcome and says what it was). Off-cluster (``skyroute
control``), or to talk to one operator directly, ``--admin HOST:PORT`` uses
the admin API instead: ``POST /rollouts/<ns>/<name>/<action>`` and
``GET /debug/rollouts``.

Exit codes are for pipelines: 0 when the action took effect (or the status
was shown), 1 when there was nothing to act on or the wait timed out, 2 when
the policy or the control plane cannot be reached.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console
from rich.table import Table

from skyroute.cli.admin_auth import admin_bearer
from skyroute.control.policy.model import GROUP, ROLLOUT_ACTION_ANNOTATION, VERSION

PLURAL = "routingpolicies"
_DONE = {"promote": "Promoted", "abort": "RolledBack"}


def admin_request(
    method: str,
    url: str,
    token: str | None = None,
    ca: str | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One admin call; HTTPS trusting ``ca`` when given, ``token`` as the bearer, ``body``
    sent as JSON."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = b"" if method == "POST" else None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, method=method, data=data, headers=headers)
    context = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _custom_api(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return client.CustomObjectsApi()


def _get(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)  # type: ignore[no-any-return]


def action_main(
    action: str,
    name: str,
    namespace: str = "default",
    *,
    admin: str | None = None,
    kubeconfig: str | None = None,
    wait_s: float = 30.0,
    admin_token_file: str | None = None,
    admin_ca: str | None = None,
) -> int:
    out, err = Console(highlight=False), Console(highlight=False, stderr=True)
    if admin:
        scheme = "https" if admin_ca else "http"
        try:
            token = admin_bearer(admin_token_file, bool(admin_ca), kubeconfig)
            code, body = admin_request(
                "POST", f"{scheme}://{admin}/rollouts/{namespace}/{name}/{action}", token, admin_ca
            )
        except OSError as exc:
            err.print(f"skyroute policy {action}: cannot reach {admin}: {exc}")
            return 2
        out.print(body.get("message") or body.get("error") or body)
        return 0 if code == 200 and body.get("acted") else 1
    try:
        api = _custom_api(kubeconfig)
        before = _get(api, namespace, name).get("status", {}).get("rollout", {})
        if before.get("phase") not in ("Progressing", "Holding"):
            out.print(
                f"routingpolicy {namespace}/{name}: no rollout in progress "
                f"(phase {before.get('phase', 'unknown')}); nothing to {action}"
            )
            return 1
        api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": {ROLLOUT_ACTION_ANNOTATION: action}}},
        )
    except Exception as exc:  # the kubernetes client raises its own types, or OSError
        err.print(f"skyroute policy {action}: routingpolicy {namespace}/{name}: {exc}")
        return 2
    out.print(f"routingpolicy {namespace}/{name} annotated {ROLLOUT_ACTION_ANNOTATION}={action}")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        rollout = _get(api, namespace, name).get("status", {}).get("rollout", {})
        if rollout.get("phase") == _DONE[action]:
            out.print(f"{rollout.get('phase')}: {rollout.get('message', '')}")
            return 0
        time.sleep(0.5)
    err.print(
        f"skyroute policy {action}: the operator did not act within {wait_s:g}s "
        "(is it running, and is one replica the leader?)"
    )
    return 1


def status_main(
    name: str,
    namespace: str = "default",
    *,
    admin: str | None = None,
    kubeconfig: str | None = None,
    as_json: bool = False,
    admin_ca: str | None = None,
) -> int:
    out, err = Console(highlight=False), Console(highlight=False, stderr=True)
    try:
        if admin:
            scheme = "https" if admin_ca else "http"
            code, body = admin_request("GET", f"{scheme}://{admin}/debug/rollouts", ca=admin_ca)
            found = body.get(f"{namespace}/{name}") if code == 200 else None
            if found is None:
                err.print(f"skyroute policy status: {namespace}/{name} not known to {admin}")
                return 2
            rollout, history = found["rollout"], found["history"]
        else:
            status = _get(_custom_api(kubeconfig), namespace, name).get("status", {})
            rollout, history = status.get("rollout", {}), status.get("history", [])
    except Exception as exc:
        err.print(f"skyroute policy status: routingpolicy {namespace}/{name}: {exc}")
        return 2
    if as_json:
        out.print_json(data={"rollout": rollout, "history": history})
        return 0
    out.print(
        f"[bold]{namespace}/{name}[/]: {rollout.get('phase', '-')} - {rollout.get('message', '')}"
    )
    out.print(
        f"stable {rollout.get('stableVersion') or '-'}   candidate "
        f"{rollout.get('candidateVersion') or '-'} on {rollout.get('weight', 0)}%   "
        f"step {rollout.get('step', 0)}/{rollout.get('steps', 0)}   failed checks "
        f"{rollout.get('failedChecks', 0)}"
    )
    analysis = rollout.get("lastAnalysis")
    if analysis:
        table = Table(
            "side",
            "requests",
            "success",
            "p95 ms",
            "$/1k",
            "fallback",
            title=f"last analysis ({analysis.get('at', '')}): {analysis.get('result')}",
        )
        for side in ("stable", "candidate"):
            w = analysis.get(side, {})
            table.add_row(
                side,
                str(w.get("requests", 0)),
                f"{w.get('successRate', 0):.2%}",
                f"{w.get('p95Ms', 0):.0f}",
                f"{w.get('costPer1k', 0):.4f}",
                f"{w.get('fallbackRate', 0):.2%}",
            )
        out.print(table)
    hist = Table("recorded", "version", "spec", "result", title="history (newest last)")
    for h in history:
        hist.add_row(
            h.get("recordedAt", ""),
            h.get("version", ""),
            h.get("specHash", ""),
            h.get("result", ""),
        )
    out.print(hist)
    return 0
